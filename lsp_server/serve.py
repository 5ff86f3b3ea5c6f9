"""Run the language server over stdio (`python -m lsp_server`, `quill serve`).

stdout carries the protocol and nothing else: logging goes to stderr, and records of the `quill`,
`lsp_server` and `runtime` loggers are also sent to the editor as `window/logMessage` (from any
thread, via the event loop). File descriptor 1 itself is pointed at stderr before the server
starts, so a library's stray `print` (or a C extension's write) cannot corrupt the protocol,
which goes out through a private duplicate of the original stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lsprotocol import types

LEVELS = {logging.ERROR: types.MessageType.Error, logging.WARNING: types.MessageType.Warning}


class LogMessageHandler(logging.Handler):
    """Forwards log records to the client as window/logMessage once the server runs."""

    def __init__(self, server) -> None:
        super().__init__(logging.INFO)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        loop = self.server.loop  # set when `initialize` arrives
        if loop is None or loop.is_closed():
            return
        kind = LEVELS.get(record.levelno, types.MessageType.Info)
        params = types.LogMessageParams(type=kind, message=self.format(record))
        try:
            loop.call_soon_threadsafe(self._send, params)
        except RuntimeError:  # loop already closed during exit
            pass

    def _send(self, params: types.LogMessageParams) -> None:
        try:
            self.server.window_log_message(params)
        except Exception:
            pass


def run(args: argparse.Namespace) -> int:
    """Serve LSP on stdin/stdout until the client says exit."""
    from lsp_server import settings
    from lsp_server.server import server

    # nothing but the protocol may reach stdout: keep a private handle on it for pygls and point
    # file descriptor 1 (and sys.stdout) at stderr, so stray writes, even from C code, go there
    sys.stdout.flush()
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(
        level=os.environ.get("QUILL_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pygls").setLevel(logging.WARNING)
    handler = LogMessageHandler(server)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("quill", "lsp_server", "runtime"):
        logging.getLogger(name).addHandler(handler)

    server.cli_settings = settings.from_cli(args)
    server.start_io(sys.stdin.buffer, protocol_out)
    return 0
