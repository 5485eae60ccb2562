"""`ngram.weight` > 0: fit the bag-of-n-grams model after the transformer(s) and report the mix."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from textcls.config import Config
from textcls.data.pipeline import TextSplit, text_splits
from textcls.model.ngram import fit_ngram_model
from textcls.run.ngram import save_ngram_model
from textcls.train.evaluate import report_from_probabilities
from textcls.train.metrics import METRICS


def fit_run_ngram(cfg: Config, run_dir: Path, labels: list[str],
                  console=None) -> tuple[Optional[TextSplit], Optional[np.ndarray], dict]:
    """Fit on the run's training rows, save ngram.safetensors/ngram.json; returns the validation rows as
    text, the model's (N, C) probabilities on them (both None without validation data) and its
    validation metrics alone."""
    n = cfg.ngram
    train, valid = text_splits(cfg, labels)
    model = fit_ngram_model(train.texts, train.pairs, train.targets, cfg.data.task, n.max_order, n.min_count,
                            n.max_features, n.c, n.lowercase)
    probs, alone = None, {}
    if valid is not None:
        probs = model.probabilities(valid.texts, valid.pairs)
        report = report_from_probabilities(probs, valid.targets, labels, cfg.data.task, cfg.train.threshold)
        alone = {k: report[k] for k in METRICS if k in report}
    save_ngram_model(model, run_dir, n.weight, alone)
    if console is not None:
        score = f", valid {cfg.train.metric} {alone[cfg.train.metric]:.4f} alone" if cfg.train.metric in alone else ""
        console.print(f"n-gram model: {len(model.vocab):,} n-grams{score}; {n.weight:g} of the probabilities",
                      highlight=False)
    return valid, probs, alone


def mixed_report(report: dict, share: float, alone: dict) -> dict:
    """An evaluation report of a run with an n-gram model, which names its share and its metrics alone."""
    return {**report, "ngram": {"weight": share, **alone}}
