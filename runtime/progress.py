"""Progress reporting: the `(phase, done, total)` callback type and how it is called.

Every long step of the runtime (download, convert, load) reports through one callable,
`progress(phase, done, total)`. The language server turns these calls into LSP work-done
progress; the command line draws them (`quill_cli/progress_bars.py`).
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Callable[[str, int, int], None]

# Phases whose counts are bytes (shown as sizes); the others count tensors or files.
BYTE_PHASES = frozenset({"download"})


def report(progress: Optional[ProgressCallback], phase: str, done: int, total: int) -> None:
    """Call `progress` if there is one; a broken callback must never break a conversion."""
    if progress is None:
        return
    try:
        progress(phase, int(done), int(total))
    except Exception:  # the callback is the caller's UI; its failure is not ours to raise
        pass


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
