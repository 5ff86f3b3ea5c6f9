"""Quill: a language server with a local LLM runtime (inline completions and chat).

The `quill` command line: the parser and its dispatch. Model commands (generate, pull, models,
rm) and `bench` use the runtime directly; `serve` runs the language server; `try`, `chat` and
`complete` are thin LSP clients that start `quill serve` as a subprocess and talk to it over
stdio. Each command sets `handler(args) -> int`.
"""

from __future__ import annotations

import argparse
import sys

from lsp_server.options import add_server_options
from quill_cli import bench, model_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quill", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_commands.add_commands(commands)
    bench.add_bench_command(commands)
    add_server_commands(commands)
    return parser


def add_server_commands(commands) -> None:
    serve = commands.add_parser("serve", help="run the language server over stdio")
    add_server_options(serve)
    serve.set_defaults(handler=_serve)

    try_ = commands.add_parser("try", help="start `quill serve`, complete a sample file and chat once")
    add_server_options(try_)
    try_.add_argument("--message", default="Write a Python function that reverses a string.")
    try_.set_defaults(handler=_try)

    chat = commands.add_parser("chat", help="chat with the model in the terminal (streamed, with history)")
    add_server_options(chat)
    chat.add_argument("message", nargs="?", help="one message to send; without it, an interactive chat")
    chat.add_argument("--file", help="a file to add as context")
    chat.add_argument("--workspace", default=".", help="the folder whose history is used (default: .)")
    chat.set_defaults(handler=_chat)

    complete = commands.add_parser("complete", help="print the inline completion for FILE at a position")
    add_server_options(complete)
    complete.add_argument("file")
    complete.add_argument("--line", type=int, required=True, help="0-based line")
    complete.add_argument("--character", type=int, required=True, help="0-based character (UTF-16)")
    complete.set_defaults(handler=_complete)


# The handlers import on call: the server and the LSP client load pygls and lsprotocol, which
# `quill models` or `quill --help` should not wait for.


def _serve(args) -> int:
    from lsp_server.serve import run

    return run(args)


def _try(args) -> int:
    from quill_cli.client_commands import try_command

    return try_command(args)


def _chat(args) -> int:
    from quill_cli.client_commands import chat_command

    return chat_command(args)


def _complete(args) -> int:
    from quill_cli.client_commands import complete_command

    return complete_command(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
