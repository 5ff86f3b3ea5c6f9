"""Which whole-model CPU graphs the on-disk compile cache already holds.

On a CPU the whole-model decode graph takes about 30 s more to compile than the per-layer one
(`compile.compile_model(regional=True)`) when Inductor's cache is empty, and a few seconds when
it is not, and it decodes faster. Inductor cannot say before compiling whether it will find its
graphs, so `Engine.load` keeps its own note: a small file per graph kind, written in Inductor's
cache folder after the whole graph was compiled and warmed up once. Without the note the load
compiles per layer (a quick first start) and `runtime.precompile`, run in the background by the
server, compiles the whole graph for the next start.

A graph kind is what shapes the compiled code: the model's config, the weight scheme, the CPU
kernel path, the KV cache length and the torch version; the weights themselves are inputs of
the graph, so two checkpoints of one architecture share it. A note whose graphs were deleted
since costs the old cold compile once, nothing worse.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch


def graph_key(config: dict, scheme: str | None, kernel: str | None, max_seq_length: int) -> str:
    """A stable name for the compiled graphs of this model as loaded."""
    what = {"config": config, "scheme": scheme, "kernel": kernel, "max_seq_length": max_seq_length,
            "torch": torch.__version__}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _note(key: str) -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "quill-whole-graphs" / key


def is_cached(key: str) -> bool:
    return _note(key).is_file()


def mark_cached(key: str) -> None:
    """Note that the whole graph of `key` was compiled into the cache (atomically: a process
    that stops half-way leaves no note)."""
    path = _note(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".note-")
    with os.fdopen(fd, "w") as f:
        f.write("compiled\n")
    os.replace(tmp, path)
