"""`nblr.weight` > 0: fit the bag-of-n-grams model after the transformer(s) and report the mix.

The report of a finished run goes through its predictor (textcls.predictor), which mixes the n-gram
model in: `report_with_nblr` for a single run (train/loop.py), `validation_report` for any run
(an ensemble's too). With `nblr.choose_weight` the share is chosen on the validation rows
(`choose_share`) and nblr.json records it. Where the validation rows were held out of the training file,
the model saved is then fitted on all its rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from textcls.config import Config
from textcls.data.pipeline import TextSplit, fold_text_splits, text_splits
from textcls.metrics import METRICS, report_from_probabilities
from textcls.model.nblr import NblrModel, fit_nblr_model
from textcls.predictor import NblrMix, predictor_report, run_predictor
from textcls.run.nblr import save_nblr_model

SHARES = (0.0, 0.3, 0.5, 0.7, 1.0)  # `nblr.choose_weight`: the shares tried (textcls/recipe/rules.py NBLR_GRID)


def fit_run_nblr(cfg: Config, run_dir: Path, labels: list[str],
                  console=None) -> tuple[Optional[TextSplit], Optional[np.ndarray], dict, NblrModel]:
    """Fit on the run's training rows, save nblr.safetensors/nblr.json; returns the validation rows as
    text, the model's (N, C) probabilities on them (both None without validation data), its
    validation metrics alone and the model."""
    n = cfg.nblr
    train, valid = text_splits(cfg, labels)
    model = _fit_nblr(cfg, train, console)
    probs, alone = None, {}
    if valid is not None:
        probs = model.probabilities(valid.texts, valid.pairs)
        report = report_from_probabilities(probs, valid.targets, labels, cfg.data.task, cfg.train.threshold)
        alone = {k: report[k] for k in METRICS if k in report}
    save_nblr_model(model, run_dir, n.weight, alone)
    if console is not None:
        score = f", valid {cfg.train.metric} {alone[cfg.train.metric]:.4f} alone" if cfg.train.metric in alone else ""
        chosen = n.choose_weight and valid is not None
        share = "its share chosen next" if chosen else f"{n.weight:g} of the probabilities"
        console.print(f"NB-LR model: {len(model.vocab):,} n-grams{score}; {share}", highlight=False)
    return valid, probs, alone, model


def validation_report(cfg: Config, run_dir: Path, labels: list[str], device, console=None,
                      precision: Optional[str] = None) -> Optional[dict]:
    """The validation report of the run saved in `run_dir` (its best weights; a single run or an ensemble),
    from its predictor's probabilities. With `nblr.weight` > 0 the NB-LR model is fitted and saved
    first, and the report is of the mix, with "without_nblr" and "nblr" (see predictor_report); where the
    validation rows are held out of the training file, the model saved is then fitted on all its rows. None
    without validation data. Runs in one process (rank 0 under torchrun): no collective.
    `precision`: default `train.precision`."""
    from textcls.run.load import load_run

    nblr_probs = None
    if cfg.nblr.weight > 0:
        valid, nblr_probs, alone, model = fit_run_nblr(cfg, run_dir, labels, console)
    else:
        _, valid = text_splits(cfg, labels)
    if valid is None:
        return None
    t = cfg.train
    run = load_run(run_dir, device=device)
    predictor = run_predictor(run, t.eval_batch_size, device, precision or t.precision)
    share = cfg.nblr.weight
    if cfg.nblr.weight > 0 and cfg.nblr.choose_weight and isinstance(predictor, NblrMix):
        base = predictor.base.predict_proba(valid.texts, valid.pairs)
        share = choose_share(base, nblr_probs, valid.targets, labels, cfg.data.task, t.threshold, t.metric)
        save_nblr_model(model, run_dir, share, alone)
        if console is not None:
            console.print(f"NB-LR share {share:g}, chosen on the validation rows by {t.metric}", highlight=False)
        predictor = NblrMix(_Known(base, predictor.labels, predictor.task), predictor.nblr, share)
    report = predictor_report(predictor, valid.texts, valid.pairs, valid.targets, t.threshold, nblr_probs)
    if cfg.nblr.weight > 0 and held_out_of_train(cfg):
        everything, _ = fold_text_splits(cfg, labels, ())
        save_nblr_model(_fit_nblr(cfg, everything), run_dir, share, alone)
        if console is not None:
            console.print(f"NB-LR model fitted again on all {len(everything.texts):,} training rows, the held-out ones "
                          "too: the model saved", highlight=False)
    return report


def held_out_of_train(cfg: Config) -> bool:
    """The validation rows are a held-out part of the training file (`data.valid_fraction`, no validation
    file): once they have chosen the n-gram model's share, it is fitted again on all the rows, as a cross-fitted
    run's is; the report keeps the figures of the model that did not see them."""
    return bool(cfg.data.valid_fraction) and not cfg.data.valid


