"""The whole-model compile that a first start on a CPU leaves for the next one.

When `Engine.load` compiled each layer on its own (`engine.model.regional`: the compile cache
lacked the whole-model graph), the server starts `python -m runtime.precompile` for the same
checkpoint, precision and cache length in a child process at the lowest priority, so that the
next start loads the faster whole-model graph in seconds; once the child has ended, the model
host switches this start to that graph too, when idle (`Engine.adopt_whole_graph`). The child's stdout is closed (the
server's stdout is the protocol) and its stderr is the server's log. It is stopped when another
model is loaded and ends with the server. `QUILL_BACKGROUND_COMPILE=0` turns it off.

It runs only while the model host is idle: the host pauses it (SIGSTOP to its process group,
Inductor's compile workers included) for each job and resumes it when the queue is empty. Two
cores shared with a compile, even at the lowest priority, slowed `quill try`'s chat from 46 to
13 tokens/s. Off Linux it is not started (see CAN_PAUSE).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
from typing import Optional

# Linux only: there the kernel kills a paused child with a server that dies
# (runtime/precompile.py); elsewhere a paused child could be left stopped for good.
CAN_PAUSE = sys.platform.startswith("linux")

log = logging.getLogger(__name__)

ENV = "QUILL_BACKGROUND_COMPILE"


class BackgroundCompile:
    """At most one child compile at a time."""

    def __init__(self):
        self.proc: Optional[subprocess.Popen] = None  # the child, until its outcome is taken
        self.result: Optional[str] = None  # "finished" | "failed", once taken
        self.paused = False
        atexit.register(self.stop)  # a server that exits normally takes its child with it

    def start(self, engine) -> bool:
        """Start the child for `engine` if it was compiled per layer; True when started."""
        self.stop()
        if not getattr(engine.model, "regional", False) or os.environ.get(ENV, "1") == "0" or not CAN_PAUSE:
            return False
        need, free = _weight_bytes(engine.model), _available_memory()
        if free is not None and 2 * need > free:
            # The child loads its own copy of the weights; never at the risk of swapping.
            log.info("not compiling the whole model in the background: its weights (%.1f GB) need "
                     "more memory than is free (%.1f GB); the next start compiles per layer again",
                     need / 1e9, free / 1e9)
            return False
        cmd = [sys.executable, "-m", "runtime.precompile", str(engine.checkpoint_dir),
               "--precision", engine.dtype, "--max-seq-length", str(engine.max_seq_length)]
        try:
            # A process group of its own (what pause() signals); Inductor compiling in the child
            # itself, with no pool of workers that a paused child killed with the server (see
            # runtime/precompile.py) would leave stopped behind it.
            group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
            env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS="1")
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                                         **group)
        except OSError:
            log.warning("could not start the background compile; the next start compiles per layer again",
                        exc_info=True)
            return False
        log.info("compiled per layer for a quick start; compiling the whole model in the background "
                 "(pid %d) for the next start", self.proc.pid)
        return True

    @property
    def state(self) -> Optional[str]:
        """"running", "finished", "failed" or None (none started, or stopped)."""
        if self.proc is None:
            return self.result
        code = self.proc.poll()
        return "running" if code is None else "finished" if code == 0 else "failed"

    def take_result(self) -> Optional[str]:
        """The child's outcome ("finished" / "failed") the first time it is asked for after the
        child ended; None while it runs, when none was started, and after that first time."""
        if self.proc is None or self.proc.poll() is None:
            return None
        self.result = "finished" if self.proc.returncode == 0 else "failed"
        self.proc = None
        return self.result

    def pause(self) -> None:
        """Stop the child from taking CPU time while the model host works (a no-op if none)."""
        if not self.paused and self._signal(signal.SIGSTOP if CAN_PAUSE else None):
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            self.resume()  # a stopped process acts on SIGTERM once it runs again
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        self.proc, self.result, self.paused = None, None, False

    def _signal(self, sig) -> bool:
        """Send `sig` to the running child's process group; False when there is none."""
        if sig is None or self.proc is None or self.proc.poll() is not None:
            return False
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return False
        return True


def _weight_bytes(model) -> int:
    """Bytes of the model's parameters and buffers (0 for an object without them)."""
    tensors = [*getattr(model, "parameters", lambda: [])(), *getattr(model, "buffers", lambda: [])()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _available_memory() -> Optional[int]:
    """Memory in bytes that a new process can have without swapping, where the system says:
    Linux's MemAvailable (free memory plus reclaimable caches), else the free pages; None when
    neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
