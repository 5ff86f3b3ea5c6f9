"""The `quill` command line: every command of the `quill` entry point.

It sits above both other packages: the model commands and `bench` call `runtime` directly,
`serve` runs `lsp_server`, and `try`, `chat` and `complete` are LSP clients of `quill serve`,
which they start as a subprocess and talk to over its stdio. Neither `runtime` nor `lsp_server`
imports this package, and the terminal output lives here, never in the server, whose stdout is
the protocol channel.
"""
