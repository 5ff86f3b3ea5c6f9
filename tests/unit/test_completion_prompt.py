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


def test_prompt_ids_with_real_tokenizers():
    """Prefix continuation (SmolLM2's vocabulary has no FIM tokens) and FIM (Qwen's has)."""
    from lsp_server.completion_prompt import build_completion_prompt
    from runtime.prompts import detect_fim
    from runtime.tokenizer import load_tokenizer
    from tests.assets import qwen3_tokenizer_dir, smollm2_gguf

    text = "import os\n\n" + "x = 1\n" * 2000 + "def f(folder):\n    \nprint(f('.'))\n"
    line = text.count("\n") - 2
    window = cursor_window(text, line, 4, max_chars=8 * 256)

    smol = load_tokenizer(smollm2_gguf())
    assert detect_fim(smol) is None
    prompt = build_completion_prompt(smol, None, window, 256, "python")
    assert smol.decode(prompt.ids).startswith("```python\n")
    assert smol.decode(prompt.ids).endswith("def f(folder):\n    ")
    assert prompt.prefix_tokens == 256 and prompt.stop_strings == ("```",)

    qwen = load_tokenizer(qwen3_tokenizer_dir())
    fim = detect_fim(qwen)
    assert fim is not None
    prompt = build_completion_prompt(qwen, fim, window, 256, "python")
    assert prompt.fim and prompt.prefix_tokens == 192 and 0 < prompt.suffix_tokens <= 64
    assert prompt.ids[0] == fim.prefix_id and prompt.ids[-1] == fim.middle_id
    assert fim.suffix_id in prompt.ids and prompt.stop_ids >= fim.stop_ids
