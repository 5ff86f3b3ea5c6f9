"""Stage 5 of an inline completion: the suggestion as LSP items, back on the event loop.

`inline_list` answers `textDocument/inlineCompletion`, `completion_list` the
`textDocument/completion` fallback. Each item carries the `quill.acceptCompletion` command, so
the client reports accepted suggestions back. No suggestion (None) is an empty result.
"""

from __future__ import annotations

import itertools
from typing import Optional

from lsprotocol import types

from lsp_server.completion_window import Request
from lsp_server.protocol import ACCEPT_COMPLETION

_ids = itertools.count(1)


def _accept_command(completion_id: int) -> types.Command:
    return types.Command(title="Quill: accept suggestion", command=ACCEPT_COMPLETION, arguments=[completion_id])


def inline_list(text: Optional[str], request: Optional[Request]) -> types.InlineCompletionList:
    """The textDocument/inlineCompletion result: one item, or none."""
    if text is None:
        return types.InlineCompletionList(items=[])
    at = types.Position(request.window.line, request.window.character)
    item = types.InlineCompletionItem(
        insert_text=text, range=types.Range(at, at), command=_accept_command(next(_ids))
    )
    return types.InlineCompletionList(items=[item])


def completion_list(text: Optional[str], request: Optional[Request]) -> types.CompletionList:
    """The textDocument/completion fallback: the same text as one item replacing the current word."""
    if text is None:
        return types.CompletionList(is_incomplete=True, items=[])
    window = request.window
    word = current_word(window.line_prefix)
    end = types.Position(window.line, window.character)
    start = types.Position(window.line, window.character - len(word.encode("utf-16-le")) // 2)
    first_line = text.strip().split("\n", 1)[0]
    item = types.CompletionItem(
        label=(word + first_line)[:80] or first_line[:80],
        kind=types.CompletionItemKind.Text,
        detail="Quill",
        filter_text=word + text,
        text_edit=types.TextEdit(range=types.Range(start, end), new_text=word + text),
        insert_text_format=types.InsertTextFormat.PlainText,
        sort_text="0",
        command=_accept_command(next(_ids)),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def current_word(line_prefix: str) -> str:
    """The identifier characters right before the cursor (for completion-list filtering)."""
    end = len(line_prefix)
    start = end
    while start > 0 and (line_prefix[start - 1].isalnum() or line_prefix[start - 1] == "_"):
        start -= 1
    return line_prefix[start:end]
