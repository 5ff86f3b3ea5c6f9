"""`quill try`, `quill chat` and `quill complete`: thin LSP clients of `quill serve`.

Each starts `quill serve` through a `lsp_session.Session` and uses it exactly as an editor
would: wait for the model's work-done progress to end, open a document, ask for an inline
completion, send `quill/chat` with a partial result token and print the streamed `{delta}`
values. Generated text goes to stdout; progress, timings and the server's messages go to stderr
(except for `try`, whose report is its output).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from lsp_server import protocol
from quill_cli.lsp_session import Session, server_flags

SAMPLE_NAME = "files.py"
SAMPLE = """import os


def list_python_files(folder):
    
"""
SAMPLE_CURSOR = (4, 4)  # the empty, indented body of list_python_files


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
