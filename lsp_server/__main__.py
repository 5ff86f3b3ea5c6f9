"""`python -m lsp_server [flags]`: the same as `quill serve` (LSP over stdio)."""

import argparse
import sys

from lsp_server.serve import add_model_flags, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lsp_server", description=__doc__)
    add_model_flags(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
