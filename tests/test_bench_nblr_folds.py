"""bench/nblr_folds.py: every setting is scored on the same seeded folds, each fold held out once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import nblr_folds


def record_fits(monkeypatch) -> tuple[list[set], list[set]]:
    """The texts each fold's model is fitted on, and those it scores, as fold_accuracy runs."""
    fitted, scored = [], []
    real_fit = nblr_folds.fit_nblr_model

    def recording_fit(train_texts, pairs, targets, **options):
        fitted.append(set(train_texts))
        model = real_fit(train_texts, pairs, targets, **options)
        real_probabilities = model.probabilities
        model.probabilities = lambda held: scored.append(set(held)) or real_probabilities(held)
        return model

    monkeypatch.setattr(nblr_folds, "fit_nblr_model", recording_fit)
    return fitted, scored


def test_each_fold_is_held_out_once_and_scored_by_a_model_fitted_on_the_others(monkeypatch):
    texts = [f"row{i} {'good' if i % 2 else 'bad'}" for i in range(40)]
    labels = ["pos" if i % 2 else "neg" for i in range(40)]
    fitted, scored = record_fits(monkeypatch)
    accuracy = nblr_folds.fold_accuracy(texts, labels, {"min_count": 1, "normalize": True, "c": 10.0}, 4, 0)
    assert accuracy == 1.0  # "good" and "bad" decide every row
    assert len(fitted) == len(scored) == 4
    assert sorted(t for held in scored for t in held) == sorted(texts)  # each row held out exactly once
    assert all(train.isdisjoint(held) and len(train | held) == 40 for train, held in zip(fitted, scored))
    noise = list(np.random.default_rng(1).permutation(labels))
    assert nblr_folds.fold_accuracy(texts, noise, {"min_count": 1}, 4, 0) < 0.9  # the labels are read


def test_folds_of_whole_texts_leave_the_phrases_of_held_out_texts_out_of_the_fit(monkeypatch):
    sentences = [f"s{i} w{i} {'good' if i % 2 else 'bad'} end" for i in range(20)]
    phrases = [f"w{i} {'good' if i % 2 else 'bad'}" for i in range(20)]  # each inside its own sentence
    texts, labels = sentences + phrases, ["pos" if i % 2 else "neg" for i in range(20)] * 2
    fitted, scored = record_fits(monkeypatch)
    nblr_folds.fold_accuracy(texts, labels, {"min_count": 1}, 4, 0, whole_texts=True)
    assert sorted(t for held in scored for t in held) == sorted(sentences)  # only whole texts are scored
    for train, held in zip(fitted, scored):
        inside = {p for p in phrases if any(p in s for s in held)}
        assert train.isdisjoint(held | inside) and len(train) == 40 - 2 * len(held)
