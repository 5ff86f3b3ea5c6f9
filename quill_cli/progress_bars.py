"""The command line's view of runtime progress: one bar per phase, on stderr only, because stdout
carries the generated text."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from runtime.progress import BYTE_PHASES, format_bytes


class ProgressBars:
    """A `ProgressCallback` that draws one bar per phase on a terminal, or prints a line when a
    phase starts and when it ends if the stream is not a terminal (logs, pipes, tests)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, min_interval: float = 0.1):
        self.stream = stream or sys.stderr
        self.width = width
        self.min_interval = min_interval
        self._phase: str | None = None
        self._last_draw = 0.0
        self._finished: set[str] = set()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._phase:
            self._end_line()
            self._phase = phase
            self._finished.discard(phase)
            if not self._tty:
                self._write(f"{phase}: started\n")
        complete = total > 0 and done >= total
        if self._tty:
            now = time.monotonic()
            if complete or now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self._write("\r" + self._bar(phase, done, total))
        if complete and phase not in self._finished:
            self._finished.add(phase)
            if self._tty:
                self._write("\n")
            else:
                self._write(f"{phase}: done ({self._count(phase, done, total)})\n")
            self._phase = None

    def close(self) -> None:
        self._end_line()

    def _end_line(self) -> None:
        if self._tty and self._phase is not None:
            self._write("\n")
        self._phase = None

    def _count(self, phase: str, done: int, total: int) -> str:
        if phase in BYTE_PHASES:
            return f"{format_bytes(done)}/{format_bytes(total)}" if total else format_bytes(done)
        return f"{done}/{total}" if total else str(done)

    def _bar(self, phase: str, done: int, total: int) -> str:
        frac = min(done / total, 1.0) if total > 0 else 0.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{phase:>8} [{bar}] {frac * 100:5.1f}% {self._count(phase, done, total)}"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
