"""Shared fixtures: tiny configs on small slices of real data, an isolated tokenized cache."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from textcls.config import Config, config_from_dict

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"  # small slices of real data that ship with the repository (see its README)
DEMO = ROOT / "data" / "ag_news_demo"

torch.set_num_threads(1)  # tests run two workers on two cores


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TEXTCLS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_model(**extra) -> dict:
    model = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "dropout": 0.0,
             "max_positions": 64}
    model.update(extra)
    return model


def write_tsv(path: Path, rows: list[tuple], header: tuple = ("sentence", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def sst2_slice(n: int, split: str = "train", offset: int = 0) -> list[tuple[str, str]]:
    """The first n (after offset) rows of the SST-2 slice in tests/data (3,300 train and 300 dev rows)."""
    path = DATA / "sst2" / f"{split}.tsv"
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()[1 + offset:1 + offset + n]
    return [tuple(line.rsplit("\t", 1)) for line in lines]


@pytest.fixture
def sst2_files(tmp_path) -> tuple[Path, Path]:
    """(train, valid) TSV files: 400 + 100 real SST-2 rows."""
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(400))
    valid = write_tsv(tmp_path / "valid.tsv", sst2_slice(100, "dev"))
    return train, valid


def tiny_config(train_file: Path, valid_file: Path | None, out: Path, **sections) -> Config:
    raw = {
        "data": {"train": str(train_file), "valid": str(valid_file) if valid_file else None,
                 "text_columns": ["sentence"], "label_column": "label", "max_length": 48},
        "tokenizer": {"vocab_size": 300, "min_frequency": 1},
        "model": tiny_model(),
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "seed": 0, "log_every": 1000},
        "output": {"dir": str(out)},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw)


def tiny_finished_run(root: Path) -> Path:
    """A tiny finished run (3 steps on 120 SST-2 rows, 40 validation rows, its cache in `root`): root / "run"."""
    from textcls.train.loop import train

    tr = write_tsv(root / "train.tsv", sst2_slice(120))
    va = write_tsv(root / "valid.tsv", sst2_slice(40, "dev"))
    cfg = tiny_config(tr, va, root / "run", data={"cache_dir": str(root / "cache")})
    cfg.train.max_steps = 3
    train(cfg, quiet=True)
    return root / "run"


def interrupt_at(monkeypatch, step: int) -> None:
    """Send this process a real SIGTERM when the training loop reports `step` (mid-epoch)."""
    import os
    import signal

    from textcls.train.progress import TrainProgress

    original = TrainProgress.update

    def update(self, s, *args, **kwargs):
        original(self, s, *args, **kwargs)
        if s == step:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(TrainProgress, "update", update)


def metrics_records(run_dir: Path) -> list[dict]:
    """The lines of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def python_path(*extra: Path) -> str:
    """PYTHONPATH for a child process: this checkout (then `extra`) ahead of whatever this process was given,
    so children also find packages installed with `pip --target` on PYTHONPATH."""
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return os.pathsep.join([str(ROOT), *map(str, extra), *inherited])


def child_env(**extra: str) -> dict:
    """This process's environment for a `python -m textcls` child, with `extra` variables set."""
    return {**os.environ, "PYTHONPATH": python_path(), **extra}


def run_cli(*args: str, input: str | None = None, cwd: Path | None = None, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m textcls ARGS` in a subprocess using this checkout's package."""
    full_env = child_env(**(env or {}))
    return subprocess.run([sys.executable, "-m", "textcls", *args], input=input, capture_output=True, text=True,
                          cwd=cwd or ROOT, env=full_env, timeout=timeout)
