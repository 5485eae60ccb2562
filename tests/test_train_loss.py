"""The loss computed by hand: class weights, label smoothing, multi-label BCE with pos_weight."""

from __future__ import annotations

import math

import pytest
import torch

from textcls.train.loss import auto_class_weights, compute_loss

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0]])
LABELS = torch.tensor([0, 2, 1])


def _log_softmax(row: list[float]) -> list[float]:
    z = math.log(sum(math.exp(v) for v in row))
    return [v - z for v in row]


def test_class_weights_give_a_weighted_mean_of_the_nll():
    w = [1.0, 3.0, 0.5]
    nll = [-_log_softmax(LOGITS[i].tolist())[int(LABELS[i])] for i in range(3)]
    by_hand = sum(w[int(y)] * n for y, n in zip(LABELS, nll)) / sum(w[int(y)] for y in LABELS)
    got = compute_loss(LOGITS, LABELS, class_weights=torch.tensor(w)).item()
    assert got == pytest.approx(by_hand, rel=1e-6)
    plain = compute_loss(LOGITS, LABELS).item()
    assert plain == pytest.approx(sum(nll) / 3, rel=1e-6) and plain != pytest.approx(got)


def test_label_smoothing_mixes_in_the_uniform_distribution():
    eps, c = 0.1, 3
    by_hand = 0.0
    for i in range(3):
        logp = _log_softmax(LOGITS[i].tolist())
        target = [eps / c + (1 - eps) * (k == int(LABELS[i])) for k in range(c)]
        by_hand += -sum(t * lp for t, lp in zip(target, logp))
    got = compute_loss(LOGITS, LABELS, label_smoothing=eps).item()
    assert got == pytest.approx(by_hand / 3, rel=1e-6)


def test_auto_class_weights_are_inverse_frequency():
    w = auto_class_weights(torch.tensor([60.0, 30.0, 10.0]))
    assert w.tolist() == pytest.approx([100 / (3 * 60), 100 / (3 * 30), 100 / (3 * 10)])
    counts = torch.tensor([60.0, 30.0, 10.0])
    assert float((w * counts).sum() / counts.sum()) == pytest.approx(1.0)  # mean weight per example is 1


def test_multilabel_bce_pos_weight_and_smoothing_by_hand():
    logits = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    pos_weight = [2.0, 0.5]
    eps = 0.2

    def sig(x):
        return 1 / (1 + math.exp(-x))

    terms = []
    for i in range(2):
        for k in range(2):
            t = y[i, k].item() * (1 - eps) + eps / 2
            p = sig(logits[i, k].item())
            terms.append(-(pos_weight[k] * t * math.log(p) + (1 - t) * math.log(1 - p)))
    got = compute_loss(logits, y, "multilabel", torch.tensor(pos_weight), label_smoothing=eps).item()
    assert got == pytest.approx(sum(terms) / 4, rel=1e-6)
