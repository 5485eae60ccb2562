"""WorkProgress in a log (stderr not a terminal): plain `what: N/total` lines at most every `every` seconds
and at the end, a start and a closing line for work without a total, nothing when disabled, and no line
wrapped at rich's 80 columns."""

from __future__ import annotations

import pytest

from textcls.progress import WorkProgress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_line_at_most_every_period_and_one_at_the_end(capsys):
    clock = Clock()
    with WorkProgress("tokenizing train.tsv", 100, every=10.0, unit="rows", clock=clock) as progress:
        assert progress.progress is None  # not a terminal: plain lines, no bar
        for _ in range(10):  # 10 rows every 3 s: lines at 12 s (40 rows), 24 s (80) and the end
            clock.now += 3.0
            progress.advance(10)
    assert lines(capsys) == ["tokenizing train.tsv: 40/100 rows", "tokenizing train.tsv: 80/100 rows",
                             "tokenizing train.tsv: 100/100 rows"]


def test_work_that_ends_short_of_its_total_says_its_last_count_once(capsys):
    clock = Clock()
    with WorkProgress("predict in.txt", 1000, every=10.0, unit="lines", clock=clock) as progress:
        progress.update(300)
        progress.update(200)  # a count never goes back
        progress.update(5000)  # nor past the total
        assert progress.done == 1000
    assert lines(capsys) == ["predict in.txt: 1,000/1,000 lines"]
    with WorkProgress("predict in.txt", 1000, clock=clock) as progress:
        progress.update(300)
    assert lines(capsys) == ["predict in.txt: 300/1,000"]


def test_work_without_a_total_has_a_start_and_a_closing_line_with_its_seconds(capsys):
    clock = Clock()
    with WorkProgress("training a wordpiece tokenizer", None, clock=clock) as progress:
        assert lines(capsys) == ["training a wordpiece tokenizer ..."]
        clock.now += 2.5
        progress.finish("7,990 tokens from 3,300 rows")
    assert lines(capsys) == ["training a wordpiece tokenizer: 7,990 tokens from 3,300 rows in 2.5s"]
    with WorkProgress("predict stdin", None, every=10.0, unit="rows", clock=clock) as progress:
        for _ in range(3):  # counted rows: a line every 10 s, and the count in the closing line
            clock.now += 6.0
            progress.advance(4096)
    assert lines(capsys) == ["predict stdin ...", "predict stdin: 8,192 rows", "predict stdin: 12,288 rows in 18.0s"]


def test_failed_disabled_and_empty_work_print_nothing_more(capsys):
    with pytest.raises(ValueError), WorkProgress("training", None):
        raise ValueError("boom")
    assert lines(capsys) == ["training ..."]  # no closing line for work that failed
    with WorkProgress("explain", 3, enabled=False) as progress:
        progress.advance(3)
    with WorkProgress("training", None, enabled=False) as progress:
        progress.finish("done")
    with WorkProgress("tokenizing", 0) as progress:
        pass
    assert capsys.readouterr().err == ""


def test_long_lines_are_not_wrapped_nor_read_as_markup(capsys):
    what = "tokenizing /data/" + "a-long-folder-name/" * 8 + "[bold]train[/bold].tsv"
    with WorkProgress(what, 2, every=0.0, unit="rows") as progress:
        progress.advance(2)
    assert lines(capsys) == [f"{what}: 2/2 rows"]
