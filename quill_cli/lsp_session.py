"""A `quill serve` subprocess driven over its stdio by pygls' `LanguageClient`, as an editor would.

`Session` starts the server with the command's server options, initializes it with the
capabilities an editor announces (configuration, work-done progress, inline completion) and
collects what the server sends back: load progress, streamed chat deltas (`$/progress` on the
chat's partial result token) and messages. `quill try`, `chat` and `complete` are built on it,
and so are the benchmarks that replay editor traffic against a real server.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_server import protocol
from lsp_server.options import SERVER_OPTIONS

CAPABILITIES = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(configuration=True),
    window=types.WindowClientCapabilities(work_done_progress=True),
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities()
    ),
)


class Session:
    """A started server plus what it sent us: load progress, chat deltas, messages."""

    def __init__(self, on_delta: Callable[[str], None], on_progress: Callable[[str], None]) -> None:
        self.client = LanguageClient("quill-cli", "0.1.0")
        self.loaded = asyncio.Event()
        self.load_message = ""
        self.on_delta, self.on_progress = on_delta, on_progress
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._phase = ""
        self._register()

    def _register(self) -> None:
        client = self.client

        @client.feature(types.WORKSPACE_CONFIGURATION)
        def configuration(params: types.ConfigurationParams):
            return [None for _ in params.items]

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(params: types.WorkDoneProgressCreateParams):
            return None

        @client.feature(types.PROGRESS)
        def progress(params: types.ProgressParams):
            value = params.value if isinstance(params.value, dict) else protocol.plain(params.value)
            if "delta" in value:
                self.on_delta(value["delta"])
            elif value.get("kind") == "end":
                self.load_message = value.get("message", "")
                self.loaded.set()
            elif value.get("kind") in ("begin", "report"):
                text = value.get("title") or value.get("message") or ""
                phase = text.split(" ", 1)[0]
                if phase != self._phase:  # one line per phase, not one per report
                    self._phase = phase
                    self.on_progress(text)

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show(params: types.ShowMessageParams):
            print(f"[server] {params.message}", file=sys.stderr)

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log(params: types.LogMessageParams):
            pass

    async def start(self, flags: list[str], workspace: Path) -> None:
        # -P: a folder named like a package in the current directory must not shadow ours
        isolate = ["-P"] if sys.version_info >= (3, 11) else []
        await self.client.start_io(sys.executable, *isolate, "-m", "quill_cli", "serve", *flags)
        # the server logs to stderr: drain it (a full pipe would block the server), keep the tail
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())
        folder = types.WorkspaceFolder(uri=workspace.as_uri(), name=workspace.name)
        try:
            await self.client.initialize_async(
                types.InitializeParams(capabilities=CAPABILITIES, workspace_folders=[folder], root_uri=folder.uri)
            )
        except Exception:
            await asyncio.wait([self._stderr_task], timeout=5)
            print("quill: the server failed to start; its last log lines:", file=sys.stderr)
            print("".join(self.stderr_tail), file=sys.stderr)
            raise
        self.client.initialized(types.InitializedParams())

    async def _drain_stderr(self) -> None:
        stream = self.client._server.stderr
        while line := await stream.readline():
            self.stderr_tail.append(line.decode("utf-8", "replace"))

    async def wait_ready(self) -> dict:
        await self.loaded.wait()
        status = await self.request(protocol.STATUS, {})
        if status["state"] != "ready":
            raise SystemExit(f"quill: the model did not load: {status.get('error')}")
        return status

    async def request(self, method: str, params: Any) -> Any:
        return protocol.plain(await self.client.protocol.send_request_async(method, params))

    def open(self, uri: str, text: str, language: str = "python") -> None:
        item = types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

    async def inline_completion(self, uri: str, line: int, character: int) -> Optional[str]:
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
            )
        )
        items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
        return items[0].insert_text if items else None

    async def chat(self, message: str, **extra: Any) -> dict:
        params = {"message": message, "partialResultToken": str(uuid.uuid4()), **extra}
        return await self.request(protocol.CHAT, params)

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 30)
            self.client.exit(None)
        finally:
            await self.client.stop()


def server_flags(args) -> list[str]:
    """The server options given to this command, passed on to `quill serve`."""
    flags = []
    for option in SERVER_OPTIONS:
        value = getattr(args, option.name, None)
        if option.switch:
            flags += [f"--{option.name}"] if value else []
        elif value is not None:
            flags += [f"--{option.name}", str(value)]
    return flags
