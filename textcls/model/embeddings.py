"""Token + position + segment embeddings, LayerNorm, dropout, and the factorized E -> H projection."""

from __future__ import annotations

import math

import torch
from torch import nn

from textcls.config import ModelConfig
from textcls.model.dropout import Dropout
from textcls.model.linear import Linear
from textcls.model.packing import Packing


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """(P, D) table: sin on even dimensions, cos on odd ones, interleaved (Vaswani et al. 2017)."""
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    inv_freq = torch.pow(10000.0, -torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(D/2),)
    angles = position * inv_freq  # (P, ceil(D/2))
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return table.float()


class NgramEmbedding(nn.Module):
    """Hashed n-gram embeddings: fastText's bucket trick inside the encoder's input.

    Position t gets, for each order n, the vector of the bucket that the ids t-n+1..t hash to; the
    vectors are summed. Windows that run past the start or touch padding get row 0, which stays zero.
    Ids are hashed as they come in, so masked-LM inputs never see the masked token.
    """

    PRIME = 2_147_483_647  # 2^31 - 1: h * MULT stays far below 2^63
    MULT = 1_000_003

    def __init__(self, orders: list[int], buckets: int, dim: int, pad_id: int):
        super().__init__()
        self.orders = sorted(orders)
        self.buckets = buckets
        self.pad_id = pad_id
        self.table = nn.Embedding(buckets + 1, dim, padding_idx=0)

    def bucket_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, len(orders)) bucket rows in 0..buckets (0 = no n-gram)."""
        ids = input_ids.long()
        h = ids + 1
        ok = ids != self.pad_id
        out = []
        for n in range(2, self.orders[-1] + 1):
            k = n - 1
            prev = torch.full_like(ids, self.pad_id)
            if k < ids.shape[1]:
                prev[:, k:] = ids[:, :-k]  # the id k positions back
            h = (h * self.MULT + prev + 1) % self.PRIME
            ok = ok & (prev != self.pad_id)
            if n in self.orders:
                out.append(torch.where(ok, h % self.buckets + 1, torch.zeros_like(h)))
        return torch.stack(out, dim=-1)

    def forward(self, input_ids: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, E); with `packing`, the real tokens' vectors only: (N, E)."""
        buckets = self.bucket_ids(input_ids)  # (B, T, k): windows read their own row, padded or not
        return self.table(buckets if packing is None else packing.pack(buckets)).sum(dim=-2)


class Embeddings(nn.Module):
    """input ids (B, T) -> hidden states (B, T, H); with a Packing, the real tokens only, packed: (N, H).

    word (V, E) (or (V, r) -> Linear(r, E) with `embeddings.word_rank`) [+ hashed n-grams (N, E)]
    [+ position (P, E)] [+ segment (S, E)] -> LayerNorm(E) -> dropout
    -> Linear(E, H) when E != H (ALBERT's factorization), else Identity.

    Position t reads row `position_offset + t` (RoBERTa's positions start after its padding index, at 2).
    A one-row segment table (RoBERTa's type_vocab_size 1) adds that row to every token, whatever the
    token types say; with type_vocab_size 0 there are no segment embeddings (DistilBERT).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, pad_id: int = 0):
        super().__init__()
        e = cfg.embedding_size or cfg.hidden_size
        self.embedding_size = e
        self.scale = math.sqrt(e) if cfg.scale_embeddings else 1.0
        rank = cfg.embeddings.word_rank
        self.word = nn.Embedding(vocab_size, rank or e, padding_idx=pad_id)
        self.word_project = Linear(rank, e) if rank else None  # a low-rank word table: (V, r) -> (V, E)
        ngrams = cfg.embeddings.ngram_orders
        self.ngram = NgramEmbedding(ngrams, cfg.embeddings.ngram_buckets, e, pad_id) if ngrams else None
        if cfg.position == "learned":
            self.position = nn.Embedding(cfg.max_positions, e)
        else:
            self.position = None
        if cfg.position == "sinusoidal":
            # The table's values have RMS 1/sqrt(2); scaled to the word vectors' initial RMS so that
            # positions do not drown the tokens (at std 0.02 the words were 1/35 of the sum and
            # nothing trained). With scale_embeddings and std E^-0.5 this is Vaswani et al.'s balance.
            self.position_scale = cfg.initializer_range * math.sqrt(2) * self.scale
            table = sinusoidal_table(cfg.max_positions, e) * self.position_scale
            self.register_buffer("sinusoidal", table, persistent=False)
        self.segment = nn.Embedding(cfg.type_vocab_size, e) if cfg.type_vocab_size > 0 else None
        self.norm = nn.LayerNorm(e, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.dropout)
        self.project = Linear(e, cfg.hidden_size) if e != cfg.hidden_size else nn.Identity()
        self.kind = cfg.position
        self.position_offset = cfg.position_offset

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                packing: Packing | None = None) -> torch.Tensor:
        pack = (lambda t: t) if packing is None else packing.pack
        x = self.word(pack(input_ids))  # (B, T, E), or packed (N, E); (.., r) at a low rank
        if self.word_project is not None:
            x = self.word_project(x)
        x = x * self.scale
        if self.ngram is not None:
            x = x + self.ngram(input_ids, packing)
        o = self.position_offset
        # Positions restart at each sequence: a packed token reads the row of its place in its own sequence.
        rows = slice(o, o + input_ids.shape[1]) if packing is None else packing.positions + o  # (T,) or (N,)
        if self.position is not None:
            x = x + self.position.weight[rows]
        elif self.kind == "sinusoidal":
            x = x + self.sinusoidal[rows].to(x.dtype)
        if self.segment is not None:
            if token_type_ids is None or self.segment.num_embeddings == 1:
                x = x + self.segment.weight[0]
            else:
                x = x + self.segment(pack(token_type_ids))
        x = self.dropout(self.norm(x))
        return self.project(x)  # (B, T, H), or packed (N, H)
