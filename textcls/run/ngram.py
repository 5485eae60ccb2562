"""The bag-of-n-grams model's files in a run directory: `ngram.safetensors` (weight (F, C), bias (C)) and
`ngram.json` (format, its share of the probabilities, options, vocabulary, the weights' sha256)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from textcls.errors import CheckpointError
from textcls.io import atomic_write_json
from textcls.model.ngram import NgramModel
from textcls.run.layout import LABELS, NGRAM_INFO, NGRAM_WEIGHTS
from textcls.run.weights import load_weights, save_weights

FORMAT = 1


def save_ngram_model(model: NgramModel, run_dir: Path, weight: float, report: Optional[dict] = None) -> None:
    """Write ngram.safetensors, then ngram.json (which records its sha256), each atomically."""
    digest = save_weights({"weight": model.weight, "bias": model.bias}, run_dir / NGRAM_WEIGHTS)
    atomic_write_json(run_dir / NGRAM_INFO, {"format": FORMAT, "weight": weight, "max_order": model.max_order,
                                             "lowercase": model.lowercase, "task": model.task, "sha256": digest,
                                             "valid": report or {}, "vocab": model.vocab})


def has_ngram_model(run_dir: Path) -> bool:
    return (run_dir / NGRAM_INFO).is_file()


def load_ngram_model(run_dir: Path, num_labels: int) -> tuple[NgramModel, float]:
    """(model, its share of the probabilities) from a run directory; CheckpointError when damaged."""
    path = run_dir / NGRAM_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        vocab, share = info["vocab"], float(info["weight"])
        max_order, lowercase, task = int(info["max_order"]), bool(info["lowercase"]), info.get("task", "single")
        if info.get("format") != FORMAT or not isinstance(vocab, list):
            raise ValueError(f"format {info.get('format')}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); the run directory is damaged: restore the file or "
                              "train again") from None
    state = load_weights(run_dir / NGRAM_WEIGHTS, info.get("sha256"))
    weight, bias = state.get("weight"), state.get("bias")
    if weight is None or bias is None or tuple(weight.shape) != (len(vocab), num_labels) or bias.shape != (num_labels,):
        raise CheckpointError(f"{run_dir / NGRAM_WEIGHTS} does not fit {path} and {LABELS} ({len(vocab)} n-grams, "
                              f"{num_labels} labels); the run directory was changed by hand: train again")
    return NgramModel(vocab, weight.float(), bias.float(), max_order, lowercase, task), share
