"""run.json (version, the sha256 of every weights file, an adapter run's base), the evaluation report,
and the files every run writes first: config.yaml, tokenizer.json, labels.json.

`run.json` records the textcls version and the sha256 of every weights file, so a truncated or
corrupted file, or a directory written by an incompatible version, is refused with a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from textcls import __version__
from textcls.config import Config, config_from_dict, read_yaml, save_config
from textcls.data.labels import save_labels
from textcls.errors import CheckpointError
from textcls.io import atomic_write_json, atomic_write_text
from textcls.run.layout import CONFIG, EVAL_REPORT, LABELS, RUN_INFO, TOKENIZER

FORMAT_VERSION = 1  # bump when the run-directory layout or state-dict keys change incompatibly


def write_run_info(run_dir: Path, **extra) -> None:
    info = {"textcls_version": __version__, "format_version": FORMAT_VERSION, **extra}
    atomic_write_json(run_dir / RUN_INFO, info)


def expected_checksums(info: dict, weights: str) -> list[str]:
    """The recorded sha256 of a weights file, plus the one being swapped in when a kill interrupted
    the swap (see textcls.run.store.save_best)."""
    return [s for s in (info.get("sha256", {}).get(weights), info.get("pending_sha256", {}).get(weights)) if s]


def read_run_info(run_dir: Path) -> dict:
    path = run_dir / RUN_INFO
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); the run directory is damaged") from None
    if not isinstance(info, dict) or not isinstance(info.get("sha256", {}), dict):
        raise CheckpointError(f"{path} is not a textcls {RUN_INFO} (expected a JSON object); "
                              "the run directory is damaged")
    if info.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise CheckpointError(
            f"{run_dir} was written by textcls {info.get('textcls_version')} (run format "
            f"{info.get('format_version')}), which this textcls {__version__} (format {FORMAT_VERSION}) cannot "
            "read; use that version or train again"
        )
    return info


def save_eval_report(run_dir: Path, report: dict, **extra) -> None:
    """The validation metrics (per class, confusion matrix) of the saved best weights."""
    atomic_write_json(run_dir / EVAL_REPORT, {"split": "valid", **extra, **report})


def save_run_files(run_dir: Path, cfg: Config, tokenizer: Tokenizer, labels: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG)
    atomic_write_text(run_dir / TOKENIZER, tokenizer.to_str())
    save_labels(labels, run_dir / LABELS)


def load_run_config(run_dir: Path) -> Config:
    path = run_dir / CONFIG
    if not run_dir.exists():
        raise CheckpointError(f"run directory {run_dir} does not exist; pass the --output of a `textcls train` run")
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no {CONFIG}; is it a textcls run directory?")
    return config_from_dict(read_yaml(path), source=str(path))

