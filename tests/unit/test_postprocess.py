"""Post-processing of raw model text into the suggestion an editor shows."""

from lsp_server.completion_window import is_multiline_position
from lsp_server.postprocess import postprocess, unheal


def pp(text, before, after="", multiline=True):
    """`before`/`after`: the document around the cursor (only the cursor's line matters mostly)."""
    line_prefix = before.rsplit("\n", 1)[-1]
    line_suffix = after.split("\n", 1)[0]
    return postprocess(text, prefix=before, suffix=after, line_prefix=line_prefix,
                       line_suffix=line_suffix, multiline=multiline)


def test_mid_line_is_single_line():
    assert pp("a, b)\n    return x\n", "print(", ")") == "a, b"
    assert not is_multiline_position("x = foo(", ")", True)


def test_unheal_moves_a_next_line_answer_onto_the_cursor_line():
    assert unheal("\n    files = []\n    x", "    ") == "files = []\n    x"
    assert unheal("return 1", "    ") == "return 1"
    assert unheal("\nreturn 1", "    ") == "\nreturn 1"
    assert unheal("\n    x", "foo(") == "\n    x"  # only for a blank, indented cursor line


def test_new_block_is_multi_line_and_stops_when_leaving_the_block():
    before = "def add(a, b):\n"
    text = "    total = a + b\n    return total\n\ndef other():\n    pass\n"
    assert pp(text, before) == "    total = a + b\n    return total"


def test_after_a_block_opener_keeps_the_next_lines_indentation():
    text = "\n    for x in xs:\n        yield x\nprint('done')"
    assert pp(text, "def gen(xs):") == "\n    for x in xs:\n        yield x"


def test_multiline_setting_off_gives_one_line():
    assert pp("    return 1\n    more\n", "def f():\n", multiline=False) == "    return 1"


def test_stops_before_repeating_the_suffix():
    before = "def f(x):\n"
    after = "    return y\n"
    text = "    y = x * 2\n    return y\n"
    assert pp(text, before, after) == "    y = x * 2"


def test_drops_closers_the_suffix_supplies_but_keeps_balanced_ones():
    assert pp("x)", "print(", ")") == "x"
    assert pp("foo()", "print(", ")") == "foo()"
    assert pp("value):", "if check(", "):") == "value"


def test_cuts_at_a_closer_nothing_opened():
    assert pp("1, 2]\nmore", "items = [0, ", "") == "1, 2]"
    assert pp("a) + b)", "f(", "") == "a) + b"


def test_never_empty_or_whitespace_only():
    assert pp("   \n\n", "def f():\n") is None
    assert pp("\nfoo", "x = 1", " # note") is None
    assert pp("", "x") is None


def test_mid_line_keeps_trailing_space_before_suffix_text():
    assert pp("x = 5", "", "= 5") == "x "


def test_on_an_indented_blank_line_text_that_dedents_is_not_suggested():
    before = "def f():\n    "
    assert pp("\ndef g():\n    pass", before) is None
    assert pp("return 1\n    \ndef g():", before) == "return 1"


def test_mid_line_stops_where_the_rest_of_the_line_begins():
    assert pp("5))  # Output: 15", "print(area(3, ", "))") == "5"
    assert pp("foo())", "print(", ")") == "foo()"


def test_an_unfinished_last_line_is_dropped_when_the_token_limit_hit():
    text = "files = []\n    for name in os.listdir(folder):\n        with open"
    before = "def f(folder):\n    "
    kwargs = dict(prefix=before, suffix="", line_prefix="    ", line_suffix="", multiline=True)
    assert postprocess(text, truncated=True, **kwargs) == "files = []\n    for name in os.listdir(folder):"
    assert postprocess(text, truncated=False, **kwargs) == text
    assert postprocess("files = []", truncated=True, **kwargs) == "files = []"


def test_a_truncated_last_line_that_a_closer_already_ended_is_kept():
    # the cut ended the suggestion inside the last line: what the budget cut off after it is
    # irrelevant, so the line is complete (and a stream stopped at the closer gives the same)
    kwargs = dict(prefix="def f():\n", suffix="", line_prefix="", line_suffix="", multiline=True)
    assert postprocess("    a = 1\n    return a) + g(", truncated=True, **kwargs) == "    a = 1\n    return a"
    assert postprocess("    a = 1\n    return a + g(", truncated=True, **kwargs) == "    a = 1"
    # a repeat of the suffix or a line leaving the block ends it before the last line either way
    kwargs["suffix"] = "\n    return a\n"
    assert postprocess("    a = 1\n    return a", truncated=True, **kwargs) == "    a = 1"
