"""Quill's inference engine: models, conversion, tokenizers, generation and devices.

Usable as a library on its own (`from runtime import Engine`); it never imports the language
server or pygls.
"""

from __future__ import annotations

from .errors import QuillError

__all__ = ["Engine", "GenerationConfig", "GenerationResult", "QuillError", "load_engine"]


def __getattr__(name: str):
    # Lazy, so `import runtime` stays cheap for the CLI and the server's start-up.
    if name in ("Engine", "GenerationConfig", "GenerationResult", "load_engine"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
