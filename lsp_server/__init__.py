"""Quill's language server: inline completions and a streaming chat over LSP stdio."""
