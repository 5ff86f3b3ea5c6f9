"""Stage 1 of a chat turn: the editor context, read from the document when the request arrives.

The context is the selected range, or, without a selection, the document itself (LSP does not
tell the server what is visible; the prompt stage keeps the start of it up to a token budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from lsprotocol import types


@dataclass
class EditorContext:
    """Text from the editor that the user's question is about."""

    name: str  # file name shown to the model
    language: str
    text: str
    selected: bool  # True: the user's selection; False: the start of the document


def editor_context(document: Any, selection: Optional[types.Range]) -> Optional[EditorContext]:
    """The context of a pygls text document (None: no document given or open) and its selection."""
    if document is None:
        return None
    start = end = None
    if selection is not None:
        start = (selection.start.line, selection.start.character)
        end = (selection.end.line, selection.end.character)
    name = document.uri.rsplit("/", 1)[-1]
    return context_from_document(document.source, name, document.language_id or "", start, end)


def context_from_document(
    source: str, name: str, language: str, start: Optional[tuple[int, int]], end: Optional[tuple[int, int]]
) -> EditorContext:
    """The selection (line/character pairs, clamped, UTF-16 ignored) or the whole document text."""
    if start is None or end is None or start == end:
        return EditorContext(name, language, source, selected=False)
    lines = source.split("\n")

    def offset(pos: tuple[int, int]) -> int:
        line = max(0, min(pos[0], len(lines) - 1))
        return sum(len(item) + 1 for item in lines[:line]) + max(0, min(pos[1], len(lines[line])))

    a, b = sorted((offset(start), offset(end)))
    return EditorContext(name, language, source[a:b], selected=True)
