"""The free-disk check made before anything large is written: converted weights, downloads.

It sits with the converters because writing a checkpoint is where the space goes. The model cache
calls it too, before a download or the default model's fetch: the cache package may import the
converters, never the reverse.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import DiskSpaceError
from ..progress import format_bytes


def check_free_space(path: Path, needed: int, *, what: str, reserve_bytes: int = 0) -> None:
    """Raise `DiskSpaceError` unless `needed` bytes plus `reserve_bytes` fit on `path`'s disk.

    `reserve_bytes` is space that must stay free afterwards; it is also how tests drive the
    check without filling a disk.
    """
    probe = path
    while not probe.exists() and probe != probe.parent:  # `path` may not be created yet
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + reserve_bytes > free:
        spare = f" and keeping {format_bytes(reserve_bytes)} spare" if reserve_bytes else ""
        raise DiskSpaceError(
            f"Not enough free disk for {what}: it needs {format_bytes(needed)}{spare}, but only "
            f"{format_bytes(free)} is free on {probe}. Free some space, or point the cache at a "
            "bigger disk (QUILL_CACHE_DIR for Quill's cache, HF_HOME for Hugging Face downloads)."
        )
