"""The pretraining model: the classifier's embeddings + encoder, an MLM head and an optional SOP head.

State-dict keys: `embeddings.*` and `encoder.*` exactly as in `TextClassifier` (so `model.init_from`
loads them), `mlm.*` for the MLM head, and with SOP `pooler.*` (the classifier's pooler, which SOP
trains) and `sop.*`. The MLM output layer is the input token embedding itself: the head holds a
reference to `embeddings.word` without registering it, so the weight is one tensor with one key.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from textcls.config import ModelConfig
from textcls.model.classifier import TextClassifier
from textcls.model.embeddings import Embeddings
from textcls.model.encoder import Encoder
from textcls.model.layer import ACTIVATIONS
from textcls.model.pooling import Pooler


class MLMHead(nn.Module):
    """hidden (N, H) -> vocabulary logits (N, V): Linear(H, E) -> activation -> LayerNorm(E) -> tied output.

    Projecting H -> E first is what lets the output layer be the (V, E) input embedding when E != H
    (ALBERT's factorized embeddings).
    """

    def __init__(self, cfg: ModelConfig, word: nn.Embedding):
        super().__init__()
        e = word.embedding_dim
        self.dense = nn.Linear(cfg.hidden_size, e)
        self.act = ACTIVATIONS[cfg.activation]
        self.norm = nn.LayerNorm(e, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(word.num_embeddings))
        self._word = (word,)  # a tuple keeps the embedding out of this module's parameters and keys

    @property
    def weight(self) -> nn.Parameter:
        """The output weight (V, E): the input token embedding, shared storage."""
        return self._word[0].weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.act(self.dense(hidden)))  # (N, E)
        return F.linear(x, self.weight, self.bias)  # (N, V)


class PretrainModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, pad_id: int = 0, sop: bool = False):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg, vocab_size, pad_id)
        self.encoder = Encoder(cfg)
        self.mlm = MLMHead(cfg, self.embeddings.word)
        if sop:
            self.pooler = Pooler(cfg.pooling, cfg.hidden_size)
            self.sop = nn.Linear(cfg.hidden_size, 2)
        self.has_sop = sop
        self.apply(functools.partial(TextClassifier._init_weights, self))  # the classifier's initialisation

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                mlm_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (MLM logits (N, V) at the N positions whose label is not -100, SOP logits (B, 2) or None)."""
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        hidden, _ = self.encoder(x, attention_mask)
        h = hidden[-1]  # (B, T, H)
        mlm_logits = self.mlm(h[mlm_labels != -100])  # only the chosen positions pay for the V-sized output
        sop_logits = self.sop(self.pooler(h, attention_mask)) if self.has_sop else None
        return mlm_logits, sop_logits