def cross_fit_report(cfg: Config, run_dir: Path, member_folds: dict[str, int], labels: list[str], device,
                     console=None, precision: Optional[str] = None) -> dict:
    """The out-of-fold validation report of an ensemble whose members held out folds of the training rows in turn
    (`train.ensemble_folds`; `member_folds`: member name -> its fold): each fold's rows are scored by the mean of
    the members that held it out, and the rows of all the folds make one report. With `nblr.weight` > 0 the NB-LR
    model is fitted once per fold on that fold's training part for its out-of-fold probabilities (its share is
    chosen on them with `nblr.choose_weight`), then once on all the rows, which is the model saved.

    A fold scored by a single member gives that member's probabilities, not the ensemble's: the share chosen
    then suits one member (more n-gram model than an ensemble needs), which is why the recipe has at least two
    members per fold."""
    from textcls.run.load import load_run

    t, n = cfg.train, cfg.nblr
    folds: dict[int, list[str]] = {}
    for name, fold in member_folds.items():
        folds.setdefault(fold, []).append(name)
    everything, parts = fold_text_splits(cfg, labels, sorted(folds))
    if console is not None and n.weight > 0:
        console.print(f"NB-LR model: fitted on the training part of each of {len(folds)} folds for out-of-fold "
                      "probabilities", highlight=False)
    base, nblr, targets, texts, pairs = [], [], [], [], []
    for fold, (train, valid) in zip(sorted(folds), parts):
        probs = [run_predictor(load_run(run_dir / name, device=device), t.eval_batch_size, device,
                               precision or t.precision, nblr=False).predict_proba(valid.texts, valid.pairs)
                 for name in folds[fold]]
        base.append(np.mean(probs, axis=0))
        if n.weight > 0:
            nblr.append(_fit_nblr(cfg, train).probabilities(valid.texts, valid.pairs))
        targets.append(valid.targets)
        texts += valid.texts
        pairs += valid.pairs or []
    base_probs, targets_all = np.concatenate(base), np.concatenate(targets)
    if n.weight <= 0:
        return report_from_probabilities(base_probs, targets_all, labels, cfg.data.task, t.threshold)
    nblr_probs = np.concatenate(nblr)
    share = choose_share(base_probs, nblr_probs, targets_all, labels, cfg.data.task, t.threshold, t.metric) \
        if n.choose_weight else n.weight
    alone = report_from_probabilities(nblr_probs, targets_all, labels, cfg.data.task, t.threshold)
    save_nblr_model(_fit_nblr(cfg, everything, console), run_dir, share, {k: alone[k] for k in METRICS if k in alone})
    if console is not None:
        chosen = f", chosen on them by {t.metric}" if n.choose_weight else ""
        console.print(f"NB-LR share {share:g} of the out-of-fold probabilities of {len(folds)} folds{chosen}; "
                      f"the model saved is fitted on all {len(everything.texts):,} rows", highlight=False)
    mix = NblrMix(_Known(base_probs, labels, cfg.data.task), _Known(nblr_probs, labels, cfg.data.task), share)
    return predictor_report(mix, texts, pairs or None, targets_all, t.threshold, nblr_probs)


def _fit_nblr(cfg: Config, rows: TextSplit, console=None) -> NblrModel:
    n = cfg.nblr
    return fit_nblr_model(rows.texts, rows.pairs, rows.targets, cfg.data.task, n.max_order, n.min_count,
                          n.max_features, n.c, n.lowercase, quiet=console is None, normalize=n.normalize)


def choose_share(base: np.ndarray, nblr: np.ndarray, targets: np.ndarray, labels: list[str], task: str,
                 threshold, metric: str, grid: tuple[float, ...] = SHARES) -> float:
    """The NB-LR model's share of the mix that scores best by `metric` on labelled rows, from `grid`; ties go
    to the share nearest 0.5 (a mix is rarely worse than either part on rows not seen)."""
    def score(share: float) -> float:
        report = report_from_probabilities((1 - share) * base + share * nblr, targets, labels, task, threshold)
        return -report[metric] if metric == "loss" else report[metric]

    scores = {share: score(share) for share in grid}
    best = max(scores.values())
    return min((s for s in grid if scores[s] >= best - 1e-12), key=lambda s: abs(s - 0.5))


class _Known:
    """A predictor whose probabilities on the validation rows are already computed (they are not predicted
    twice); it answers only for those rows."""

    def __init__(self, probs: np.ndarray, labels: list[str], task: str):
        self.probs, self.labels, self.task = probs, labels, task

    def predict_proba(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
        if len(texts) != len(self.probs):
            raise ValueError(f"probabilities are known for {len(self.probs)} rows, not {len(texts)}")
        return self.probs


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
