"""Compile a model's whole CPU graphs into the on-disk compile cache, for the next start.

    python -m runtime.precompile CHECKPOINT_DIR --precision float32-int4 --max-seq-length 4096

A first start on a CPU compiles each layer on its own (`whole_graph_cache`: ready 20-30 s
sooner on two cores); the server then runs this in a child process at the lowest priority, so
that the next start finds the whole-model graph, which decodes faster, in Inductor's cache
(the folder comes from TORCHINDUCTOR_CACHE_DIR, which the parent set, or `--cache-dir`). It
loads the model as the server did, compiles and warms up decode and the prompt-lookup
verification step, and notes the graph kind as cached. Nothing goes to stdout. It ends on its
own when the process that started it is gone. Inductor compiles in this process, not in a pool
of workers (TORCHINDUCTOR_COMPILE_THREADS=1, set by the server): a pool would outlive a child
killed while paused.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

log = logging.getLogger("runtime.precompile")


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """End this process once its parent has (it is then re-parented). On Linux the kernel kills
    it then (PR_SET_PDEATHSIG), even while the server has it paused (SIGSTOP), when no thread of
    its own can run; elsewhere a thread watches the parent's id."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before that took effect
            os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.precompile", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a converted Quill checkpoint folder")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--max-seq-length", type=int, default=None)
    ap.add_argument("--cache-dir", help="Quill's cache folder (default: the compile cache already chosen)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="precompile: %(message)s")
    _exit_with_parent()
    if hasattr(os, "nice"):
        os.nice(19)  # the server's own work comes first
    from .compile import configure_compile_cache
    from .engine import Engine

    if args.cache_dir:
        configure_compile_cache(args.cache_dir)
    t0 = time.perf_counter()
    Engine.load(args.checkpoint, device="cpu", precision=args.precision, max_seq_length=args.max_seq_length,
                compile="whole")
    log.info("whole-model graphs of %s compiled in %.1fs", args.checkpoint, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
