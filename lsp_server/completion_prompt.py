"""The prompt for an inline completion: a prefix/suffix window around the cursor, in tokens.

Positions arrive in the client's encoding (UTF-16 code units by default, as LSP specifies) and
are clamped to the document, so a position past the end completes at the end instead of failing.
The window is cut in characters first (a 5 MB file is never tokenized whole), then in tokens:
about three quarters of `context_tokens` for the prefix, the rest for the suffix. Models with
fill-in-the-middle tokens (`runtime.prompts.detect_fim`) get a FIM prompt; others continue the
prefix, as llm-ls and Tabby do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

CHARS_PER_TOKEN = 8  # generous: code rarely averages more characters per token than this
PREFIX_SHARE = 0.75
FENCE = "```"


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
class CompletionPrompt:
    ids: list[int]
    stop_ids: frozenset
    fim: bool
    prefix_tokens: int
    suffix_tokens: int
    stop_strings: tuple = ()


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


def build_completion_prompt(
    tokenizer, fim, window: CursorWindow, context_tokens: int, language: str = ""
) -> CompletionPrompt:
    """Token ids for the model: FIM when `fim` is a FimFormat, prefix continuation otherwise.

    Prefix continuation starts the prompt with a Markdown code fence (and stops at the closing
    one): small instruction-tuned models such as SmolLM2-Instruct saw most of their code inside
    fences, and without one they tend to answer in prose after the first line.
    """
    prefix_budget = int(context_tokens * PREFIX_SHARE) if fim else context_tokens
    suffix_budget = context_tokens - prefix_budget
    prefix_ids = tokenizer.encode(window.prefix)[-prefix_budget:] if window.prefix else []
    stop_ids = frozenset(tokenizer.stop_ids)
    if fim is not None:
        suffix_ids = fim.encode_suffix(tokenizer, window.suffix)[:suffix_budget] if window.suffix else []
        ids = fim.build(prefix_ids, suffix_ids)
        stop_ids |= frozenset(fim.stop_ids)
        return CompletionPrompt(ids, stop_ids, True, len(prefix_ids), len(suffix_ids))
    bos: list[int] = [tokenizer.bos_id] if tokenizer.add_bos and tokenizer.bos_id is not None else []
    fence = tokenizer.encode(f"{FENCE}{language}\n")
    return CompletionPrompt(bos + fence + prefix_ids, stop_ids, False, len(prefix_ids), 0, (FENCE,))


def unheal(text: str, indent: str) -> str:
    """Model text relative to an indented blank cursor line.

    Models often answer `    |` with a newline and the indented statement on the next line;
    the suggestion then belongs on the cursor's own line.
    """
    if indent and not indent.strip() and text.startswith("\n" + indent):
        return text[1 + len(indent) :]
    return text


def window_chars(context_tokens: int) -> int:
    """Characters to cut on each side before tokenizing."""
    return context_tokens * CHARS_PER_TOKEN


def current_word(line_prefix: str) -> str:
    """The identifier characters right before the cursor (for completion-list filtering)."""
    end = len(line_prefix)
    start = end
    while start > 0 and (line_prefix[start - 1].isalnum() or line_prefix[start - 1] == "_"):
        start -= 1
    return line_prefix[start:end]


def language_of(uri: str, language_id: Optional[str] = None) -> str:
    """A language name for chat context: the editor's languageId, else the file extension."""
    if language_id:
        return language_id
    name = uri.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1] if "." in name else ""
