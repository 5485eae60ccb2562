"""Input noise for training: word dropout (Iyyer et al. 2015), as token replacement by [UNK]."""

from __future__ import annotations

import torch


def drop_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, p: float, replace_id: int,
                keep_ids: tuple[int, ...]) -> torch.Tensor:
    """(B, T) ids with each real token not in `keep_ids` replaced by `replace_id` with probability p.

    Replacing instead of deleting keeps positions and padding as they were; with [UNK] as the
    replacement the model also learns what to make of words it has never seen. Uses the global
    torch RNG, which `last/` saves, so a resumed run draws the same masks.
    """
    if p <= 0:
        return input_ids
    hit = (torch.rand(input_ids.shape, device=input_ids.device) < p) & attention_mask  # (B, T)
    for keep in keep_ids:
        hit &= input_ids != keep
    return input_ids.masked_fill(hit, replace_id)
