"""Progress of work other than training (tokenizing, fitting, evaluating, predicting, explaining) and the
stderr console every progress line goes to: a rich bar on a terminal, plain lines in a log.

In a log (stderr not a terminal) a line is never wrapped at rich's 80 columns, however long the file
name in it. This module sits in the lowest layer so that the data, model and command layers all show
progress the same way; train/progress.py adds the training bar on the same console.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())  # in logs, lines are not wrapped at 80 columns


class WorkProgress:
    """Progress of a job other than training (tokenizing, explaining, predicting, ...): a rich bar on a
    terminal; in a log, a plain `what: N/total` line at most every `every` seconds and one at the end.

    `total=None`: work whose size is not known (training a tokenizer, reading a pipe): a start line
    `what ...`, a `what: N unit` line at most every `every` seconds while items are counted, and a closing
    line with the seconds it took (`finish(summary)` says what it came to). Nothing at all when `enabled`
    is False or `total` is 0; nothing closing when the work fails. `clock` is for tests."""

    def __init__(self, what: str, total: Optional[int], enabled: bool = True, every: float = 10.0, unit: str = "",
                 clock: Callable[[], float] = time.perf_counter):
        self.what, self.total, self.every, self.unit, self.clock = what, total, every, unit, clock
        self.done, self.summary, self.last_line, self.closed = 0, "", None, False
        self.enabled = enabled and total != 0
        self.started = self.shown = clock()
        self.progress = None
        if not self.enabled:
            return
        if console.is_terminal and sys.stderr.isatty():
            if total:
                count = (MofNCompleteColumn(),)
            else:  # a pulsing bar, with the items counted so far when they are counted
                count = (TextColumn(f"{{task.completed:,.0f}} {escape(unit)}"),) if unit else ()
            eta = (TextColumn("ETA"), TimeRemainingColumn()) if total else ()
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), *count, TimeElapsedColumn(),
                                     *eta, console=console, transient=True, redirect_stdout=False)
            self.task = self.progress.add_task(escape(what), total=total)  # markup in a file name stays text
            self.progress.start()
        elif total is None:
            self._line(f"{what} ...")

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done)
        elif self.clock() - self.shown >= self.every or self.done == self.total:
            self._line(self._count())

    def update(self, done: int) -> None:
        """Set the count (e.g. a line number) instead of adding to it; it never goes back or past `total`."""
        done = min(done, self.total) if self.total else done
        if done > self.done:
            self.advance(done - self.done)

    def finish(self, summary: str) -> None:
        """What the work came to, for the closing line of work without a total (`what: SUMMARY in 1.2s`)."""
        self.summary = summary

    def close(self, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.progress is not None:
            self.progress.stop()
        if not self.enabled or failed:
            return
        if self.total is None:
            counted = f"{self.done:,} {self.unit}".rstrip() if self.done else "done"
            self._line(f"{self.what}: {self.summary or counted} in {self.clock() - self.started:.1f}s")
        elif self.progress is None and self.last_line != self._count() and self.done:
            self._line(self._count())  # the end: the last count, when no line has said it yet

    def _count(self) -> str:
        of = f"/{self.total:,}" if self.total else ""
        return f"{self.what}: {self.done:,}{of} {self.unit}".rstrip()

    def _line(self, text: str) -> None:
        self.shown, self.last_line = self.clock(), text
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    def __enter__(self) -> "WorkProgress":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(failed=exc_type is not None)
