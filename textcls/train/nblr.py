"""`nblr.weight` > 0: fit the bag-of-n-grams model after the transformer(s) and report the mix.

The report of a finished run goes through its predictor (textcls.predictor), which mixes the n-gram
model in: `report_with_nblr` for a single run (train/loop.py), `validation_report` for any run
(an ensemble's too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from textcls.config import Config
from textcls.data.pipeline import TextSplit, text_splits
from textcls.metrics import METRICS, report_from_probabilities
from textcls.model.nblr import fit_nblr_model
from textcls.predictor import predictor_report, run_predictor
from textcls.run.nblr import save_nblr_model


def fit_run_nblr(cfg: Config, run_dir: Path, labels: list[str],
                  console=None) -> tuple[Optional[TextSplit], Optional[np.ndarray], dict]:
    """Fit on the run's training rows, save nblr.safetensors/nblr.json; returns the validation rows as
    text, the model's (N, C) probabilities on them (both None without validation data) and its
    validation metrics alone."""
    n = cfg.nblr
    train, valid = text_splits(cfg, labels)
    model = fit_nblr_model(train.texts, train.pairs, train.targets, cfg.data.task, n.max_order, n.min_count,
                            n.max_features, n.c, n.lowercase)
    probs, alone = None, {}
    if valid is not None:
        probs = model.probabilities(valid.texts, valid.pairs)
        report = report_from_probabilities(probs, valid.targets, labels, cfg.data.task, cfg.train.threshold)
        alone = {k: report[k] for k in METRICS if k in report}
    save_nblr_model(model, run_dir, n.weight, alone)
    if console is not None:
        score = f", valid {cfg.train.metric} {alone[cfg.train.metric]:.4f} alone" if cfg.train.metric in alone else ""
        console.print(f"NB-LR model: {len(model.vocab):,} n-grams{score}; {n.weight:g} of the probabilities",
                      highlight=False)
    return valid, probs, alone


def validation_report(cfg: Config, run_dir: Path, labels: list[str], device, console=None,
                      precision: Optional[str] = None) -> Optional[dict]:
    """The validation report of the run saved in `run_dir` (its best weights; a single run or an ensemble),
    from its predictor's probabilities. With `nblr.weight` > 0 the NB-LR model is fitted and saved
    first, and the report is of the mix, with "without_nblr" and "nblr" (see predictor_report). None
    without validation data. Runs in one process (rank 0 under torchrun): no collective.
    `precision`: default `train.precision`."""
    from textcls.run.load import load_run

    nblr_probs = None
    if cfg.nblr.weight > 0:
        valid, nblr_probs, _ = fit_run_nblr(cfg, run_dir, labels, console)
    else:
        _, valid = text_splits(cfg, labels)
    if valid is None:
        return None
    t = cfg.train
    run = load_run(run_dir, device=device)
    predictor = run_predictor(run, t.eval_batch_size, device, precision or t.precision)
    return predictor_report(predictor, valid.texts, valid.pairs, valid.targets, t.threshold, nblr_probs)


def report_with_nblr(cfg: Config, run_dir: Path, labels: list[str], device, best_step: Optional[int] = None,
                      console=None) -> Optional[float]:
    """After training a single run with `nblr.weight` > 0: fit the NB-LR model, save the validation report
    of the best weights mixed with it as the run's eval report; returns its `train.metric` (None without
    validation data)."""
    from textcls.run.info import save_eval_report

    report = validation_report(cfg, run_dir, labels, device, console)
    if report is None:
        return None
    save_eval_report(run_dir, report, step=best_step)
    metric = cfg.train.metric
    if console is not None and "without_nblr" in report:
        console.print(f"valid {metric} {report[metric]:.4f} with the NB-LR model, "
                      f"{report['without_nblr'][metric]:.4f} without", highlight=False)
    return report[metric]
