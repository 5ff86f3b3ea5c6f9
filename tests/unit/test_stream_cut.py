"""`StreamCut` rule by rule: where it says stop, and that stopping there changes no suggestion.

Each case is a document around the cursor and a model text. The text is streamed one character
at a time; the cut must stop exactly where the case says (not later: tokens are wasted; not
earlier: the suggestion could still change), and the post-processed text up to the stop must
equal the post-processed whole text, whether or not the whole text hit the token limit.
"""

from __future__ import annotations

import pytest

from lsp_server.postprocess import MAX_LINES, postprocess, unheal
from lsp_server.stream_cut import StreamCut


def context(before: str, after: str = "", multiline: bool = True) -> dict:
    return dict(prefix=before, suffix=after, line_prefix=before.rsplit("\n", 1)[-1],
                line_suffix=after.split("\n", 1)[0], multiline=multiline)


def stop_point(text: str, **ctx) -> int | None:
    """Characters read when the cut says stop, or None when it never does."""
    cut = StreamCut(**ctx)
    for i, ch in enumerate(text):
        if cut.push(ch):
            return i + 1
    return None


def suggestion(text: str, truncated: bool, **ctx):
    return postprocess(unheal(text, ctx["line_prefix"]), truncated=truncated, **ctx)


def check(text: str, stop: str | None, **ctx) -> None:
    """`stop`: the text read when the cut stops (None: it must read everything)."""
    at = stop_point(text, **ctx)
    assert (text[:at] if at is not None else None) == stop
    if at is None:
        return
    for truncated in (False, True):
        assert suggestion(text[:at], False, **ctx) == suggestion(text, truncated, **ctx)


# --- single-line ------------------------------------------------------------------------------


def test_single_line_stops_at_the_newline():
    check("total(a, b)\nprint(x)\n", "total(a, b)\n", **context("x = ", ""))


def test_single_line_stops_where_the_rest_of_the_line_begins():
    check("5))  # Output: 15", "5))", **context("print(area(3, ", "))"))


def test_single_line_stops_at_a_closer_nothing_opened():
    check("a, b) + c) * 2", "a, b) + c)", **context("f(", ""))


def test_a_closer_waits_while_the_rest_of_the_line_may_be_starting_before_it():
    # "x]" could become the line's rest "x])": the suggestion is then "y + ", not "y + x"
    ctx = context("f(", "x])")
    check("y + x])", "y + x])", **ctx)
    assert suggestion("y + x])", True, **ctx) == "y + "
    check("y + x]; z", "y + x];", **ctx)  # it did not become the rest: the closer cut stands


def test_single_line_text_without_an_end_is_read_to_the_end():
    check("value + other", None, **context("x = ", ""))


def test_windows_line_ends_end_a_line_as_newlines_do():
    check("    x = 1\r\n    y = 2\r\nz = 3\r\n", "    x = 1\r\n    y = 2\r\nz", **context("def f():\n"))


def test_healing_waits_until_it_is_known_whether_it_applies():
    # the single-line rule would stop at a newline, but "\n" + the indent is healed away
    ctx = context("def f():\n    ", "", multiline=False)
    check("\n    return 1\nx", "\n    return 1\n", **ctx)
    check("\n  x\n", "\n  x", **ctx)  # not the indent: the newline ended the line


# --- multi-line ---------------------------------------------------------------------------------


def test_multi_line_stops_at_the_first_character_of_a_line_leaving_the_block():
    before = "def add(a, b):\n"
    check("    total = a + b\n    return total\n\ndef other():\n", "    total = a + b\n    return total\n\nd",
          **context(before))


def test_blank_and_whitespace_lines_do_not_decide_the_block():
    check("    x = 1\n  \n\n    y = 2\nz", "    x = 1\n  \n\n    y = 2\nz", **context("def f():\n"))


def test_on_an_indented_blank_line_a_dedent_below_the_cursor_stops():
    check("return 1\n    \ndef g():", "return 1\n    \nd", **context("def f():\n    "))


def test_multi_line_stops_after_a_complete_line_that_repeats_the_suffix():
    ctx = context("def f(x):\n", "\n    return y\n")
    check("    y = x * 2\n    return y\n    more\n", "    y = x * 2\n    return y\n", **ctx)
    # "return y" is only a start of "return yy": no repeat
    check("    y = x * 2\n    return yy\n    z = 1\nq", "    y = x * 2\n    return yy\n    z = 1\nq", **ctx)


def test_a_closer_on_a_line_that_may_still_repeat_the_suffix_waits_for_the_line():
    ctx = context("def f(x):\n", "\n    return g(x))\n")
    check("    y = 1\n    return g(x))\n    z", "    y = 1\n    return g(x))\n", **ctx)
    assert suggestion("    y = 1\n    return g(x))\n", False, **ctx) == "    y = 1"
    # trailing spaces keep the repeat possible; the "+" ends it, and the closer cut stands
    check("    y = 1\n    return g(x))  + 1\n", "    y = 1\n    return g(x))  +", **ctx)


def test_a_line_leaving_the_block_stops_before_its_closers_matter():
    check("    1,\n    2,\n]\nprint(items)\n", "    1,\n    2,\n]", **context("items = [\n", "\n]\n"))


def test_multi_line_stops_at_a_closer_nothing_opened():
    check("    a = 1\n    return a)\n    b", "    a = 1\n    return a)", **context("def f():\n"))


def test_after_max_lines_the_next_lines_first_character_stops():
    ctx = context("def f():\n")
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES + 3))
    stop = body.split("\n")
    check(body, "\n".join(stop[:MAX_LINES]) + "\n ", **ctx)
    assert suggestion(body, True, **ctx).count("\n") == MAX_LINES - 1


@pytest.mark.parametrize("multiline", [True, False])
def test_nothing_is_decided_by_an_empty_stream(multiline):
    cut = StreamCut(**context("def f():\n", "", multiline=multiline))
    assert not cut() and not cut.push("") and cut.text == ""
