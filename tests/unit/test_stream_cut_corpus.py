"""The streamed cut equals the post-hoc cut at hundreds of cursor positions in real Python files.

The files are the Python standard library's own modules (there on every machine) and Quill's
server sources. At each position a span after the cursor is taken out of the document, as if the
user were about to write it, and the "completion" is the file's real text from the cursor on: it
re-creates the span and runs on into what follows, the way a model does. It is fed to
`StreamCut` in pieces (here small character chunks; SmolLM2's real tokens in
tests/runtime/test_stream_cut_smollm2.py); where the cut says stop, the text so far must
post-process to the same suggestion as the whole text, with and without the token limit having
been hit.
"""

from __future__ import annotations

import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from lsp_server.completion_window import BLOCK_OPENERS
from lsp_server.postprocess import postprocess, unheal
from lsp_server.stream_cut import StreamCut

STDLIB_FILES = (
    "textwrap.py", "argparse.py", "dataclasses.py", "shutil.py", "functools.py", "json/decoder.py",
    "configparser.py", "inspect.py", "email/message.py", "http/client.py", "csv.py", "pathlib.py",
)
PROJECT_FILES = ("lsp_server/postprocess.py", "lsp_server/scheduler.py", "lsp_server/history.py")
REPO = Path(__file__).resolve().parents[2]
PER_KIND = 3  # positions of each kind per file


@dataclass
class Position:
    kind: str
    prefix: str  # the document before the cursor
    suffix: str  # the document after the cursor (the span taken out is not in it)
    completion: str  # the file's real text from the cursor on
    multiline: bool = True

    @property
    def line_prefix(self) -> str:
        return self.prefix.rsplit("\n", 1)[-1]

    @property
    def line_suffix(self) -> str:
        return self.suffix.split("\n", 1)[0]

    def cut(self) -> StreamCut:
        return StreamCut(prefix=self.prefix, suffix=self.suffix, line_prefix=self.line_prefix,
                         line_suffix=self.line_suffix, multiline=self.multiline)

    def suggestion(self, text: str, truncated: bool):
        return postprocess(unheal(text, self.line_prefix), prefix=self.prefix, suffix=self.suffix,
                           line_prefix=self.line_prefix, line_suffix=self.line_suffix,
                           multiline=self.multiline, truncated=truncated)


def source_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = [stdlib / name for name in STDLIB_FILES] + [REPO / name for name in PROJECT_FILES]
    return [p for p in paths if p.is_file()]


