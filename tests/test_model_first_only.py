"""[CLS] pooling computes the last depth for the first token alone: the same logits and gradients as the full
last depth, padded or packed, for every first-token pooling, norm, sharing, adapters and causal masks."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model
from textcls.config import config_from_dict
from textcls.model import TextClassifier
from textcls.model.pooling import FIRST_TOKEN_POOLINGS

V, C = 50, 3


def build(**extra) -> TextClassifier:
    torch.manual_seed(0)
    cfg = config_from_dict({"model": tiny_model(num_layers=3, **extra), "data": {"max_length": 48}}).model
    return TextClassifier(cfg, V, C)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, V, (4, 11), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 2:] = False
    mask[3, 1:] = False  # a text of one token
    return ids.masked_fill(~mask, 0), mask


def full_depth_logits(model: TextClassifier, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference: every token through every depth, then pooling."""
    out = model.encode(ids, mask, return_all=True)
    assert not out.first_only and out.hidden[-1].shape[:2] == ids.shape
    return model.head(model.pool(out, mask))


CASES = [
    {"pooling": p} for p in FIRST_TOKEN_POOLINGS
] + [
    {"norm": "pre"},
    {"causal": True},
    {"padding_free": True},
    {"padding_free": True, "pooling": "cls_tanh", "norm": "pre"},
    {"sharing": {"strategy": "all"}, "embedding_size": 16},
    {"adapters": {"enabled": True, "size": 8}},
]


@pytest.mark.parametrize("extra", CASES, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_first_token_last_depth_equals_the_full_last_depth(extra):
    model = build(**extra).train()  # dropout 0: training mode, deterministic
    ids, mask = batch()
    fast = model(ids, mask)
    slow = full_depth_logits(model, ids, mask)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(fast)
    params = [p for p in model.parameters() if p.requires_grad]
    fast_grads = torch.autograd.grad(fast, params, g, allow_unused=True)
    slow_grads = torch.autograd.grad(slow, params, g, allow_unused=True)
    for (name, _), a, b in zip(model.named_parameters(), fast_grads, slow_grads):
        if a is None or b is None:  # parameters the output does not reach (e.g. unused embedding rows)
            assert a is None and b is None or torch.count_nonzero(a if a is not None else b) == 0, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_the_last_feed_forward_sees_one_row_per_text():
    model = build(pooling="cls_tanh").eval()
    seen: list[tuple[int, ...]] = []
    last_ffn = model.encoder.ffn[model.encoder.ffn_schedule[-1]]
    handle = last_ffn.up.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    ids, mask = batch()
    with torch.no_grad():
        model(ids, mask)
    handle.remove()
    assert seen[-1][:-1] == (4, 1)  # B texts x 1 row, not B x T


@pytest.mark.parametrize("extra", [{"pooling": "mean"}, {"pooling": "max"}, {"pooling": "last"},
                                   {"pool_layers": 2}, {"adapters": {"enabled": True, "style": "side", "size": 8}}])
def test_poolings_that_read_every_row_keep_the_full_last_depth(extra):
    model = build(**extra).eval()
    seen: list[tuple[int, ...]] = []
    last_ffn = model.encoder.ffn[model.encoder.ffn_schedule[-1]]
    handle = last_ffn.up.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    ids, mask = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), full_depth_logits(model, ids, mask))
    handle.remove()
    assert seen[-1][:-1] == (4, 11)


def test_first_only_cannot_return_every_depth():
    model = build().eval()
    ids, mask = batch()
    with pytest.raises(ValueError, match="return_all"):
        model.encode(ids, mask, return_all=True, first_only=True)
