"""The window around the cursor: clamped positions, UTF-16 columns, character cuts."""

from lsp_server.completion_prompt import current_word, cursor_window, utf16_to_index


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


def test_current_word():
    assert current_word("    result = compu") == "compu"
    assert current_word("foo(") == ""


def test_unheal_moves_a_next_line_answer_onto_the_cursor_line():
    from lsp_server.completion_prompt import unheal

    assert unheal("\n    files = []\n    x", "    ") == "files = []\n    x"
    assert unheal("return 1", "    ") == "return 1"
    assert unheal("\nreturn 1", "    ") == "\nreturn 1"
    assert unheal("\n    x", "foo(") == "\n    x"  # only for a blank, indented cursor line
