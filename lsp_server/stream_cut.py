"""Post-processing on the stream: say as soon as a suggestion is complete, so generation can stop.

`StreamCut` receives the model's text as it streams (the `on_text` deltas) and turns `done` once
`postprocess` could no longer give another result, whatever the model would have written next.
The suggestion itself is still made by `postprocess` from the text generated so far; this module
only decides when the text after the stop point is certain to be thrown away:

- single-line: the line ended (a newline), the text reached what follows the cursor on its line,
  or a closer that nothing opened, with no earlier match of the line's rest still in progress;
- multi-line: a line with text indented less than the block (its indentation is known from its
  first visible character), a complete line that repeats the first line after the cursor, a
  closer that nothing opened on a line that can no longer turn into that repeat, or
  `postprocess.MAX_LINES` lines and the start of the next one.

Every rule here is one of postprocess's cuts, seen on the part of the text that the cut reads.
A stopped generation is not truncated (its last line is finished by the cut); `postprocess`
does not drop the last line of a truncated text that a cut already ended, so both agree. Token
healing (`completion_prompt.unheal`) is applied first, once enough text has come to know
whether it applies.
"""

from __future__ import annotations

from lsp_server.completion_prompt import unheal
from lsp_server.postprocess import (
    CLOSERS,
    MAX_LINES,
    OPENERS,
    cut_at_line_suffix,
    first_suffix_line,
    indent_width,
    is_multiline_position,
    open_brackets,
)


class StreamCut:
    """Feed it with `push(delta)`; `done` (also its call, usable as `should_stop`) says stop."""

    def __init__(self, *, prefix: str, suffix: str, line_prefix: str, line_suffix: str, multiline: bool):
        self.line_prefix = line_prefix
        self.line_suffix = line_suffix
        self.multi = is_multiline_position(line_prefix, line_suffix, multiline)
        # brackets the document left open before the text: multi-line counts the whole prefix,
        # single-line only the cursor's line (as postprocess does)
        self.open_before = open_brackets(prefix if self.multi else line_prefix)
        self.following = first_suffix_line(suffix)
        self.text = ""
        self.done = False

    def __call__(self) -> bool:
        return self.done

    def push(self, delta: str) -> bool:
        """Add streamed text; True once the suggestion is complete."""
        if not self.done and delta:
            self.text += delta
            settled = self._settled()
            if settled is not None:
                self.done = self._multi_done(settled) if self.multi else self._single_done(settled)
        return self.done

    def _settled(self):
        """The text as postprocess will read it; None while it is unknown whether token healing
        applies. (A "\r" at the end that a "\n" turns into a line end decides nothing: it is
        whitespace and no bracket.)"""
        healed_start = "\n" + self.line_prefix
        if self.line_prefix and not self.line_prefix.strip() and healed_start.startswith(self.text):
            if len(self.text) < len(healed_start):
                return None
        return unheal(self.text, self.line_prefix).replace("\r\n", "\n")

    # --- single-line -------------------------------------------------------------------------

    def _single_done(self, text: str) -> bool:
        if "\n" in text:
            return True
        if cut_at_line_suffix(text, self.line_suffix) != text:
            return True
        closer = _first_unopened_closer(text, list(self.open_before))
        return closer is not None and not self._line_suffix_may_start_before(text, closer)

    def _line_suffix_may_start_before(self, text: str, end: int) -> bool:
        """Whether the rest of the cursor's line may still turn up, cut-worthy, before `end`: a
        match that has begun at the end of `text` (a complete one would have ended the line)."""
        rest = self.line_suffix.strip()
        if not rest:
            return False
        for start in range(max(0, len(text) - len(rest) + 1), end):
            before = text[:start]
            if rest.startswith(text[start:]) and before.strip() and not open_brackets(before):
                return True
        return False

    # --- multi-line --------------------------------------------------------------------------

    def _multi_done(self, text: str) -> bool:
        lines = text.split("\n")
        last = len(lines) - 1  # the line still being written
        # a blank cursor line: the block is at least as deep as the cursor (postprocess's floor)
        floor = len(self.line_prefix) if not self.line_prefix.strip() else 0
        block_indent = None
        stack = list(self.open_before)
        for i, line in enumerate(lines[:MAX_LINES]):
            full = self.line_prefix + line if i == 0 else line
            if not full.strip():
                continue  # blank so far: no indentation, no brackets
            if not (i == 0 and self.line_prefix.strip()):
                if indent_width(full) < (floor if block_indent is None else block_indent):
                    return True  # leaves the block: nothing from here on is kept
                if block_indent is None:
                    block_indent = indent_width(full)
            if i > 0 and self.following:
                if i < last and line.strip() == self.following:
                    return True  # repeats the suffix: cut before this line
                if i == last and _may_become(line, self.following):
                    return False  # a closer here may still be cut away with the whole line
            if _first_unopened_closer(line, stack) is not None:
                return True
        # past MAX_LINES lines nothing is kept; the next line's first character shows that the
        # last kept one is not the last line of the text (the one a truncated text drops)
        return len(lines) > MAX_LINES and any(lines[MAX_LINES:])


def _first_unopened_closer(text: str, stack: list[str]):
    """Index of the first closer in `text` that matches nothing open; `stack` is updated."""
    for i, ch in enumerate(text):
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if not stack or stack[-1] != CLOSERS[ch]:
                return i
            stack.pop()
    return None


def _may_become(line: str, target: str) -> bool:
    """Whether `line`, still being written, can end as a line whose strip() is `target`."""
    started = line.lstrip()
    return target.startswith(started) or started.rstrip() == target
