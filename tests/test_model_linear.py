"""fp32 Linear layers through oneDNN's inner product on the CPU: the same values and gradients as F.linear,
F.linear wherever the kernel does not apply, and the model's layers really taking it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from textcls.config import ModelConfig
from textcls.model import TextClassifier
from textcls.model import linear as linear_module
from textcls.model.linear import Linear, linear, uses_onednn

needs_onednn = pytest.mark.skipif(linear_module._op is None, reason="this PyTorch has no oneDNN")


def _compare(x, w, b):
    """linear and F.linear on copies of the same leaves: (max |dy|, max |d grad| per leaf, linear's output)."""
    leaves = [t for t in (x, w, b) if t is not None]
    ours, theirs = ([t.detach().clone().requires_grad_() for t in leaves] for _ in range(2))
    y1 = linear(*ours, *([None] if b is None else []))
    y2 = F.linear(*theirs, *([None] if b is None else []))
    g = torch.randn_like(y2)
    y1.backward(g)
    y2.backward(g)
    return (y1 - y2).abs().max().item(), [(a.grad - c.grad).abs().max().item() for a, c in zip(ours, theirs)], y1


@needs_onednn
@pytest.mark.parametrize("shape", [(3, 32), (4, 9, 32), (2, 3, 5, 32)])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_equal_f_linear(shape, bias):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w, b = torch.randn(48, 32, requires_grad=True), torch.randn(48, requires_grad=True) if bias else None
    assert uses_onednn(x, w)
    dy, grads, y = _compare(x, w, b)
    assert y.grad_fn is not None and "InnerProduct" in type(y.grad_fn).__name__
    assert y.shape == shape[:-1] + (48,)
    assert dy < 1e-4 and max(grads) < 1e-4, (dy, grads)


@needs_onednn
def test_strided_inputs_and_frozen_weights():
    torch.manual_seed(1)
    wide = torch.randn(4, 9, 64, requires_grad=True)
    x = wide[..., ::2]  # non-contiguous (B, T, 32), a view with a grad_fn
    w, b = torch.randn(16, 32), torch.randn(16)  # frozen: only x's gradient is asked for
    y = linear(x, w, b)
    (y * torch.arange(16.0)).sum().backward()
    reference = wide.detach().clone().requires_grad_()
    (F.linear(reference[..., ::2], w, b) * torch.arange(16.0)).sum().backward()
    assert (wide.grad - reference.grad).abs().max() < 1e-4
    assert w.grad is None and b.grad is None

    first = torch.randn(4, 9, 32)[:, :1]  # the first-token slice the last layer takes
    assert (linear(first, w, b) - F.linear(first, w, b)).abs().max() < 1e-4


@needs_onednn
def test_f_linear_runs_where_the_kernel_does_not_apply(monkeypatch):
    w = torch.randn(8, 4, requires_grad=True)
    x = torch.randn(3, 4)
    calls = []
    monkeypatch.setattr(linear_module, "_inner", lambda *a: calls.append(a) or F.linear(*a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, w).dtype == torch.bfloat16  # autocast's bf16 matmul, as F.linear would
    assert linear(x.double(), w.double()).dtype == torch.float64
    transposed = torch.randn(4, 8).t()  # (8, 4), not contiguous
    assert (linear(x, transposed) - x @ transposed.t()).abs().max() < 1e-5
    assert not calls
    linear(x, w)
    assert len(calls) == 1  # the contiguous fp32 case
    monkeypatch.setattr(linear_module, "enabled", False)  # TEXTCLS_CPU_LINEAR=blas
    assert not uses_onednn(x, w)
    with torch.no_grad():
        y = linear(x, w)
    assert y.grad_fn is None and len(calls) == 1


@needs_onednn
def test_inference_without_grad_builds_no_graph():
    w = torch.randn(8, 4, requires_grad=True)
    with torch.no_grad():
        y = linear(torch.randn(3, 4), w)
    assert y.grad_fn is None and not y.requires_grad and y.shape == (3, 8)


@needs_onednn
def test_the_model_computes_every_linear_through_onednn_with_the_same_result(monkeypatch):
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=16,
                      embedding_size=16, pooling="cls_tanh")
    model = TextClassifier(cfg, 50, 3).train()
    ids = torch.randint(5, 50, (4, 10))
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[1, 6:] = False

    def step():
        torch.manual_seed(1)  # the same dropout masks on both passes
        model.zero_grad(set_to_none=True)
        logits = model(ids, mask)
        logits.square().sum().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(isinstance(m, Linear) for m in layers)
    calls = []
    inner = linear_module._inner
    monkeypatch.setattr(linear_module, "_inner", lambda *a: calls.append(a[0].shape) or inner(*a))
    logits, grads = step()
    assert len(calls) >= 3 * len(layers)  # forward, dx and dW of each (the pooler and head included)
    monkeypatch.setattr(linear_module, "enabled", False)
    calls.clear()
    reference, reference_grads = step()
    assert not calls
    assert (logits - reference).abs().max() < 1e-5
    for name, grad in grads.items():
        assert (grad - reference_grads[name]).abs().max() < 1e-4, name


@needs_onednn
def test_shared_layers_train_like_f_linear_over_fused_adamw_steps(monkeypatch):
    """ALBERT sharing: each weight serves four depths, and backward keeps its transpose for the four products.
    Fused AdamW updates weights without bumping their version, so a transpose kept past the step would give
    the next step stale gradients: three steps must follow F.linear's."""
    from textcls.config import SharingConfig, TrainConfig
    from textcls.train.optim import build_optimizer

    def train(onednn: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(linear_module, "enabled", onednn)
        torch.manual_seed(0)
        cfg = ModelConfig(hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64, max_positions=16,
                          embedding_size=16, dropout=0.0, sharing=SharingConfig(strategy="all"))
        model = TextClassifier(cfg, 50, 2).train()
        optimizer = build_optimizer(model, TrainConfig(lr=1e-2))
        assert optimizer.defaults["fused"]
        ids, labels = torch.randint(5, 50, (6, 12)), torch.tensor([0, 1, 1, 0, 1, 0])
        for _ in range(3):
            loss = F.cross_entropy(model(ids, torch.ones(6, 12, dtype=torch.bool)), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if onednn:
            assert not linear_module._transposes  # nothing kept once each backward has used it
        return [p.detach().clone() for p in model.parameters()]

    for ours, reference in zip(train(True), train(False)):
        assert (ours - reference).abs().max() < 1e-4
