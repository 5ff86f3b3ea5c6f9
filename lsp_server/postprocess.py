"""Stage 4 of an inline completion: turning raw model text into the suggestion an editor shows.

The rules users expect from Copilot, Tabby and llama.vim:
- mid-line (text after the cursor on its line): one line only;
- at a new block (cursor at the end of a line that is blank or opens a block): several lines, up
  to where the text leaves the block (a line indented less than the block's first line);
- stop where the text starts repeating what follows the cursor (the suffix);
- keep the model's indentation as it is (no re-indenting, no stripping of inner lines);
- brackets: cut at a closer that nothing opened, and drop closers the suffix already supplies;
- never an empty or whitespace-only suggestion (None instead).

`suggestion` is the stage: it undoes token healing (`unheal`) and applies the rules. The same
rules also watch the stream while the model writes (`stream_cut`).
"""

from __future__ import annotations

from typing import Optional

from lsp_server.completion_window import Request, is_multiline_position

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
MAX_LINES = 32


def suggestion(text: str, request: Request, *, truncated: bool) -> Optional[str]:
    """The suggestion for the text generated for `request`: token healing undone, then the rules."""
    window = request.window
    return postprocess(
        unheal(text, window.line_prefix),
        prefix=window.prefix,
        suffix=window.suffix,
        line_prefix=window.line_prefix,
        line_suffix=window.line_suffix,
        multiline=request.settings.multiline,
        truncated=truncated,
    )


def unheal(text: str, indent: str) -> str:
    """Model text relative to an indented blank cursor line.

    Models often answer `    |` with a newline and the indented statement on the next line;
    the suggestion then belongs on the cursor's own line.
    """
    if indent and not indent.strip() and text.startswith("\n" + indent):
        return text[1 + len(indent) :]
    return text


def postprocess(
    text: str, *, prefix: str, suffix: str, line_prefix: str, line_suffix: str, multiline: bool,
    truncated: bool = False,
) -> Optional[str]:
    """The suggestion to show for model output `text`, or None when nothing useful is left.

    `truncated`: generation hit its token limit, so a multi-line text's last line is unfinished
    and is dropped, unless a rule above already ended the suggestion before the end of the text
    (a line cut at a closer nothing opened is complete however it would have gone on). That
    exception makes the result depend only on the text up to the cut, which is what lets
    `stream_cut` stop generating there.
    """
    text = text.replace("\r\n", "\n")
    if is_multiline_position(line_prefix, line_suffix, multiline):
        kept = _cut_lines(text, prefix, suffix, line_prefix)
        if truncated and kept.rstrip() == text.rstrip() and "\n" in text.strip("\n"):
            kept = _cut_lines(text.rstrip("\n").rsplit("\n", 1)[0], prefix, suffix, line_prefix)
        text = kept.rstrip()
    else:
        text = text.split("\n", 1)[0]
        text = _cut_at_line_suffix(text, line_suffix)
        text = _cut_unopened_closer(text, open_brackets(line_prefix))
        text = _drop_supplied_closers(text, line_prefix, line_suffix)
        text = text.rstrip() if not line_suffix else text
    if not text.strip():
        return None
    return text


def _cut_lines(text: str, prefix: str, suffix: str, line_prefix: str) -> str:
    """The multi-line rules in order; the result is always a prefix of `text`."""
    text = _trim_block(text, line_prefix)
    text = _cut_suffix_repeat(text, suffix)
    return _cut_unopened_closer(text, open_brackets(prefix))


def indent_width(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _trim_block(text: str, line_prefix: str) -> str:
    """Keep lines while they stay inside the block that the first line opens or continues."""
    lines = text.split("\n")[:MAX_LINES]
    # on an indented blank line the block is at least as deep as the cursor
    floor = len(line_prefix) if not line_prefix.strip() else 0
    block_indent: Optional[int] = None
    kept: list[str] = []
    for i, line in enumerate(lines):
        # the first line continues the cursor's line: it sets the block's indentation only
        # when that line was blank so far (otherwise the block starts on the next line)
        full = line_prefix + line if i == 0 else line
        if not full.strip() or (i == 0 and line_prefix.strip()):
            kept.append(line)
            continue
        if block_indent is None:
            if indent_width(full) < floor:
                break
            block_indent = indent_width(full)
        elif indent_width(full) < block_indent:
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def _cut_suffix_repeat(text: str, suffix: str) -> str:
    """Cut before the first line that repeats the first non-blank line after the cursor."""
    following = first_suffix_line(suffix)
    if not following:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if i > 0 and line.strip() == following:
            return "\n".join(lines[:i])
    return text


def first_suffix_line(suffix: str) -> str:
    """The first non-blank line of the next few after the cursor, stripped ("" when none)."""
    return next((line.strip() for line in suffix.split("\n")[:8] if line.strip()), "")


def _cut_at_line_suffix(text: str, line_suffix: str) -> str:
    """Mid-line: cut where the text reaches what already follows the cursor on its line.

    `print(area(3, |))` completed as `5))  # 15` becomes `5`; an occurrence inside brackets the
    text opened itself (`foo()` before `)`) is not the suffix and is kept.
    """
    rest = line_suffix.strip()
    start = text.find(rest) if rest else -1
    while start >= 0:
        if text[:start].strip() and not open_brackets(text[:start]):
            return text[:start]
        start = text.find(rest, start + 1)
    return text


def open_brackets(text: str) -> list[str]:
    """Brackets opened and not closed in `text` (strings and comments are not understood)."""
    stack: list[str] = []
    for ch in text[-20000:]:
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS and stack and stack[-1] == CLOSERS[ch]:
            stack.pop()
    return stack


def _cut_unopened_closer(text: str, open_before: list[str]) -> str:
    """Cut at the first closer that matches nothing opened before it."""
    stack = list(open_before)
    for i, ch in enumerate(text):
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if not stack or stack[-1] != CLOSERS[ch]:
                return text[:i]
            stack.pop()
    return text


def _drop_supplied_closers(text: str, line_prefix: str, line_suffix: str) -> str:
    """Mid-line: drop text and closers that the rest of the line already supplies.

    `print(|)` completed as `x)` becomes `x`; completed as `foo()` it stays `foo()`.
    """
    rest = line_suffix.strip()
    if rest and text.rstrip().endswith(rest):
        trimmed = text.rstrip()[: -len(rest)]
        if trimmed.strip() and _unbalance(line_prefix + trimmed + line_suffix) <= _unbalance(
            line_prefix + text + line_suffix
        ):
            text = trimmed
    while text[-1:] in CLOSERS and text[:-1].strip() and _unmatched(line_prefix + text + line_suffix):
        text = text[:-1]
    return text


def _unmatched(line: str) -> int:
    """Closers in `line` that match no opener."""
    stack: list[str] = []
    unmatched = 0
    for ch in line:
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if stack and stack[-1] == CLOSERS[ch]:
                stack.pop()
            else:
                unmatched += 1
    return unmatched


def _unbalance(line: str) -> int:
    """Unmatched closers plus unclosed openers."""
    return _unmatched(line) + len(open_brackets(line))
