"""Optimizer parameter groups: no decay on exactly the LayerNorm weights and all biases; adapters apart."""

from __future__ import annotations

import torch
from torch import nn

from conftest import tiny_model
from textcls.config import ModelConfig, TrainConfig
from textcls.model import TextClassifier
from textcls.train.optim import build_optimizer, optimizer_step, param_groups


def _names(model: nn.Module, group: dict) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in group["params"]}


def test_no_decay_group_is_exactly_layernorm_weights_and_biases():
    model = TextClassifier(ModelConfig(**tiny_model(embedding_size=16, pooling="cls_tanh")), 100, 3)
    groups = {g["name"]: g for g in param_groups(model, TrainConfig(weight_decay=0.05))}
    expected = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    expected |= {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, nn.LayerNorm)}
    assert any(".norm" in n or "norm" in n for n in expected)
    assert _names(model, groups["no_decay"]) == expected
    assert groups["no_decay"]["weight_decay"] == 0.0
    decay = _names(model, groups["decay"])
    assert decay == {n for n, _ in model.named_parameters()} - expected
    assert "embeddings.word.weight" in decay and "embeddings.project.weight" in decay
    assert groups["decay"]["weight_decay"] == 0.05
    assert "adapter_decay" not in groups


class _Adapter(nn.Module):
    def __init__(self):
        super().__init__()
        self.down, self.up, self.norm = nn.Linear(8, 2), nn.Linear(2, 8), nn.LayerNorm(8)


class _WithAdapters(nn.Module):
    """Parameter names like the real model's: `encoder.adapters.attention.0.down.weight`."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layer = nn.Linear(8, 8)
        self.encoder.norm = nn.LayerNorm(8)
        self.encoder.adapters = nn.Module()
        self.encoder.adapters.attention = nn.ModuleList([_Adapter(), _Adapter()])
        self.head = nn.Linear(8, 2)


def test_adapter_group_uses_adapter_weight_decay():
    model = _WithAdapters()
    cfg = TrainConfig(weight_decay=0.01, adapter_weight_decay=0.5, lr=1e-3, betas=[0.8, 0.9], eps=1e-6)
    opt = build_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert _names(model, groups["adapter_decay"]) == {
        f"encoder.adapters.attention.{i}.{m}.weight" for i in (0, 1) for m in ("down", "up")}
    assert groups["adapter_decay"]["weight_decay"] == 0.5
    no_decay = _names(model, groups["no_decay"])
    assert "encoder.adapters.attention.1.down.bias" in no_decay  # biases never decay, adapter or not
    assert "encoder.adapters.attention.0.norm.weight" in no_decay
    assert _names(model, groups["decay"]) == {"encoder.layer.weight", "head.weight"}
    assert groups["decay"]["betas"] == (0.8, 0.9) and groups["decay"]["eps"] == 1e-6
    # unset adapter_weight_decay falls back to weight_decay
    fallback = {g["name"]: g for g in param_groups(model, TrainConfig(weight_decay=0.01))}
    assert fallback["adapter_decay"]["weight_decay"] == 0.01


def test_frozen_parameters_are_left_out():
    model = _WithAdapters()
    model.encoder.layer.weight.requires_grad_(False)
    names = set().union(*(_names(model, g) for g in param_groups(model, TrainConfig())))
    assert "encoder.layer.weight" not in names and "head.weight" in names


def test_weight_decay_is_applied_only_to_the_decay_group():
    model = _WithAdapters()
    for p in model.parameters():
        nn.init.constant_(p, 1.0)
    opt = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.5, adapter_weight_decay=0.0))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only decoupled weight decay moves parameters
    assert torch.allclose(model.head.weight, torch.full_like(model.head.weight, 1 - 0.1 * 0.5))
    assert torch.equal(model.head.bias, torch.ones_like(model.head.bias))
    assert torch.equal(model.encoder.adapters.attention[0].down.weight, torch.ones(2, 8))


def test_optimizer_step_clips_the_global_gradient_norm():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.weight.grad = torch.tensor([[3.0, 4.0]])  # norm 5
    optimizer_step(model, opt, max_grad_norm=1.0)
    assert torch.allclose(model.weight, torch.tensor([[-0.6, -0.8]]))  # the step used the gradient scaled to norm 1
    assert model.weight.grad is None  # cleared for the next accumulation
