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
healing (`postprocess.unheal`) is applied first, once enough text has come to know
whether it applies.
"""

from __future__ import annotations

from lsp_server.completion_window import is_multiline_position
from lsp_server.postprocess import CLOSERS, MAX_LINES, OPENERS, first_suffix_line, indent_width, open_brackets, unheal


class StreamCut:
    """Feed it with `push(delta)`; `done` (also its call, usable as `should_stop`) says stop.

    Work per delta stays proportional to the line being written: complete lines are judged once
    and leave behind only the block's indentation and the brackets still open.
    """

    def __init__(self, *, prefix: str, suffix: str, line_prefix: str, line_suffix: str, multiline: bool):
        self.line_prefix = line_prefix
        self.line_suffix = line_suffix
        self.multi = is_multiline_position(line_prefix, line_suffix, multiline)
        self.following = first_suffix_line(suffix)
        self.text = ""  # everything pushed, before healing
        self.done = False
        self._skip = None  # characters that token healing drops from the start, once known
        self._seen = 0  # single-line: how far the text has been judged
        self._start = 0  # multi-line: where the line being written begins in `text`
        self._index = 0  # and its number
        self._block_indent = None
        # brackets open before the line being written: multi-line counts the whole prefix,
        # single-line only the cursor's line (as postprocess does)
        self._stack = open_brackets(prefix if self.multi else line_prefix)
        self._closer = None  # single-line: index of the first closer that nothing opened

    def __call__(self) -> bool:
        return self.done

    def push(self, delta: str) -> bool:
        """Add streamed text; True once the suggestion is complete."""
        if self.done or not delta:
            return self.done
        self.text += delta
        if self._skip is None:
            self._skip = self._healing()
            if self._skip is None:
                return False
            self._seen = self._start = self._skip
        self.done = self._multi_done() if self.multi else self._single_done()
        return self.done

    def _healing(self):
        """How many characters `unheal` removes from the start; None while that is unknown."""
        healed_start = "\n" + self.line_prefix
        if self.line_prefix and not self.line_prefix.strip():
            if healed_start.startswith(self.text) and len(self.text) < len(healed_start):
                return None
        return len(self.text) - len(unheal(self.text, self.line_prefix))

    # --- single-line -------------------------------------------------------------------------

    def _single_done(self) -> bool:
        text, skip, seen = self.text, self._skip, self._seen
        self._seen = len(text)
        if text.find("\n", seen) >= 0:
            return True
        rest = self.line_suffix.strip()
        # a match of the line's rest that lay in the text judged before was not cut-worthy
        start = text.find(rest, max(skip, seen - len(rest) + 1)) if rest else -1
        while start >= 0:
            before = text[skip:start]
            if before.strip() and not open_brackets(before):
                return True
            start = text.find(rest, start + 1)
        if self._closer is None:
            self._closer = _first_unopened_closer(text, self._stack, seen)
        return self._closer is not None and not self._line_suffix_may_start_before(self._closer)

    def _line_suffix_may_start_before(self, end: int) -> bool:
        """Whether the rest of the cursor's line may still turn up, cut-worthy, before `end`: a
        match that has begun at the end of the text (a complete one would have ended the line).
        A "\r" at the end decides nothing: the rest of a line holds no line end."""
        rest, text, skip = self.line_suffix.strip(), self.text, self._skip
        for start in range(max(skip, len(text) - len(rest) + 1), end):
            before = text[skip:start]
            if rest.startswith(text[start:]) and before.strip() and not open_brackets(before):
                return True
        return False

    # --- multi-line --------------------------------------------------------------------------

    def _multi_done(self) -> bool:
        text = self.text
        while self._index < MAX_LINES:
            end = text.find("\n", self._start)
            if end < 0:
                return self._line_done(text[self._start :], complete=False)
            line = text[self._start : end]
            # "\r\n" is a line end to postprocess too
            if self._line_done(line[:-1] if line.endswith("\r") else line, complete=True):
                return True
            self._start, self._index = end + 1, self._index + 1
        # past MAX_LINES lines nothing is kept; the next line's first character shows that the
        # last kept one is not the last line of the text (the one a truncated text drops)
        after = text[self._start :]
        after = after[:-1] if after.endswith("\r") else after
        return bool(after.replace("\r\n", "\n").strip("\n"))

    def _line_done(self, line: str, complete: bool) -> bool:
        """Whether line `self._index` ends the suggestion; a complete one that does not updates
        the block's indentation and the open brackets. A "\r" at the end of an unfinished line
        decides nothing (it is whitespace and no bracket)."""
        i = self._index
        full = self.line_prefix + line if i == 0 else line
        if not full.strip():
            return False  # blank so far: no indentation, no brackets
        if not (i == 0 and self.line_prefix.strip()):
            # a blank cursor line: the block is at least as deep as the cursor (postprocess's floor)
            floor = len(self.line_prefix) if not self.line_prefix.strip() else 0
            if indent_width(full) < (floor if self._block_indent is None else self._block_indent):
                return True  # leaves the block: nothing from here on is kept
            if complete and self._block_indent is None:
                self._block_indent = indent_width(full)
        if i > 0 and self.following:
            if complete and line.strip() == self.following:
                return True  # repeats the suffix: cut before this line
            if not complete and _may_become(line, self.following):
                return False  # a closer here may still be cut away with the whole line
        stack = self._stack if complete else list(self._stack)
        return _first_unopened_closer(line, stack) is not None


def _first_unopened_closer(text: str, stack: list[str], start: int = 0):
    """Index of the first closer in `text[start:]` that matches nothing open; `stack` is updated."""
    for i in range(start, len(text)):
        ch = text[i]
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
