"""`python -m quill_cli COMMAND ...`: the same as the `quill` command."""

import sys

from quill_cli.main import main

if __name__ == "__main__":
    sys.exit(main())
