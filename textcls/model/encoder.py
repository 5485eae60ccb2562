"""The shareable encoder: U unique blocks stored once, and a depth schedule of length L.

`sharing.strategy` maps depth i to a unique index: none -> i, all -> 0, sequence(k) -> i // k,
cycle(n) -> i % n. `sharing.share` says which sub-block follows that map: `all` (both),
`attention` (attention shared, FFN per depth) or `ffn` (FFN shared, attention per depth).
Unique blocks live in `ModuleList`s, so the state dict holds each tensor once under a stable key
(`encoder.attention.{u}.*`, `encoder.ffn.{u}.*`); adapters are indexed by depth.
"""

from __future__ import annotations

import torch
from torch import nn

from textcls.config import ModelConfig, SharingConfig
from textcls.model.adapters import build_adapters
from textcls.model.attention import attention_bias
from textcls.model.layer import AttentionBlock, FeedForwardBlock
from textcls.model.packing import Packing


def depth_schedule(sharing: SharingConfig, num_layers: int) -> list[int]:
    """The unique layer each depth runs."""
    if sharing.strategy == "all":
        return [0] * num_layers
    if sharing.strategy == "sequence":
        return [i // sharing.group_size for i in range(num_layers)]
    if sharing.strategy == "cycle":
        return [i % sharing.num_unique for i in range(num_layers)]
    return list(range(num_layers))


def block_schedules(sharing: SharingConfig, num_layers: int) -> tuple[list[int], list[int]]:
    """(attention schedule, FFN schedule): the sub-block not named by `share` stays per depth."""
    shared = depth_schedule(sharing, num_layers)
    own = list(range(num_layers))
    if sharing.share == "attention":
        return shared, own
    if sharing.share == "ffn":
        return own, shared
    return shared, shared


class Encoder(nn.Module):
    """(B, T, H) hidden states + (B, T) bool mask -> list of per-depth outputs, each (B, T, H); or packed
    (N, H) hidden states + their Packing -> per-depth (N, H) (textcls/model/packing.py)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.hidden_size
        pre = cfg.norm == "pre"
        attn_dropout = cfg.dropout if cfg.attention_dropout is None else cfg.attention_dropout
        self.attention_schedule, self.ffn_schedule = block_schedules(cfg.sharing, cfg.num_layers)
        self.attention = nn.ModuleList(
            AttentionBlock(h, cfg.num_heads, attn_dropout, cfg.dropout, cfg.layer_norm_eps, pre)
            for _ in range(max(self.attention_schedule) + 1)
        )
        self.ffn = nn.ModuleList(
            FeedForwardBlock(h, cfg.intermediate_size, cfg.activation, cfg.dropout, cfg.layer_norm_eps, pre)
            for _ in range(max(self.ffn_schedule) + 1)
        )
        self.adapters = build_adapters(cfg)
        self.final_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps) if pre else nn.Identity()
        self.causal = cfg.causal
        self.num_layers = cfg.num_layers
        # Pairs of (attention block, FFN block) per depth, resolved once, not per step.
        self._plan = list(zip(self.attention_schedule, self.ffn_schedule))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | Packing | None, need_weights: bool = False,
                return_all: bool = False, first_only: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Hidden states after the last depth (each depth with `return_all`), and attention probabilities with
        `need_weights`. `first_only`: the last depth computes each sequence's first token alone, (B, 1, H), which
        is all that [CLS] pooling reads: its output projection, feed-forward and queries skip the other tokens."""
        if first_only and return_all:
            raise ValueError("first_only leaves the last depth's other tokens uncomputed; return_all needs them")
        mask = attention_bias(attention_mask, self.causal, x.shape[1], x.device)
        hidden: list[torch.Tensor] = []
        probs: list[torch.Tensor] = []
        last = self.num_layers - 1
        for depth, (a, f) in enumerate(self._plan):
            first = first_only and depth == last
            x, p = self.attention[a](x, mask, self.adapters.attention[depth], need_weights, first)
            x = self.ffn[f](x, self.adapters.ffn[depth])
            if need_weights:
                probs.append(p)
            if return_all or depth == last:
                hidden.append(x)
        hidden[-1] = self.final_norm(hidden[-1])
        return hidden, probs
