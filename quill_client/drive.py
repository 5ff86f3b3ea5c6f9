"""`quill try`, `quill chat` and `quill complete`: thin LSP clients of `quill serve`.

Each starts `quill serve` (as `python -m lsp_server.cli serve`) as a subprocess and talks to it over stdio with pygls'
`LanguageClient`, exactly as an editor would: initialize, wait for the model's work-done
progress to end, open a document, ask for an inline completion, send `quill/chat` with a partial
result token and print the streamed `{delta}` values. Generated text goes to stdout; progress,
timings and the server's messages go to stderr (except for `try`, whose report is its output).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_server import protocol

SAMPLE_NAME = "files.py"
SAMPLE = """import os


def list_python_files(folder):
    
"""
SAMPLE_CURSOR = (4, 4)  # the empty, indented body of list_python_files
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
        await self.client.start_io(sys.executable, *isolate, "-m", "lsp_server.cli", "serve", *flags)
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
    """The model flags of this command, passed on to `quill serve`."""
    flags = []
    for name in ("model", "hf_model", "checkpoint_path", "device", "precision", "max_context_length", "data_dir", "cache_dir"):
        value = getattr(args, name, None)
        if value is not None:
            flags += [f"--{name}", str(value)]
    if getattr(args, "disable_history", False):
        flags.append("--disable_history")
    return flags


def _stderr_progress(text: str) -> None:
    print(f"  ... {text}", file=sys.stderr, flush=True)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# --- quill try --------------------------------------------------------------------------------


def try_command(args) -> int:
    return asyncio.run(_try(args))


async def _try(args) -> int:
    with tempfile.TemporaryDirectory(prefix="quill-try-") as tmp:
        workspace = Path(tmp)
        flags = server_flags(args)
        if getattr(args, "data_dir", None) is None:
            flags += ["--data_dir", str(workspace / ".quill-data")]
        started = time.perf_counter()
        # one line per phase of the first load (download, convert, load, compile), with the time
        # since the start at which it began
        session = Session(_write, lambda text: print(f"  ... {text:<25} {_ms(started)}", flush=True))
        print("quill try: starting `quill serve` over stdio", flush=True)
        await session.start(flags, workspace)
        print(f"initialize answered          {_ms(started)}", flush=True)
        try:
            await _try_steps(session, workspace, args.message, started)
        finally:
            await session.stop()
    return 0


async def _try_steps(session: Session, workspace: Path, message: str, started: float) -> None:
    status = await session.wait_ready()
    print(f"model ready                  {_ms(started)}  ({session.load_message})", flush=True)
    print(f"  model {status['model']}, device {status['device']}, dtype {status['dtype']}")
    if status.get("cpuKernel"):
        print(f"  CPU kernel path {status['cpuKernel']}")

    path = workspace / SAMPLE_NAME
    path.write_text(SAMPLE, encoding="utf-8")
    uri = path.as_uri()
    session.open(uri, SAMPLE)
    line, character = SAMPLE_CURSOR
    print(f"\nopened {SAMPLE_NAME}; inline completion at line {line + 1}, column {character + 1}:")
    t = time.perf_counter()
    text = await session.inline_completion(uri, line, character)
    print(f"--- suggestion ({_ms(t)}) ---")
    print(text if text is not None else "(no suggestion)")
    print("---")

    print(f"\nquill/chat: {message}\n--- streamed reply ---", flush=True)
    t = time.perf_counter()
    result = await session.chat(message, textDocument={"uri": uri})
    seconds = time.perf_counter() - t
    usage = result["usage"]
    rate = usage["completionTokens"] / seconds if seconds > 0 else 0.0
    print("\n---")
    print(
        f"chat turn                    {seconds * 1000:.0f} ms  ({usage['promptTokens']} prompt tokens, "
        f"{usage['completionTokens']} generated, {rate:.1f} tokens/s, finish: {result['finishReason']})"
    )
    final = await session.request(protocol.STATUS, {})
    print(f"total                        {_ms(started)}  (generations run: {final['generations']})")


def _ms(since: float) -> str:
    return f"{(time.perf_counter() - since) * 1000:7.0f} ms"


# --- quill chat -------------------------------------------------------------------------------


def chat_command(args) -> int:
    return asyncio.run(_chat(args))


async def _chat(args) -> int:
    workspace = Path(args.workspace).resolve()
    session = Session(_write, _stderr_progress)
    await session.start(server_flags(args), workspace)
    try:
        await session.wait_ready()
        extra: dict = {"workspaceFolder": workspace.as_uri()}
        if args.file:
            path = Path(args.file).resolve()
            session.open(path.as_uri(), path.read_text(encoding="utf-8", errors="replace"))
            extra["textDocument"] = {"uri": path.as_uri()}
        if args.message:
            await session.chat(args.message, **extra)
            _write("\n")
            return 0
        await _interactive(session, extra)
    finally:
        await session.stop()
    return 0


async def _interactive(session: Session, extra: dict) -> None:
    print("quill chat — /history, /clear, /quit", file=sys.stderr)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, _read_line)
        if line is None or line.strip() in ("/quit", "/exit"):
            return
        if not line.strip():
            continue
        if line.strip() == "/clear":
            result = await session.request(protocol.CLEAR_HISTORY, {"workspaceFolder": extra["workspaceFolder"]})
            print(f"(cleared {result['cleared']} turns)", file=sys.stderr)
            continue
        if line.strip() == "/history":
            result = await session.request(protocol.HISTORY, {"workspaceFolder": extra["workspaceFolder"]})
            for turn in result["turns"]:
                print(f"{turn['role']}: {turn['content']}", file=sys.stderr)
            continue
        await session.chat(line, **extra)
        _write("\n")


def _read_line() -> Optional[str]:
    try:
        return input("> ")
    except EOFError:
        return None


# --- quill complete ---------------------------------------------------------------------------


def complete_command(args) -> int:
    return asyncio.run(_complete(args))


async def _complete(args) -> int:
    path = Path(args.file).resolve()
    text = path.read_text(encoding="utf-8", errors="replace")
    session = Session(_write, _stderr_progress)
    await session.start(server_flags(args), path.parent)
    try:
        await session.wait_ready()
        session.open(path.as_uri(), text, _language(path))
        suggestion = await session.inline_completion(path.as_uri(), args.line, args.character)
    finally:
        await session.stop()
    if suggestion is None:
        print("(no suggestion)", file=sys.stderr)
        return 1
    _write(suggestion + "\n")
    return 0


def _language(path: Path) -> str:
    return {".py": "python", ".js": "javascript", ".ts": "typescript", ".rs": "rust", ".go": "go"}.get(
        path.suffix, path.suffix.lstrip(".")
    )
