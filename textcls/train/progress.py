"""Training progress: a rich bar (loss, lr, tokens/s, examples/s, ETA) on a terminal, plain log lines otherwise.

The console and WorkProgress (the progress of other work) live in textcls/progress.py, below every layer
that shows progress; they are re-exported here."""

from __future__ import annotations

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from textcls.progress import WorkProgress, console

__all__ = ["TrainProgress", "WorkProgress", "announcer", "console"]


def announcer(enabled: bool):
    """A function that prints a one-line message on the console, or None when `enabled` is False (the
    ranks other than 0 under torchrun print nothing)."""
    return (lambda message: console.print(message, highlight=False, soft_wrap=True)) if enabled else None


class TrainProgress:
    def __init__(self, total_steps: int, start_step: int, log_every: int, enabled: bool = True):
        self.total, self.log_every, self.enabled = total_steps, log_every, enabled
        self.interactive = enabled and console.is_terminal and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.shown = 0.0  # when the bar's loss was last read
        self.start_step = start_step
        self.examples = self.tokens = 0
        self.progress = None
        if self.interactive:
            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn(), console=console, transient=False)
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, info="")
            self.progress.start()

    def update(self, step: int, loss, lr: float, examples: int, tokens: int = 0) -> None:
        """`loss` may be a device tensor: it is read (a host sync) only when shown, at most 4 times a second
        on a terminal and every `log_every` steps otherwise. Examples and tokens (padding excluded) count
        all ranks; the loss is this rank's."""
        self.examples += examples
        self.tokens += tokens
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = max(now - self.t0, 1e-9)
        rates = f"{self.tokens / elapsed:,.0f} tok/s {self.examples / elapsed:,.0f} ex/s"
        if self.progress is not None:
            if now - self.shown >= 0.25 or step == self.total:
                self.shown = now
                info = f"loss {float(loss):.4f} lr {lr:.2e} {rates}"
                self.progress.update(self.task, completed=step, info=info)
        elif step % self.log_every == 0 or step == self.total:
            info = f"loss {float(loss):.4f} lr {lr:.2e} {rates}"
            done = step - self.start_step
            eta = (time.perf_counter() - self.t0) / max(done, 1) * (self.total - step)
            console.print(f"step {step}/{self.total} {info} eta {eta:,.0f}s", highlight=False)

    def message(self, text: str) -> None:
        if self.enabled:
            console.print(text, highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()

    @property
    def examples_per_second(self) -> float:
        return self.examples / max(time.perf_counter() - self.t0, 1e-9)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(time.perf_counter() - self.t0, 1e-9)
