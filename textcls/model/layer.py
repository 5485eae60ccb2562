"""The two sub-blocks of a transformer layer, each with its residual and LayerNorm.

A layer at depth d is `FeedForwardBlock(AttentionBlock(x))`. The blocks are separate modules so
that sharing can apply to one of them only (ALBERT's attention-only / FFN-only ablation). Each
block takes the depth's adapter as an argument: adapters belong to depths, blocks may be shared.
Everything but the attention itself is per token, so the blocks take packed (N, H) rows as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from textcls.model.attention import SelfAttention
from textcls.model.dropout import Dropout
from textcls.model.linear import Linear
from textcls.model.packing import Packing, first_tokens

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
}


class AttentionBlock(nn.Module):
    """post-norm: LN(x + adapter(drop(Wo attn(x)))); pre-norm: x + adapter(drop(Wo attn(LN(x))))."""

    def __init__(self, hidden_size: int, num_heads: int, attention_dropout: float, dropout: float,
                 eps: float, pre_norm: bool):
        super().__init__()
        self.attention = SelfAttention(hidden_size, num_heads, attention_dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | Packing | None, adapter: nn.Module,
                need_weights: bool = False, first_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`first_only`: the first token's output alone, (B, 1, H) (SelfAttention.forward)."""
        h = self.norm(x) if self.pre_norm else x
        h, probs = self.attention(h, mask, need_weights, first_only)
        if first_only:
            x = first_tokens(x, mask)  # (B, 1, H)
        x = x + adapter(self.dropout(h))
        return (x if self.pre_norm else self.norm(x)), probs


class FeedForwardBlock(nn.Module):
    """H -> I -> H with an activation; residual and LayerNorm as in AttentionBlock."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str, dropout: float,
                 eps: float, pre_norm: bool):
        super().__init__()
        self.up = Linear(hidden_size, intermediate_size)
        self.down = Linear(intermediate_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = Dropout(dropout)
        self.act = ACTIVATIONS[activation]
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
        h = self.norm(x) if self.pre_norm else x
        h = self.down(self.act(self.up(h)))
        x = x + adapter(self.dropout(h))
        return x if self.pre_norm else self.norm(x)
