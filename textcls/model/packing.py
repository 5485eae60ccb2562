"""Padding-free batches (`model.padding_free`): the real tokens of a padded batch packed into one tensor.

A padded (B, T) batch has N real tokens; `Packing` says where they sit. The per-token work (embeddings,
Q/K/V and output projections, feed-forward, LayerNorms, adapters) then runs on (N, H) rows with no
padding rows. Attention alone needs the sequences apart: it scatters the packed Q/K/V back to the
padded (B, T) layout around `scaled_dot_product_attention` and gathers its output again ("unpadding",
as MosaicBERT and HuggingFace's flash-attention varlen path), so each sequence attends to itself only
and the result equals the padded computation.

Rows must be left-aligned (real tokens first), as `pad_batch` makes them, and hold at least one token.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class Packing:
    index: torch.Tensor  # (N,) long: flat position b * T + t of each real token, row by row
    positions: torch.Tensor  # (N,) long: t, each token's position in its own sequence
    first: torch.Tensor  # (B,) long: packed row of each sequence's first token
    last: torch.Tensor  # (B,) long: packed row of each sequence's last token
    mask: torch.Tensor  # (B, T) bool: True on real tokens, the padded layout attention runs in
    bias: Optional[torch.Tensor] = None  # SDPA mask broadcastable to (B, heads, T, T); see attention_bias

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "Packing":
        """The packing of a (B, T) bool mask; ValueError for an empty or not left-aligned row."""
        if mask.dim() != 2:
            raise ValueError(f"a padding mask is (B, T), got shape {tuple(mask.shape)}")
        mask = mask.bool()
        lengths = mask.sum(1)  # (B,)
        if not bool(((lengths > 0) & (mask[:, 1:] <= mask[:, :-1]).all(1)).all()):
            raise ValueError("padding-free batches need every row left-aligned (real tokens first) and non-empty")
        index = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        ends = lengths.cumsum(0)  # (B,)
        return cls(index, index % mask.shape[1], ends - lengths, ends - 1, mask)

    @property
    def num_tokens(self) -> int:
        return self.index.numel()

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...): the real tokens' rows."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(N, ...) -> (B, T, ...), `fill` on the padding."""
        b, t = self.mask.shape
        out = x.new_full((b * t, *x.shape[1:]), fill)
        return out.index_copy(0, self.index, x).view(b, t, *x.shape[1:])

    def with_bias(self, bias: Optional[torch.Tensor]) -> "Packing":
        return dataclasses.replace(self, bias=bias)


def first_tokens(x: torch.Tensor, mask: "torch.Tensor | Packing | None") -> torch.Tensor:
    """Each sequence's first token: padded x (B, T, H) or packed x (N, H) with its Packing -> (B, 1, H)."""
    return x[mask.first].unsqueeze(1) if isinstance(mask, Packing) else x[:, :1]
