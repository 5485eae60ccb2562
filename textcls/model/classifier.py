"""The text classifier: embeddings -> shareable encoder -> pooling -> dropout + linear -> logits.

With `model.padding_free` the forward pass packs each padded batch's real tokens (textcls/model/packing.py)
and runs embeddings, encoder and pooling on them; the weights and their keys are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from textcls.config import ModelConfig
from textcls.model.adapters import build_side
from textcls.model.dropout import Dropout
from textcls.model.embeddings import Embeddings
from textcls.model.encoder import Encoder
from textcls.model.linear import Linear
from textcls.model.packing import Packing
from textcls.model.pooling import FIRST_TOKEN_POOLINGS, Pooler, token_mean


@dataclass
class EncoderOutput:
    hidden: list[torch.Tensor]  # per depth (all, or the last only), each (B, T, H), or (N, H) packed
    attentions: list[torch.Tensor]  # per depth (B, heads, T, T) when requested
    first_only: bool = False  # the last depth holds each sequence's first token alone: (B, 1, H)


class TextClassifier(nn.Module):
    """Returns logits (B, num_labels); the training loop owns the loss."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_labels: int, pad_id: int = 0):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg, vocab_size, pad_id)
        self.encoder = Encoder(cfg)
        self.side = build_side(cfg)  # K-Adapter side network, or a pass-through without keys
        self.pooler = Pooler(cfg.pooling, cfg.hidden_size)
        drop = cfg.dropout if cfg.classifier_dropout is None else cfg.classifier_dropout
        self.head_dropout = Dropout(drop)
        self.head = Linear(cfg.hidden_size, num_labels)
        self.padding_free = cfg.padding_free  # how batches run, not a weight: no state-dict key
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.cfg.initializer_range
        reset = getattr(module, "reset_near_identity", None)
        if reset is not None:  # adapters: `apply` visits children first, so this overrides their draw
            reset()
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | Packing | None = None,
               token_type_ids: torch.Tensor | None = None, need_weights: bool = False,
               return_all: bool = False, first_only: bool = False) -> EncoderOutput:
        """Hidden states (B, T, H) per depth; with a Packing of the padded batch for `attention_mask`, the
        real tokens' states packed: (N, H). `first_only`: the last depth's first tokens alone, (B, 1, H)."""
        packing = attention_mask if isinstance(attention_mask, Packing) else None
        x = self.embeddings(input_ids, token_type_ids, packing)  # (B, T, H) or (N, H)
        hidden, probs = self.encoder(x, attention_mask, need_weights, return_all, first_only)
        return EncoderOutput(hidden, probs, first_only)

    def pool(self, out: EncoderOutput, attention_mask: torch.Tensor | Packing) -> torch.Tensor:
        if out.first_only:  # (B, 1, H): the rows [CLS] pooling reads, already apart
            return self.pooler.from_first(out.hidden[-1][:, 0])
        k = self.cfg.pool_layers
        # Pre-norm layers output the un-normalized residual stream: each pooled one gets the final norm
        # (the last already has it; post-norm's final norm is the identity).
        norm = self.encoder.final_norm
        x = out.hidden[-1] if k == 1 else torch.stack([*map(norm, out.hidden[-k:-1]), out.hidden[-1]]).sum(0)
        x = self.side(x, out.hidden, attention_mask)  # (B, T, H)
        return self.pooler(x, attention_mask)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled vector the head reads: (B, H)."""
        return self.features_and_means(input_ids, attention_mask, token_type_ids)[0]

    def features_and_means(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           token_type_ids: torch.Tensor | None = None,
                           depths: Sequence[int] = ()) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(the pooled vector the head reads (B, H), the mean over each text's tokens of the hidden states after
        each of `depths` (1-based; a pre-norm model's with the final norm, as pooling reads them) (B, len(depths),
        H), or None without depths), from one pass."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        return_all = bool(depths) or self.cfg.pool_layers > 1 or self.side.reads_all_depths
        mask = Packing.from_mask(attention_mask) if self.padding_free else attention_mask
        # [CLS] pooling reads one row of the last depth: the other rows' feed-forward is not computed
        first_only = not return_all and self.pooler.kind in FIRST_TOKEN_POOLINGS
        out = self.encode(input_ids, mask, token_type_ids, return_all=return_all, first_only=first_only)
        pooled = self.pool(out, mask)  # (B, H)
        if not depths:
            return pooled, None
        norm, last = self.encoder.final_norm, self.cfg.num_layers
        states = [out.hidden[d - 1] if d == last else norm(out.hidden[d - 1]) for d in depths]
        return pooled, torch.stack([token_mean(x, mask) for x in states], 1)  # (B, P, H)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        pooled = self.features(input_ids, attention_mask, token_type_ids)  # (B, H)
        return self.head(self.head_dropout(pooled))  # (B, num_labels)

