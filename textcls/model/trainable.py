"""Which parameters train: `train.trainable: all | adapters | head`, selected by parameter name.

- `all`: everything (requires_grad is left as the model set it, e.g. frozen pretrained vectors).
- `adapters`: adapters (`encoder.adapters.*`, `side.*`), every LayerNorm, the pooler and the head.
- `head`: the pooler (`cls_tanh` has weights) and the head.

The same names decide what an adapter run directory stores (see `textcls.run.load`).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

HEAD_PREFIXES = ("head.", "pooler.")


def is_adapter_param(name: str) -> bool:
    """An adapter's parameter, by name: per-depth adapters (`encoder.adapters.*`) or the side network."""
    return ".adapters." in name or name.startswith("adapters.") or name.startswith("side.")


def layer_norm_names(model: nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            names.update(f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False))
    return names


def trainable_names(model: nn.Module, mode: str) -> set[str]:
    """Names of the parameters `mode` trains (tied parameters appear once, under their first name)."""
    names = [name for name, _ in model.named_parameters()]
    if mode == "all":
        return set(names)
    if mode == "head":
        return {n for n in names if n.startswith(HEAD_PREFIXES)}
    if mode == "adapters":
        norms = layer_norm_names(model)
        return {n for n in names if n.startswith(HEAD_PREFIXES) or is_adapter_param(n) or n in norms}
    raise ValueError(f"unknown trainable mode {mode!r}")


def freeze_all_but(model: nn.Module, predicate: Callable[[str], bool]) -> list[str]:
    """Set requires_grad=False on every parameter whose name fails `predicate`; returns the names
    that still train. Parameters that pass keep their flag (a frozen embedding stays frozen)."""
    for name, p in model.named_parameters():
        if not predicate(name):
            p.requires_grad_(False)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def apply_trainable(model: nn.Module, mode: str) -> set[str]:
    """Freeze what `mode` does not train; returns `trainable_names(model, mode)`."""
    keep = trainable_names(model, mode)
    if mode != "all":
        freeze_all_but(model, keep.__contains__)
    return keep


def count_trainable(model: nn.Module, mode: str | None = None) -> tuple[int, int]:
    """(trainable, total) unique parameter counts: those with requires_grad, and, when `mode` is
    given (e.g. `textcls info` on a config), only those `mode` would train. Does not modify the model."""
    keep = None if mode is None else trainable_names(model, mode)
    total = trainable = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if p.requires_grad and (keep is None or name in keep):
            trainable += p.numel()
    return trainable, total

