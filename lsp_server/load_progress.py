"""Work-done progress for a model load (`$/progress` begin, report, end), with the same lines in
the log.

The load reports `(phase, done, total)` from the worker thread as soon as it starts; the
work-done token only exists once the client has answered `window/workDoneProgress/create`, so
`ProgressRelay` keeps what comes before and hands it on.
"""

from __future__ import annotations

import logging
import uuid
from typing import Optional

from lsprotocol import types
from pygls.lsp.server import LanguageServer

log = logging.getLogger("quill")


class ProgressRelay:
    """Load progress that arrives before the work-done token exists is kept, then handed on."""

    def __init__(self) -> None:
        self.reporter: Optional["ProgressReporter"] = None
        self._early: list[tuple[str, int, int]] = []

    def report(self, phase: str, done: int, total: int) -> None:
        if self.reporter is None:
            self._early.append((phase, done, total))
        else:
            self.reporter.report(phase, done, total)

    def attach(self, reporter: "ProgressReporter") -> None:
        self.reporter = reporter
        for early in self._early:
            reporter.report(*early)
        self._early = []


class ProgressReporter:
    """Work-done progress for a model load: begin, report per phase/percent, end."""

    def __init__(self, ls: LanguageServer, token: Optional[str], title: str) -> None:
        self.ls, self.token, self.title = ls, token, title
        self._last: Optional[tuple[str, int]] = None

    @classmethod
    async def start(cls, ls: LanguageServer, title: str) -> "ProgressReporter":
        token: Optional[str] = str(uuid.uuid4())
        window = ls.client_capabilities.window
        if window and window.work_done_progress:
            try:
                await ls.work_done_progress.create_async(token)
                ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, percentage=0))
            except Exception as exc:
                log.warning("work-done progress unavailable: %s", exc)
                token = None
        else:
            token = None
        log.info("%s", title)
        return cls(ls, token, title)

    def report(self, phase: str, done: int, total: int) -> None:
        percent = int(100 * done / total) if total > 0 else 0
        if self._last == (phase, percent):
            return
        if self._last is None or self._last[0] != phase:
            log.info("%s: %s", self.title, phase)
        self._last = (phase, percent)
        if self.token is not None:
            message = f"{phase} {_amount(phase, done, total)}"
            self.ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(message=message, percentage=percent))

    def end(self, message: str) -> None:
        log.info("%s", message)
        if self.token is not None:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))


def _amount(phase: str, done: int, total: int) -> str:
    if phase == "download":
        return f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
    return f"{done}/{total}"

