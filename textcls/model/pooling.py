"""Pooling a (B, T, H) sequence to (B, H): cls, cls_tanh, cls_relu, cls_gelu, mean, max, last; all padding-aware.

A padding-free batch pools its packed (N, H) rows: cls and last read each sequence's own first and last
row; mean and max scatter the rows back to (B, T, H) and pool as a padded batch does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from textcls.model.linear import Linear
from textcls.model.packing import Packing

POOLINGS = ("cls", "cls_tanh", "cls_relu", "cls_gelu", "mean", "max", "last")
# A Linear(H, H) + activation on the first token: BERT/ALBERT/RoBERTa's pooler (tanh), DistilBERT's
# pre_classifier (ReLU), ELECTRA's classification head (exact GELU).
DENSE_ACTIVATIONS = {"cls_tanh": torch.tanh, "cls_relu": F.relu, "cls_gelu": F.gelu}
FIRST_TOKEN_POOLINGS = ("cls", *DENSE_ACTIVATIONS)  # they read each sequence's first row alone


class Pooler(nn.Module):
    def __init__(self, kind: str, hidden_size: int):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"unknown pooling {kind!r}")
        self.kind = kind
        # The dense kinds have a Linear(H, H); the others have no parameters.
        self.dense = Linear(hidden_size, hidden_size) if kind in DENSE_ACTIVATIONS else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | Packing) -> torch.Tensor:
        """x (B, T, H) with mask (B, T) bool True on real tokens, or packed x (N, H) with its Packing -> (B, H)."""
        packing = mask if isinstance(mask, Packing) else None
        if self.kind in FIRST_TOKEN_POOLINGS:
            return self.from_first(x[:, 0] if packing is None else x[packing.first])
        if packing is not None:
            if self.kind == "last":
                return x[packing.last]
            x, mask = packing.unpack(x), packing.mask  # (B, T, H), zeros on the padding
        if self.kind == "mean":
            return token_mean(x, mask)
        m = mask.unsqueeze(-1)  # (B, T, 1)
        if self.kind == "max":
            return x.masked_fill(~m, torch.finfo(x.dtype).min).amax(1)
        last = mask.long().sum(1).clamp(min=1) - 1  # (B,) index of the last real token
        return x.gather(1, last.view(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1)

    def from_first(self, first: torch.Tensor) -> torch.Tensor:
        """A first-token pooling of each sequence's first row, (B, H) -> (B, H)."""
        return first if self.kind == "cls" else DENSE_ACTIVATIONS[self.kind](self.dense(first))


def token_mean(x: torch.Tensor, mask: torch.Tensor | Packing) -> torch.Tensor:
    """The mean over each text's real tokens: padded x (B, T, H) with its (B, T) bool mask, or packed x (N, H)
    with its Packing -> (B, H)."""
    if isinstance(mask, Packing):
        rows = mask.index // mask.mask.shape[1]  # (N,) the text each packed token belongs to
        sums = x.new_zeros(mask.mask.shape[0], x.shape[-1]).index_add_(0, rows, x)
        return sums / mask.mask.sum(1, keepdim=True).to(x.dtype)
    m = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)
