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
from textcls.predictor import NblrMix, NblrPredictor, predictor_report, run_predictor
from textcls.run.nblr import save_nblr_model

SHARES = (0.0, 0.3, 0.5, 0.7, 1.0)  # `nblr.choose_weight`: the shares tried (textcls/recipe/rules.py NBLR_GRID)


def run_rows(cfg: Config, labels: list[str]) -> tuple[TextSplit, Optional[TextSplit], Optional[TextSplit]]:
    """The run's training and validation rows as text, and, where the validation rows are held out of the
    training file (`held_out_of_train`), all of that file's rows: one read of it."""
    if held_out_of_train(cfg):
        everything, [(train, valid)] = fold_text_splits(cfg, labels, [cfg.data.valid_fold])
        return train, valid, everything
    train, valid = text_splits(cfg, labels)
    return train, valid, None


def held_out_of_train(cfg: Config) -> bool:
    """The validation rows are a held-out part of the training file (`data.valid_fraction`, no validation
    file): once they have chosen the n-gram model's share, it is fitted again on all the rows, as a cross-fitted
    run's is; the report keeps the figures of the model that did not see them."""
    return bool(cfg.data.valid_fraction) and not cfg.data.valid


def validation_report(cfg: Config, run_dir: Path, labels: list[str], device, console=None,
                      precision: Optional[str] = None) -> Optional[dict]:
    """The validation report of the run saved in `run_dir` (its best weights; a single run or an ensemble),
    from its predictor's probabilities. With `nblr.weight` > 0 the NB-LR model is fitted on the training
    rows and the report is of the mix, with "without_nblr" and "nblr" (see predictor_report); where the
    validation rows are held out of the training file, the model saved is then fitted on all its rows. None
    without validation data. Runs in one process (rank 0 under torchrun): no collective.
    `precision`: default `train.precision`."""
    from textcls.run.load import load_run

    n, t = cfg.nblr, cfg.train
    train, valid, everything = run_rows(cfg, labels)
    model = _fit_nblr(cfg, train, console) if n.weight > 0 else None
    if valid is None:
        if model is not None:
            save_nblr_model(model, run_dir, n.weight)
            _say_fitted(model, {}, f"{n.weight:g} of the probabilities", t.metric, console)
        return None
    base = run_predictor(load_run(run_dir, device=device), t.eval_batch_size, device, precision or t.precision,
                         nblr=False)
    if model is None:
        return predictor_report(base, valid.texts, valid.pairs, valid.targets, t.threshold)
    nblr_probs = model.probabilities(valid.texts, valid.pairs)
    report = report_from_probabilities(nblr_probs, valid.targets, labels, cfg.data.task, t.threshold)
    alone = {k: report[k] for k in METRICS if k in report}
    _say_fitted(model, alone, "its share chosen next" if n.choose_weight else f"{n.weight:g} of the probabilities",
                t.metric, console)
    share = n.weight
    if n.choose_weight:
        base_probs = base.predict_proba(valid.texts, valid.pairs)
        share = choose_share(base_probs, nblr_probs, valid.targets, labels, cfg.data.task, t.threshold, t.metric)
        if console is not None:
            console.print(f"NB-LR share {share:g}, chosen on the validation rows by {t.metric}", highlight=False)
        base = _Known(base_probs, base.labels, base.task)
    mix = NblrMix(base, NblrPredictor(model, labels), share)
    report = predictor_report(mix, valid.texts, valid.pairs, valid.targets, t.threshold, nblr_probs)
    if everything is not None:
        model = _fit_nblr(cfg, everything)
        if console is not None:
            console.print(f"NB-LR model fitted again on all {len(everything.texts):,} training rows, the held-out ones "
                          "too: the model saved", highlight=False)
    save_nblr_model(model, run_dir, share, alone)
    return report


def _say_fitted(model: NblrModel, alone: dict, share: str, metric: str, console) -> None:
    if console is not None:
        score = f", valid {metric} {alone[metric]:.4f} alone" if metric in alone else ""
        console.print(f"NB-LR model: {len(model.vocab):,} n-grams{score}; {share}", highlight=False)


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
                          n.max_features, n.c, n.lowercase, quiet=console is None, normalize=n.normalize,
                          chars=n.chars)


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
