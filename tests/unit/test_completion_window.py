"""The window around the cursor: clamped positions, UTF-16 columns, character cuts, and what the
request decides on arrival (multi-line or not, the prompt's language)."""

from lsprotocol import types

from lsp_server.completion_window import cursor_window, snapshot, utf16_to_index
from lsp_server.settings import CompletionSettings


def test_splits_at_the_cursor():
    w = cursor_window("def f():\n    return 1\n", 1, 4, max_chars=1000)
    assert (w.prefix, w.suffix) == ("def f():\n    ", "return 1\n")
    assert (w.line_prefix, w.line_suffix, w.line, w.character) == ("    ", "return 1", 1, 4)


def test_positions_past_the_end_are_clamped():
    text = "a = 1\nb = 2"
    w = cursor_window(text, 99, 99, max_chars=1000)
    assert (w.prefix, w.suffix, w.line, w.character) == (text, "", 1, 5)
    w = cursor_window(text, 0, 500, max_chars=1000)
    assert (w.prefix, w.line_suffix, w.character) == ("a = 1", "", 5)
    w = cursor_window(text, -3, -1, max_chars=1000)
    assert (w.prefix, w.line, w.character) == ("", 0, 0)


def test_columns_are_utf16_code_units():
    line = "s = '😀é' + x"
    # the emoji takes two UTF-16 units, so character 8 is right after 'é' (index 7)
    assert utf16_to_index(line, 8) == 7
    assert utf16_to_index(line, 6) == 5  # inside the surrogate pair: stays before the emoji
    assert utf16_to_index(line, 7, "utf-32") == 7
    assert utf16_to_index(line, 11, "utf-8") == 7  # 😀 is 4 bytes, é 2
    w = cursor_window(line, 0, 8, max_chars=100)
    assert w.line_prefix == "s = '😀é" and w.character == 8


def test_large_documents_are_cut_in_characters_before_tokenizing():
    text = "x = 1\n" * 1_000_000  # 6 MB
    w = cursor_window(text, 500_000, 0, max_chars=4096)
    assert len(w.prefix) == 4096 and len(w.suffix) == 4096
    assert w.prefix.endswith("x = 1\n") and w.suffix.startswith("x = 1")


def test_snapshot_decides_multiline_and_language_on_arrival():
    text = "def f(x):\n    \nprint(f(1))\n"
    request = snapshot(text, types.Position(1, 4), CompletionSettings(context_tokens=1), "utf-16", "", "file:///w/a.py")
    assert request.multiline and request.language == "py"
    assert (request.window.prefix, request.window.suffix) == ("x):\n    ", "\nprint(f")  # 8 characters a token
    assert request.settings.context_tokens == 1
    mid_line = snapshot(text, types.Position(2, 6), CompletionSettings(), "utf-16", "python", "file:///w/a.py")
    assert not mid_line.multiline and mid_line.language == "python"
    off = snapshot(text, types.Position(1, 4), CompletionSettings(multiline=False), "utf-16")
    assert not off.multiline and off.language == ""
