"""The CPU dropout with cheap masks, and attention written out for CPU training with attention dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from textcls.model.attention import SelfAttention, attention_bias
from textcls.model.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_keeps_one_minus_p_in_every_lane(p):
    torch.manual_seed(0)
    n = 400_000
    mask = keep_mask((n,), p)
    assert mask.dtype == torch.bool and mask.shape == (n,)
    # each 64-bit draw feeds four consecutive elements: a biased bit in one lane would show in its column
    lanes = mask.view(-1, 4).float().mean(0)
    sigma = (p * (1 - p) / (n / 4)) ** 0.5
    assert torch.all((lanes - (1 - p)).abs() < 5 * sigma), (lanes, 1 - p)


def test_keep_mask_follows_the_seed_and_changes_between_calls():
    torch.manual_seed(3)
    a, b = keep_mask((7, 13), 0.3), keep_mask((7, 13), 0.3)  # odd size: the last draw is partly used
    torch.manual_seed(3)
    assert torch.equal(keep_mask((7, 13), 0.3), a)
    assert not torch.equal(a, b)


def test_neighbouring_lanes_are_independent():
    torch.manual_seed(1)
    m = keep_mask((200_000, 4), 0.5).float()  # four lanes of one draw per row
    corr = torch.corrcoef(m.T)
    off = corr[~torch.eye(4, dtype=torch.bool)]
    assert off.abs().max() < 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_zeroes_or_scales_and_backpropagates_the_same_mask(dtype):
    torch.manual_seed(0)
    p = 0.25
    x = (torch.rand(300, 200) + 0.5).to(dtype).requires_grad_()
    y = dropout(x, p, training=True)
    assert y.dtype == dtype
    kept = y != 0
    torch.testing.assert_close(y[kept], (x[kept].float() / (1 - p)).to(dtype))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    y.sum().backward()
    expected = kept.to(dtype) / (1 - p)
    torch.testing.assert_close(x.grad, expected.to(dtype))


def test_dropout_is_identity_outside_training_or_at_zero():
    x = torch.randn(5, 6)
    assert torch.equal(dropout(x, 0.3, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_dropout_module_is_a_drop_in_for_nn_dropout():
    torch.manual_seed(0)
    module = Dropout(0.2)
    assert isinstance(module, nn.Dropout) and repr(module) == repr(nn.Dropout(0.2))
    assert module.state_dict() == {}
    x = torch.ones(1000, 100)
    out = module(x)
    assert abs(out.mean().item() - 1.0) < 0.02  # the expectation is kept
    assert set(out.unique().tolist()) == {0.0, 1.25}
    module.eval()
    assert torch.equal(module(x), x)


def _attention(p: float) -> tuple[SelfAttention, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, p)
    x = torch.randn(3, 9, 32)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 3:] = False
    return attn, x, attention_bias(mask, False, 9, x.device)


def test_written_out_attention_equals_sdpa_with_its_gradients():
    attn, x, bias = _attention(0.0)
    q, k, v = (torch.randn(3, 4, 9, 8, requires_grad=True) for _ in range(3))
    ours, probs = attn._explicit(q, k, v, bias, 0.0)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4, 9))
    assert torch.all(probs[1, :, :, 6:] == 0)  # padding keys get nothing
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    expected = torch.autograd.grad(theirs, (q, k, v), g)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cpu_training_drops_attention_probabilities_and_evaluation_does_not():
    attn, x, bias = _attention(0.5)
    attn.train()
    first, second = attn(x, bias)[0], attn(x, bias)[0]
    assert not torch.allclose(first, second)  # each pass draws its own mask
    attn.eval()
    evaluated = attn(x, bias)[0]
    torch.testing.assert_close(evaluated, attn(x, bias)[0])
    torch.manual_seed(5)
    many = torch.stack([attn.train()(x, bias)[0] for _ in range(400)]).mean(0)
    # dropout keeps the expectation: the mean of many dropped passes approaches the evaluated output
    assert (many - evaluated).abs().mean() < 0.1 * evaluated.abs().mean()
