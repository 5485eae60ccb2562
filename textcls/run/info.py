"""run.json (version, the sha256 of every weights file, an adapter run's base), the evaluation report,
and the files every run writes first: config.yaml, tokenizer.json, labels.json.

`run.json` records the textcls version and the sha256 of every weights file, so a truncated or
corrupted file, or a directory written by an incompatible version, is refused with a clear error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from textcls import __version__
from textcls.config import Config, config_from_dict, read_yaml, save_config
from textcls.data.labels import save_labels
from textcls.errors import CheckpointError
from textcls.io import (
    MAX_RUN_FILE_BYTES,
    atomic_write_json,
    atomic_write_text,
    check_regular_file,
    read_regular_text,
    sha256_file,
)
from textcls.run.layout import CONFIG, EVAL_REPORT, LABELS, LAST, RUN_INFO, STATE, TOKENIZER

# Files besides the weights whose sha256 run.json records (runs written before this have none; they load
# unchecked): a swapped labels.json would flip every prediction without a word.
LABELS_KEY, TOKENIZER_KEY, STATE_KEY = LABELS, TOKENIZER, f"{LAST}/{STATE}"
SIDE_FILES = (LABELS_KEY, TOKENIZER_KEY, STATE_KEY)

FORMAT_VERSION = 1  # bump when the run-directory layout or state-dict keys change incompatibly


def write_run_info(run_dir: Path, **extra) -> None:
    """Write run.json; the checksums of the side files (SIDE_FILES) already recorded there are kept unless
    `extra`'s `sha256`/`pending_sha256` name them."""
    kept, kept_pending = _side_checksums(run_dir)
    given = extra.pop("sha256", {})
    sha = {**kept, **given}
    # a side file's pending checksum stays until its own swap settles it (a kill may have left it)
    pending = {**{k: v for k, v in kept_pending.items() if k not in given}, **extra.pop("pending_sha256", {})}
    info = {"textcls_version": __version__, "format_version": FORMAT_VERSION, "sha256": sha, **extra}
    if pending:
        info["pending_sha256"] = pending
    atomic_write_json(run_dir / RUN_INFO, info)


def _side_checksums(run_dir: Path) -> tuple[dict, dict]:
    try:
        info = read_run_info(run_dir)
    except CheckpointError:  # a damaged run.json is being replaced
        return {}, {}
    pick = lambda d: {k: v for k, v in d.items() if k in SIDE_FILES}  # noqa: E731
    return pick(info.get("sha256", {})), pick(info.get("pending_sha256", {}))


def record_checksum(run_dir: Path, name: str, digest: str | None, pending: bool = False,
                    create: bool = False) -> None:
    """Record the sha256 of the side file `name` (a SIDE_FILES entry) in run.json (written only if it exists,
    or with `create`); `pending`: the file is about to be swapped in, so both the recorded checksum and
    `digest` are accepted until a second call records `digest` alone (a kill between leaves a pair that loads)."""
    if not (run_dir / RUN_INFO).exists() and (pending or not create):
        return
    info = read_run_info(run_dir) if (run_dir / RUN_INFO).exists() else {}
    sha, waiting = dict(info.get("sha256", {})), dict(info.get("pending_sha256", {}))
    if pending:
        waiting[name] = digest
    else:
        waiting.pop(name, None)
        if digest is None:
            sha.pop(name, None)
        else:
            sha[name] = digest
    rest = {k: v for k, v in info.items() if k not in ("textcls_version", "format_version", "sha256",
                                                       "pending_sha256")}
    info = {"textcls_version": __version__, "format_version": FORMAT_VERSION, "sha256": sha, **rest}
    if waiting:
        info["pending_sha256"] = waiting
    atomic_write_json(run_dir / RUN_INFO, info)


def check_checksum(run_dir: Path, name: str, info: dict | None = None) -> None:
    """Refuse the side file `name` of `run_dir` when run.json records a sha256 it does not match (runs
    written before these checksums existed record none and pass)."""
    info = read_run_info(run_dir) if info is None else info
    accepted = expected_checksums(info, name)
    if accepted:
        check_regular_file(run_dir / name, CheckpointError)  # hashing a FIFO would block
    if accepted and sha256_file(run_dir / name) not in accepted:
        raise CheckpointError(
            f"{run_dir / name} does not match the sha256 recorded for it in {run_dir / RUN_INFO}: it was changed or "
            f"replaced after training. Restore the run's own {name} (or train again); textcls refuses to use it, "
            "since another file there would silently change what the run does")


