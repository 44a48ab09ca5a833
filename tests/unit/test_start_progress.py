"""The CLI's start progress line (issue 13, item 1): says once that the server is loading,
and on a terminal keeps the last known share of the AOF replayed."""

from __future__ import annotations

import pytest

from rediscache.cli.base import StartProgressLine
from rediscache.server import StartProgress


def test_the_line_says_loading_once_and_keeps_the_last_percent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = StartProgressLine()
    line.tty = True
    line(StartProgress(7, "starting", 0.1))
    assert capsys.readouterr().err == ""  # nothing before it turns out to be loading
    line(StartProgress(7, "loading", 1.0, 19.6, 6_700_000, 34_400_000, 12.0))
    line(StartProgress(7, "loading", 6.0))  # a probe the busy load did not answer
    line.close()
    err = capsys.readouterr().err
    assert err.count("pid 7) is loading its data") == 1
    assert "19.6%" in err and "of 32.8 MB" in err and "(last answer)" in err
    assert "6 s" in err and err.endswith("\n")


def test_not_a_terminal_gets_one_line_only(capsys: pytest.CaptureFixture[str]) -> None:
    line = StartProgressLine()
    line.tty = False
    for t in (1.0, 2.0, 3.0):
        line(StartProgress(9, "loading", t, 50.0))
    line.close()
    assert capsys.readouterr().err.count("\n") == 1
