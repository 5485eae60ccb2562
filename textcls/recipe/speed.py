"""What the automatic recipe measures about the machine: cores, GPU, bf16, and the seconds one training
step of a candidate model takes here (a fraction of a second of real steps on random tokens)."""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import torch

from textcls.config import ModelConfig, TrainConfig
from textcls.device import cpu_has_bf16
from textcls.recipe.rules import Candidate, Machine

MEASURE_SECONDS = 0.6  # per candidate, after two warm-up steps


def this_machine(device: str = "auto") -> Machine:
    """The device training will use (`train.device: auto`), the cores this process may use, native bf16."""
    cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda:")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cuda:
        return Machine("cuda", cores, torch.cuda.is_bf16_supported())
    return Machine("cpu", cores, cpu_has_bf16())


def step_timer(machine: Machine, vocab_size: int, num_labels: int,
               base_model: Optional[ModelConfig] = None, threads: int = 1) -> Callable[[Candidate], float]:
    """`step_seconds(candidate)` for auto_recipe: measured once per candidate, on `threads` CPU threads (one for
    auto_recipe, which scales to more threads itself) or on the GPU."""
    cache: dict[tuple, float] = {}

    def step_seconds(candidate: Candidate) -> float:
        key = (candidate.name, candidate.batch_size, candidate.length, candidate.precision)
        if key not in cache:
            model_cfg = base_model if candidate.model is None else _model_config(candidate)
            cache[key] = _measure(model_cfg, vocab_size, num_labels, candidate, machine, threads)
        return cache[key]
    return step_seconds


def _model_config(candidate: Candidate) -> ModelConfig:
    from textcls.config import config_from_dict

    model = {**candidate.model, "max_positions": max(candidate.length, 32), "pooling": "mean", "dropout": 0.1}
    data = {"max_length": model["max_positions"]}  # a timing model: its own length, not the default's
    return config_from_dict({"model": model, "data": data}, source="the automatic recipe's candidate").model


def _measure(model_cfg: ModelConfig, vocab_size: int, num_labels: int, c: Candidate, machine: Machine,
             threads: int = 1) -> float:
    from textcls.device import autocast_context
    from textcls.model.classifier import TextClassifier
    from textcls.train.optim import build_optimizer

    device = torch.device("cuda" if machine.device == "cuda" else "cpu")
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = TextClassifier(model_cfg, vocab_size, num_labels, 0).to(device)
        optimizer = build_optimizer(model, TrainConfig())
        ids = torch.randint(5, vocab_size, (c.batch_size, c.length), device=device)
        mask = torch.ones_like(ids, dtype=torch.bool)
        labels = torch.randint(0, num_labels, (c.batch_size,), device=device)

        def step() -> None:
            with autocast_context(device, c.precision):
                logits = model(ids, mask, None)
            torch.nn.functional.cross_entropy(logits.float(), labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(2):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        started, steps = time.perf_counter(), 0
        while steps < 3 or time.perf_counter() - started < MEASURE_SECONDS:
            step()
            steps += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
        return (time.perf_counter() - started) / steps
    finally:
        torch.set_num_threads(before)