def expected_checksums(info: dict, weights: str) -> list[str]:
    """The recorded sha256 of a weights file, plus the one being swapped in when a kill interrupted
    the swap (see textcls.run.store.save_best)."""
    return [s for s in (info.get("sha256", {}).get(weights), info.get("pending_sha256", {}).get(weights)) if s]


def read_run_info(run_dir: Path) -> dict:
    """run.json, checked against its schema ({} when the run has none)."""
    path = run_dir / RUN_INFO
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        info = json.loads(read_regular_text(path, CheckpointError, MAX_RUN_FILE_BYTES))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} cannot be read ({str(exc)[:200]}); the run directory is damaged") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} is not a textcls {RUN_INFO} (expected a JSON object); "
                              "the run directory is damaged")
    if info.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise CheckpointError(
            f"{run_dir} was written by textcls {_printable(info.get('textcls_version'))} (run format "
            f"{_printable(info.get('format_version'))}), which this textcls {__version__} (format {FORMAT_VERSION}) "
            "cannot read; use that version or train again"
        )
    problem = run_info_problem(info)
    if problem:
        raise CheckpointError(f"{path}: {problem}; the run directory is damaged: restore its {RUN_INFO} from a "
                              "backup or train again")
    return info


def _printable(value: Any) -> str:
    return repr(value)[:60] if not isinstance(value, (str, int)) or isinstance(value, bool) else str(value)[:60]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def run_info_problem(info: dict) -> str | None:
    """What is wrong with run.json's fields (naming the key), or None."""
    if "textcls_version" in info and not isinstance(info["textcls_version"], str):
        return "key `textcls_version` must be a string"
    if not _is_int(info.get("format_version", FORMAT_VERSION)):
        return "key `format_version` must be an integer"
    for key in ("sha256", "pending_sha256"):
        value = info.get(key, {})
        if not isinstance(value, dict):
            return f"key `{key}` must be an object of file name -> sha256"
        bad = next((k for k, v in value.items() if not _is_digest(v)), None)
        if bad is not None:
            return f"key `{key}.{bad}` must be a sha256 (64 hex digits)"
    if "kind" in info and info["kind"] not in ("pretrain", "ensemble"):
        return f"key `kind` must be \"pretrain\" or \"ensemble\", not {_printable(info['kind'])}"
    base = info.get("base")
    if base is not None and not (isinstance(base, dict) and isinstance(base.get("path"), str) and base["path"]
                                 and _is_digest(base.get("sha256"))):
        return "key `base` must be an object with `path` (a run directory) and `sha256` (its weights' checksum)"
    if "step" in info and not (_is_int(info["step"]) and info["step"] >= 0):
        return "key `step` must be a whole number >= 0"
    if "metric" in info and not isinstance(info["metric"], str):
        return "key `metric` must be a string"
    if info.get("best") is not None and not (_is_number(info["best"]) or info["best"] != info["best"]):  # nan
        return "key `best` must be a number or null"
    return None


def save_eval_report(run_dir: Path, report: dict, **extra) -> None:
    """The validation metrics (per class, confusion matrix) of the saved best weights."""
    atomic_write_json(run_dir / EVAL_REPORT, {"split": "valid", **extra, **report})


def save_run_files(run_dir: Path, cfg: Config, tokenizer: Tokenizer, labels: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG)
    atomic_write_text(run_dir / TOKENIZER, tokenizer.to_str())
    save_labels(labels, run_dir / LABELS)
    for name in (TOKENIZER_KEY, LABELS_KEY):  # checked at load (check_checksum)
        record_checksum(run_dir, name, sha256_file(run_dir / name), create=True)


def load_run_config(run_dir: Path) -> Config:
    path = run_dir / CONFIG
    if not run_dir.exists():
        raise CheckpointError(f"run directory {run_dir} does not exist; pass the --output of a `textcls train` run")
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no {CONFIG}; is it a textcls run directory?")
    check_regular_file(path, CheckpointError, MAX_RUN_FILE_BYTES)  # not a FIFO or device that would hang
    return config_from_dict(read_yaml(path), source=str(path))

