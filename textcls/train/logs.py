"""Training logs: `metrics.jsonl` (one JSON record per line) and, optionally, TensorBoard.

Records carry `kind`: `train` (every `log_every` steps: mean loss over the step's micro-batches,
lr), `step` / `epoch` (an evaluation on the validation set). On resume, records past the
checkpoint's step are dropped so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textcls.errors import CheckpointError, ConfigError
from textcls.io import atomic_write_text, read_regular_text
from textcls.run.layout import METRICS

MAX_METRICS_BYTES = 1 << 30  # a log of a long run with frequent logging stays far below this


# Keys whose values are plotted and compared: numbers (or null) wherever a record has them.
NUMERIC_KEYS = ("loss", "train_loss", "lr", "mlm_loss", "mlm_accuracy", "accuracy", "macro_f1", "weighted_f1",
                "micro_f1")


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl file (a torn line, from a kill, is ignored); a line that parses but is
    not a record (a list, a string step) is a CheckpointError naming the line and key."""
    records = []
    if not path.exists() and not path.is_symlink():
        return records
    for number, line in enumerate(read_regular_text(path, CheckpointError, MAX_METRICS_BYTES).splitlines(), 1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        problem = _record_problem(record)
        if problem:
            raise CheckpointError(f"{path}, line {number}: {problem}; the log is damaged: delete that line (or the "
                                  "file, which only `textcls plot` reads)")
        records.append(record)
    return records


def _record_problem(record) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    step = record.get("step")
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        return f"key `step` must be a whole number >= 0, not {str(step)[:40]!r}"
    if not isinstance(record.get("kind", ""), str):
        return "key `kind` must be a string"
    for key in NUMERIC_KEYS:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"key `{key}` must be a number, not {str(value)[:40]!r}"
    return None


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "`output.tensorboard: true` needs the `tensorboard` package, which is not installed; "
            "install it (pip install 'textcls[tensorboard]') or set output.tensorboard: false"
        ) from None
    return SummaryWriter


class MetricsLog:
    """Appends records to `run_dir/metrics.jsonl` and mirrors numbers to TensorBoard when enabled."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, enabled: bool = True):
        self.path = run_dir / METRICS
        self.enabled = enabled  # False on the ranks other than 0 of a torchrun run: they write nothing
        self.writer_class = _summary_writer_class() if tensorboard else None  # fails before any work
        self.writer = None  # created at the first record: the run directory is set up by then

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (logged after the checkpoint a resumed run starts from)."""
        if self.enabled and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer_class is not None:
            if self.writer is None:
                self.writer = self.writer_class(log_dir=str(self.path.parent / "tensorboard"))
            group = "train" if record.get("kind") == "train" else "valid"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{group}/{key}", value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
