"""Terminal clients of `quill serve` (`quill try`, `quill chat`, `quill complete`).

They are LSP clients, not part of the server: they start `quill serve` as a subprocess, speak to
it over its stdio and write their own output to the terminal. Kept out of `lsp_server/`, whose
stdout is the protocol channel and never printed to.
"""
