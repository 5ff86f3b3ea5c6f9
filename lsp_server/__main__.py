"""`python -m lsp_server [flags]`: the same as `quill serve` (LSP over stdio)."""

import argparse
import sys

from lsp_server.options import add_server_options
from lsp_server.serve import run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lsp_server", description=__doc__)
    add_server_options(parser)
    return parser


def main() -> int:
    return run(build_parser().parse_args())


if __name__ == "__main__":
    sys.exit(main())
