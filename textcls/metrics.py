"""Classification metrics: accuracy, macro/weighted F1, per-class P/R/F1 from a confusion matrix, and the
report (loss and metrics) of logits or probabilities against gold labels. Training, eval and every
predictor report through here."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    """(C, C) counts; row = true label, column = predicted label."""
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return precision, recall, f1


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str],
                          loss: float | None = None) -> dict:
    cm = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), len(labels))
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    precision, recall, f1 = _prf(tp, cm.sum(0) - tp, support - tp)
    total = max(int(cm.sum()), 1)
    present = support > 0
    report = {
        "examples": int(cm.sum()),
        "accuracy": float(tp.sum() / total),
        "micro_f1": float(tp.sum() / total),  # single-label: micro P = micro R = accuracy
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / total),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "labels": labels,
    }
    if loss is not None:
        report["loss"] = float(loss)
    return report


def multilabel_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str],
                      loss: float | None = None) -> dict:
    """y_true, y_pred: (N, C) 0/1 arrays."""
    y_true = np.asarray(y_true).astype(bool)
    y_pred = np.asarray(y_pred).astype(bool)
    tp = (y_true & y_pred).sum(0).astype(np.float64)
    fp = (~y_true & y_pred).sum(0).astype(np.float64)
    fn = (y_true & ~y_pred).sum(0).astype(np.float64)
    precision, recall, f1 = _prf(tp, fp, fn)
    _, _, micro = _prf(np.array([tp.sum()]), np.array([fp.sum()]), np.array([fn.sum()]))
    support = y_true.sum(0)
    report = {
        "examples": int(len(y_true)),
        "accuracy": float((y_true == y_pred).all(1).mean()) if len(y_true) else 0.0,  # exact match
        "micro_f1": float(micro[0]),
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "weighted_f1": float((f1 * support).sum() / max(support.sum(), 1)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(labels)
        },
        "labels": labels,
    }
    if loss is not None:
        report["loss"] = float(loss)
    return report


METRICS = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")  # choices of `train.metric`
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "weighted_f1": True, "micro_f1": True, "loss": False}


def is_better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new > best if HIGHER_IS_BETTER.get(metric, True) else new < best


def report_from_mean(mean: torch.Tensor, ds, labels: list[str], task: str, threshold) -> dict:
    """The report of (N, C) probabilities (a mean over models) against the labels of `ds`."""
    mean = mean.clamp(1e-7, 1 - 1e-7)
    logits = torch.log(mean) - torch.log1p(-mean) if task == "multilabel" else torch.log(mean)
    return report_from_logits(logits.numpy(), ds, labels, task, threshold)


def report_from_probabilities(probs: np.ndarray, targets: np.ndarray, labels: list[str], task: str = "single",
                              threshold=0.5) -> dict:
    """Loss and metrics of (N, C) probabilities against (N, C) 0/1 targets."""
    rows = {"labels": [list(np.flatnonzero(t)) for t in targets]} if task == "multilabel" else \
        {"label": targets.argmax(1).tolist()}
    return report_from_mean(torch.from_numpy(np.asarray(probs, dtype=np.float32)), rows, labels, task, threshold)


def report_from_logits(logits: np.ndarray, ds, labels: list[str], task: str = "single", threshold=0.5) -> dict:
    """Loss and metrics of (N, C) logits against the labels of `ds`."""
    t = torch.from_numpy(logits)
    if task == "multilabel":
        y_true = np.zeros_like(logits, dtype=np.int64)
        for i, ids in enumerate(ds["labels"]):
            y_true[i, ids] = 1
        loss = F.binary_cross_entropy_with_logits(t.float(), torch.from_numpy(y_true).float()).item()
        thresholds = np.asarray(threshold, dtype=np.float32)
        y_pred = (1 / (1 + np.exp(-logits)) >= thresholds).astype(np.int64)
        return multilabel_report(y_true, y_pred, labels, loss)
    y_true = np.asarray(ds["label"], dtype=np.int64)
    loss = F.cross_entropy(t.float(), torch.from_numpy(y_true)).item()  # train.loss.compute_loss, unweighted
    return classification_report(y_true, logits.argmax(1), labels, loss)
