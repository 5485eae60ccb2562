"""The loss lives here, not in the model: class weights, label smoothing, multi-label BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, task: str = "single",
                 class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """logits (B, C); labels (B,) long for single-label or (B, C) multi-hot float for multilabel.

    Single-label: cross-entropy with per-class `class_weights` (a weighted mean over the batch, as
    torch defines it) and label smoothing eps (target = (1 - eps) one-hot + eps / C).
    Multilabel: binary cross-entropy averaged over B x C, `class_weights` is the per-label
    `pos_weight`, and smoothing pulls each 0/1 target towards 0.5: y (1 - eps) + eps / 2.
    """
    logits = logits.float()
    if task == "multilabel":
        targets = labels.float() * (1.0 - label_smoothing) + 0.5 * label_smoothing
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=class_weights)
    return F.cross_entropy(logits, labels, weight=class_weights, label_smoothing=label_smoothing)


def auto_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency weights normalised so the average weight over examples is 1."""
    counts = counts.float().clamp(min=1)
    weights = counts.sum() / (len(counts) * counts)
    return weights
