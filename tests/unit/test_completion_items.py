"""The items stage: the suggestion as LSP results, placed at the (clamped) cursor."""

from lsprotocol import types

from lsp_server.completion_items import completion_list, current_word, inline_list
from lsp_server.completion_window import snapshot
from lsp_server.protocol import ACCEPT_COMPLETION
from lsp_server.settings import CompletionSettings


def test_current_word():
    assert current_word("    result = compu") == "compu"
    assert current_word("foo(") == ""


def test_no_suggestion_is_an_empty_result():
    assert inline_list(None, None).items == []
    empty = completion_list(None, None)
    assert empty.items == [] and empty.is_incomplete


def test_inline_item_sits_at_the_clamped_cursor():
    request = snapshot("s = '😀' + va\n", types.Position(0, 99), CompletionSettings(), "utf-16")
    (item,) = inline_list("lue", request).items
    at = types.Position(0, 13)  # the line's end; the emoji counts two UTF-16 units
    assert item.insert_text == "lue" and item.range == types.Range(at, at)
    assert item.command.command == ACCEPT_COMPLETION


def test_completion_item_replaces_the_current_word():
    request = snapshot("total = compu\n", types.Position(0, 13), CompletionSettings(), "utf-16")
    (item,) = completion_list("te(x)\nmore", request).items
    assert item.text_edit.range == types.Range(types.Position(0, 8), types.Position(0, 13))
    assert item.text_edit.new_text == "compute(x)\nmore" and item.label == "compute(x)"
    assert item.command.command == ACCEPT_COMPLETION
    first, second = inline_list("a", request).items[0], inline_list("a", request).items[0]
    assert first.command.arguments != second.command.arguments  # each suggestion counted apart
