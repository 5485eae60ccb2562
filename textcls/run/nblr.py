"""The bag-of-n-grams model's files in a run directory: `nblr.safetensors` (weight (F, C), bias (C)) and
`nblr.json` (format, its share of the probabilities, options, vocabulary, the weights' sha256)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from textcls.errors import CheckpointError
from textcls.io import atomic_write_json, read_regular_text
from textcls.model.nblr import NblrModel
from textcls.run.layout import LABELS, LEGACY_NBLR, NBLR_INFO, NBLR_WEIGHTS
from textcls.run.weights import load_weights, save_weights

FORMAT = 1


def save_nblr_model(model: NblrModel, run_dir: Path, weight: float, report: Optional[dict] = None) -> None:
    """Write nblr.safetensors, then nblr.json (which records its sha256), each atomically."""
    digest = save_weights({"weight": model.weight, "bias": model.bias}, run_dir / NBLR_WEIGHTS)
    atomic_write_json(run_dir / NBLR_INFO, {"format": FORMAT, "weight": weight, "max_order": model.max_order,
                                             "lowercase": model.lowercase, "task": model.task,
                                             "normalize": model.normalize,
                                             "chars": list(model.chars) if model.chars else None, "sha256": digest,
                                             "valid": report or {}, "vocab": model.vocab})


def has_nblr_model(run_dir: Path) -> bool:
    return any((run_dir / name).is_file() for name in (NBLR_INFO, LEGACY_NBLR[NBLR_INFO]))


def _named(run_dir: Path, name: str) -> Path:
    """A file of the model, under its name before the rename when a run written then has it so."""
    legacy = run_dir / LEGACY_NBLR[name]
    return legacy if not (run_dir / NBLR_INFO).is_file() and legacy.is_file() else run_dir / name


def load_nblr_model(run_dir: Path, num_labels: int) -> tuple[NblrModel, float]:
    """(model, its share of the probabilities) from a run directory; CheckpointError when damaged."""
    path = _named(run_dir, NBLR_INFO)
    try:
        info = json.loads(read_regular_text(path, CheckpointError))
        vocab, share = info["vocab"], float(info["weight"])
        max_order, lowercase, task = int(info["max_order"]), bool(info["lowercase"]), info.get("task", "single")
        normalize = bool(info.get("normalize", False))  # absent from runs written before the option
        chars = info.get("chars")  # absent (no character n-grams) before the option
        chars = (int(chars[0]), int(chars[1])) if chars else None
        if info.get("format") != FORMAT or not isinstance(vocab, list):
            raise ValueError(f"format {info.get('format')}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); the run directory is damaged: restore the file or "
                              "train again") from None
    weights = _named(run_dir, NBLR_WEIGHTS)
    state = load_weights(weights, info.get("sha256"))
    weight, bias = state.get("weight"), state.get("bias")
    if weight is None or bias is None or tuple(weight.shape) != (len(vocab), num_labels) or bias.shape != (num_labels,):
        raise CheckpointError(f"{weights} does not fit {path} and {LABELS} ({len(vocab)} n-grams, "
                              f"{num_labels} labels); the run directory was changed by hand: train again")
    return NblrModel(vocab, weight.float(), bias.float(), max_order, lowercase, task, normalize, chars), share
