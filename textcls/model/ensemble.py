"""Several classifiers behind one: their probabilities averaged (`train.ensemble`)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class EnsembleClassifier(nn.Module):
    """Members' logits (B, C) -> logits whose softmax (sigmoid for multilabel) is the members' mean.

    Returning logits lets it stand for one model wherever logits are read (the training-time
    evaluation), and the cross-entropy of these logits is the loss of the averaged probabilities.
    Prediction reads `probabilities`, the members' mean itself (textcls.predictor.EnsemblePredictor).
    """

    def __init__(self, members: list[nn.Module], task: str = "single"):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.task = task

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        logits = torch.stack([m(input_ids, attention_mask, token_type_ids).float() for m in self.members])  # (M, B, C)
        if self.task == "multilabel":
            p = torch.sigmoid(logits).mean(0).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        return torch.logsumexp(torch.log_softmax(logits, -1), 0) - math.log(len(self.members))  # log mean p

    def probabilities(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                      token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, C) float32: the mean of the members' probabilities (softmax, sigmoid per label for multilabel)."""
        logits = torch.stack([m(input_ids, attention_mask, token_type_ids).float() for m in self.members])
        return (torch.sigmoid(logits) if self.task == "multilabel" else torch.softmax(logits, -1)).mean(0)