def positions_in(text: str, rng: random.Random) -> list[Position]:
    """Cursor positions of each kind in one file's `text`."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def end_of(i: int) -> int:
        return starts[i] + len(lines[i])

    def make(kind: str, p: int, q: int, completion_start: int = None, multiline: bool = True) -> Position:
        start = p if completion_start is None else completion_start
        completion = text[start : start + rng.randint(40, 400)]
        if kind == "healed":  # the model answers an indented blank line with "\n" + the line
            completion = "\n" + completion
        return Position(kind, text[:p], text[q:], completion, multiline)

    def lines_where(test) -> list[int]:
        found = [i for i, line in enumerate(lines[:-8]) if test(line)]
        return rng.sample(found, min(PER_KIND, len(found)))

    out: list[Position] = []
    for i in lines_where(lambda line: line.rstrip().endswith(BLOCK_OPENERS)):
        q = end_of(min(len(lines) - 1, i + rng.randint(1, 6)))
        out.append(make("opener", end_of(i), q))
        out.append(make("opener-single", end_of(i), q, multiline=False))
    for i in lines_where(lambda line: line.strip() and line.startswith((" ", "\t"))):
        indent = len(lines[i]) - len(lines[i].lstrip(" \t"))
        q = end_of(min(len(lines) - 1, i + rng.randint(0, 4)))
        out.append(make("body", starts[i] + indent, q))
        out.append(make("healed", starts[i] + indent, q, completion_start=starts[i]))
        out.append(make("healed", starts[i] + indent, q, completion_start=starts[i], multiline=False))
    for i in lines_where(lambda line: not line.strip()):
        out.append(make("blank", starts[i], end_of(min(len(lines) - 1, i + rng.randint(1, 5)))))
    for i in lines_where(lambda line: len(line.strip()) > 8):
        indent = len(lines[i]) - len(lines[i].lstrip())
        column = rng.randint(indent + 1, len(lines[i]) - 1)
        q = rng.randint(starts[i] + column, end_of(i))
        out.append(make("mid", starts[i] + column, q))
    return out


def corpus() -> list[Position]:
    out: list[Position] = []
    for path in source_files():
        out += positions_in(path.read_text(encoding="utf-8"), random.Random(path.name))
    return out


def char_pieces(text: str) -> list[str]:
    sizes = (1, 2, 3, 5, 1, 4)
    pieces, i, n = [], 0, 0
    while i < len(text):
        pieces.append(text[i : i + sizes[n % len(sizes)]])
        i, n = i + len(pieces[-1]), n + 1
    return pieces


def token_pieces(tokenizer, text: str) -> list[str]:
    """`text` as the engine streams it: one incremental-decoder output per token (some empty)."""
    decoder = tokenizer.incremental_decoder()
    pieces = [decoder.push(i) for i in tokenizer.encode(text, dummy_prefix=False)]
    pieces.append(decoder.flush())
    assert "".join(pieces) == text
    return [piece for piece in pieces if piece]


def streamed(position: Position, pieces: list[str], truncated: bool) -> tuple[str, bool, bool]:
    """What `completion.run` would post-process: (text, truncated, stopped early).

    The engine checks the token limit before `should_stop`, so a cut that completes on the last
    piece still reports the limit."""
    cut, text = position.cut(), ""
    for n, piece in enumerate(pieces):
        text += piece
        if cut.push(piece) and n + 1 < len(pieces):
            return text, False, True
    return text, truncated, False


@pytest.fixture(scope="module")
def positions():
    found = corpus()
    assert len(found) >= 200, f"only {len(found)} positions found in {len(source_files())} files"
    return found


def budget_ends(completion: str, stop: int) -> list[int]:
    """Ends of the text where a token limit is most likely to change the result: at the stop
    point, at the end of its line and just into the next line (the truncated last line)."""
    line_end = completion.find("\n", stop)
    if line_end < 0:
        return [stop]
    return sorted({stop, line_end, line_end + 1, min(len(completion), line_end + 3)})


def check_corpus(positions: list[Position], split) -> dict:
    """Compare stream and post-hoc cut everywhere; return counts for the sanity assertions."""
    mismatches, stopped, read, total, runs = [], 0, 0, 0, 0

    def compare(position: Position, completion: str, truncated: bool) -> str:
        nonlocal runs
        runs += 1
        text, text_truncated, _ = streamed(position, split(completion), truncated)
        full = position.suggestion(completion, truncated)
        if position.suggestion(text, text_truncated) != full:
            mismatches.append((position.kind, position.prefix[-60:], completion, text, full))
        return text

    for position in positions:
        text, _, early = streamed(position, split(position.completion), False)
        stopped += early
        read += len(text)
        total += len(position.completion)
        for truncated in (True, False):
            compare(position, position.completion, truncated)
            if early:
                for end in budget_ends(position.completion, len(text)):
                    compare(position, position.completion[:end], truncated)
    assert mismatches == [], f"{len(mismatches)} of {runs} differ, first: {mismatches[:3]}"
    return {"stopped": stopped / len(positions), "read": read / total, "runs": runs}


def test_streamed_cut_equals_post_hoc_cut_in_character_chunks(positions):
    counts = check_corpus(positions, char_pieces)
    print(f"{len(positions)} positions ({counts['runs']} texts), stopped early {counts['stopped']:.0%}, "
          f"read {counts['read']:.0%} of the text")
    # the equality would hold trivially for a cut that never stops: it must stop most of the time
    assert counts["stopped"] > 0.7 and counts["read"] < 0.5


def test_every_kind_of_position_is_in_the_corpus(positions):
    kinds = {p.kind for p in positions}
    assert kinds == {"opener", "opener-single", "body", "healed", "blank", "mid"}
