"""Training logs: `metrics.jsonl` (one JSON record per line) and, optionally, TensorBoard.

Records carry `kind`: `train` (every `log_every` steps: mean loss over the step's micro-batches,
lr), `step` / `epoch` (an evaluation on the validation set). On resume, records past the
checkpoint's step are dropped so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textcls.errors import ConfigError
from textcls.io import atomic_write_text
from textcls.run.layout import METRICS


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl file (a torn last line, from a kill, is ignored)."""
    records = []
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


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
