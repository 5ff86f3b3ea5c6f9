"""The CLI's progress bars: redrawn in place on a terminal, one line per phase otherwise."""

from __future__ import annotations

import io

from quill_cli.progress_bars import ProgressBars
from runtime.progress import format_bytes, report


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_redraw_in_place_on_a_terminal():
    out = Terminal()
    bars = ProgressBars(out, width=10, min_interval=0.0)
    for done in (0, 50_000_000, 100_000_000):
        bars("download", done, 100_000_000)
    for done in range(4):
        bars("convert", done, 3)
    text = out.getvalue()
    print(repr(text))
    download, convert, rest = text.split("\n")
    assert download.split("\r")[1:] == [
        "download [----------]   0.0% 0 B/100.0 MB",
        "download [#####-----]  50.0% 50.0 MB/100.0 MB",
        "download [##########] 100.0% 100.0 MB/100.0 MB",
    ]
    assert convert.endswith("\r convert [##########] 100.0% 3/3") and convert.count("\r") == 4
    assert rest == ""


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    bars = ProgressBars(out)
    for done in range(3):
        bars("load", done, 2)
    bars.close()
    assert out.getvalue() == "load: started\nload: done (2/2)\n"


def test_a_failing_callback_never_breaks_the_work():
    def broken(phase, done, total):
        raise RuntimeError("UI went away")

    report(broken, "convert", 1, 2)  # must not raise
    report(None, "convert", 1, 2)
    assert format_bytes(1_500_000_000) == "1.5 GB" and format_bytes(999) == "999 B"
