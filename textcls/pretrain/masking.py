"""BERT masking: choose `mlm_probability` of the tokens, then 80% [MASK] / 10% random / 10% unchanged.

Special tokens ([CLS], [SEP], [PAD], [MASK]) and padding are never chosen. With whole-word masking
words are chosen, and every piece of a chosen word is predicted. Randomness comes from the numpy
`Generator` passed in, which the loop derives from (seed, epoch, batch), so resume is exact.
"""

from __future__ import annotations

import numpy as np
import torch

from textcls.config import PretrainConfig
from textcls.pretrain.packing import IGNORE


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, starts: np.ndarray | None,
                cfg: PretrainConfig, rng: np.random.Generator, mask_id: int, special_ids: list[int],
                vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input ids (B, T) -> (masked inputs (B, T), labels (B, T): the original id where chosen, else -100).

    `starts` (B, T) marks the first piece of each word; it is used with `cfg.whole_word_mask`.
    Random replacements are drawn from the non-special ids (above the largest special id).
    """
    ids = input_ids.numpy()
    maskable = attention_mask.numpy() & ~np.isin(ids, special_ids)  # (B, T)
    draw = rng.random(ids.shape)  # (B, T) selection draw
    how = rng.random(ids.shape)  # (B, T) mask / random / keep draw
    random_ids = rng.integers(max(special_ids) + 1, vocab_size, ids.shape)
    if cfg.whole_word_mask and starts is not None:
        # A word starts at a marked piece, at a special or pad token, and right after one.
        blocked = ~maskable
        after_blocked = np.concatenate([np.ones_like(blocked[:, :1]), blocked[:, :-1]], axis=1)
        begins = starts | blocked | after_blocked
        positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        word_start = np.maximum.accumulate(np.where(begins, positions, 0), axis=1)  # (B, T)
        draw = np.take_along_axis(draw, word_start, axis=1)  # each piece takes its word's draw
    chosen = maskable & (draw < cfg.mlm_probability)
    to_mask = chosen & (how < cfg.mask_fraction)
    to_random = chosen & (how >= cfg.mask_fraction) & (how < cfg.mask_fraction + cfg.random_fraction)
    inputs = np.where(to_mask, mask_id, np.where(to_random, random_ids, ids))
    labels = np.where(chosen, ids, IGNORE)
    return torch.from_numpy(inputs.astype(np.int64)), torch.from_numpy(labels.astype(np.int64))


def batch_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The masking generator of one training micro-batch: a pure function of its place in training."""
    return np.random.default_rng([seed, 1, epoch, position])


def valid_rng(seed: int, batch: int) -> np.random.Generator:
    """The same masks at every evaluation, so held-out losses are comparable over time."""
    return np.random.default_rng([seed, 2, batch])
