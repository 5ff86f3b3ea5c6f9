"""Stage 1 of an inline completion: the window around the cursor, cut when the request arrives.

Positions arrive in the client's encoding (UTF-16 code units by default, as LSP specifies) and
are clamped to the document, so a position past the end completes at the end instead of failing.
The window is cut in characters here (a 5 MB file is never tokenized whole); the prompt stage
(`completion_prompt`) cuts it in tokens later, on the worker. This stage also decides, from the
cursor's line, whether a multi-line suggestion fits: the generate stage needs that before the
first token, to stop at the first newline when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lsprotocol import types

from lsp_server.settings import CompletionSettings

CHARS_PER_TOKEN = 8  # generous: code rarely averages more characters per token than this
BLOCK_OPENERS = (":", "{", "(", "[", "=>", " do", " then")


@dataclass
class CursorWindow:
    prefix: str  # text before the cursor (possibly cut at the front)
    suffix: str  # text after the cursor (possibly cut at the back)
    line_prefix: str  # the cursor's line up to the cursor
    line_suffix: str  # the cursor's line after the cursor (no newline)
    offset: int  # cursor offset in Python characters
    line: int  # clamped position, in the client's units
    character: int


@dataclass
class Request:
    """One completion request as it arrived; the document may change while its job waits."""

    window: CursorWindow
    settings: CompletionSettings
    language: str = ""  # the code fence's language in a prefix-continuation prompt
    multiline: bool = False  # a multi-line suggestion fits at the cursor (`is_multiline_position`)


def snapshot(
    text: str, position: types.Position, settings: CompletionSettings, encoding: str, language: str = "",
    uri: str = "",
) -> Request:
    """Cut the window around the cursor now, on the event loop, from the current text.

    `language`: the editor's languageId; without one, the extension of `uri`'s file name."""
    window = cursor_window(
        text, position.line, position.character, max_chars=window_chars(settings.context_tokens), encoding=encoding
    )
    multiline = is_multiline_position(window.line_prefix, window.line_suffix, settings.multiline)
    return Request(window, settings, language_of(uri, language), multiline)


def utf16_to_index(line: str, character: int, encoding: str = "utf-16") -> int:
    """A position's `character` (in `encoding` units) to an index into `line`, clamped."""
    if encoding == "utf-32":
        return min(character, len(line))
    index = units = 0
    for ch in line:
        width = _width(ch, encoding)
        if units + width > character:
            break
        units += width
        index += 1
    return index


def _width(ch: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(ch.encode("utf-8"))
    return 2 if ord(ch) > 0xFFFF else 1


def cursor_window(
    text: str, line: int, character: int, *, max_chars: int, encoding: str = "utf-16"
) -> CursorWindow:
    """Split `text` at the (clamped) position; keep at most `max_chars` on each side."""
    lines = text.split("\n")
    line = max(0, min(line, len(lines) - 1))
    current = lines[line]
    column = utf16_to_index(current, max(0, character), encoding)
    offset = sum(len(item) + 1 for item in lines[:line]) + column
    prefix = text[max(0, offset - max_chars) : offset]
    suffix = text[offset : offset + max_chars]
    line_prefix = current[:column]
    line_suffix = current[column:].rstrip("\r")
    clamped_character = sum(_width(ch, encoding) for ch in line_prefix)
    return CursorWindow(prefix, suffix, line_prefix, line_suffix, offset, line, clamped_character)


def window_chars(context_tokens: int) -> int:
    """Characters to cut on each side before tokenizing."""
    return context_tokens * CHARS_PER_TOKEN


def is_multiline_position(line_prefix: str, line_suffix: str, multiline: bool) -> bool:
    """Whether a multi-line suggestion fits here: nothing after the cursor, a blank line or a block opener before it."""
    if not multiline or line_suffix.strip():
        return False
    before = line_prefix.rstrip()
    return not before or before.endswith(BLOCK_OPENERS)


def language_of(uri: str, language_id: Optional[str] = None) -> str:
    """A language name for the prompt: the editor's languageId, else the file extension."""
    if language_id:
        return language_id
    name = uri.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1] if "." in name else ""
