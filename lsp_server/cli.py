"""Quill: a language server with a local LLM runtime (inline completions and chat).

The `quill` command line: runtime commands (generate, pull, models, rm, bench) and server
commands (serve, try, chat, complete).

Runtime commands are defined in `runtime.cli`; this module only adds the ones that need the
server, so `runtime/` stays free of server imports. `try`, `chat` and `complete` are thin LSP
clients: they start `quill serve` as a subprocess and talk to it over stdio (`quill_client.drive`).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from runtime import cli as runtime_cli

    parser = argparse.ArgumentParser(prog="quill", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runtime_cli.add_commands(commands)
    add_server_commands(commands)
    return parser


def add_server_commands(commands) -> None:
    from lsp_server.serve import add_model_flags

    serve = commands.add_parser("serve", help="run the language server over stdio")
    add_model_flags(serve)
    serve.set_defaults(handler=_serve)

    try_ = commands.add_parser("try", help="start `quill serve`, complete a sample file and chat once")
    add_model_flags(try_)
    try_.add_argument("--message", default="Write a Python function that reverses a string.")
    try_.set_defaults(handler=_try)

    chat = commands.add_parser("chat", help="chat with the model in the terminal (streamed, with history)")
    add_model_flags(chat)
    chat.add_argument("message", nargs="?", help="one message to send; without it, an interactive chat")
    chat.add_argument("--file", help="a file to add as context")
    chat.add_argument("--workspace", default=".", help="the folder whose history is used (default: .)")
    chat.set_defaults(handler=_chat)

    complete = commands.add_parser("complete", help="print the inline completion for FILE at a position")
    add_model_flags(complete)
    complete.add_argument("file")
    complete.add_argument("--line", type=int, required=True, help="0-based line")
    complete.add_argument("--character", type=int, required=True, help="0-based character (UTF-16)")
    complete.set_defaults(handler=_complete)


def _serve(args) -> int:
    from lsp_server.serve import run

    return run(args)


def _try(args) -> int:
    from quill_client.drive import try_command

    return try_command(args)


def _chat(args) -> int:
    from quill_client.drive import chat_command

    return chat_command(args)


def _complete(args) -> int:
    from quill_client.drive import complete_command

    return complete_command(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
