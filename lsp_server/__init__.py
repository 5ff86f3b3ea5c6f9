"""Quill's language server: inline completions and a streaming chat over LSP stdio."""

__version__ = "0.1.0"
