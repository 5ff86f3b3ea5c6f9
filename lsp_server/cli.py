"""The `quill` command line: runtime commands (generate, pull, models, rm, bench) and server
commands (serve, try, chat, complete).

Runtime commands are defined in `runtime.cli`; this module only adds the ones that need the
server, so `runtime/` stays free of server imports.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from runtime import cli as runtime_cli

    parser = argparse.ArgumentParser(prog="quill", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runtime_cli.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
