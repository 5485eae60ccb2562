"""Learning-rate schedules as pure functions of the optimizer step (wrapped in LambdaLR).

Each returns a multiplier of the base rate. Warmup is linear over `warmup_steps`: at step s < W
the multiplier is s / W (cosine starts from warmup_lr / lr instead of 0).
"""

from __future__ import annotations

import math
from typing import Callable

from textcls.config import TrainConfig


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    """`train.warmup` below 1 is a ratio of all steps, 1 or more is a step count."""
    if cfg.warmup < 1:
        return int(round(cfg.warmup * total_steps))
    return int(cfg.warmup)


def lr_multiplier(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    total = max(1, total_steps)
    warm = min(warmup_steps(cfg, total), total)
    base = cfg.lr
    start = cfg.warmup_lr / base if cfg.schedule == "cosine" else 0.0

    def warmup(step: int) -> float:
        return start + (1.0 - start) * step / warm

    if cfg.schedule == "constant":
        def fn(step: int) -> float:
            return warmup(step) if step < warm else 1.0
    elif cfg.schedule == "linear":
        def fn(step: int) -> float:
            if step < warm:
                return warmup(step)
            return max(0.0, (total - step) / max(1, total - warm))
    elif cfg.schedule == "polynomial":
        end = cfg.end_lr / base

        def fn(step: int) -> float:
            if step < warm:
                return warmup(step)
            frac = min(1.0, (step - warm) / max(1, total - warm))
            return (1.0 - end) * (1.0 - frac) ** cfg.power + end
    else:  # cosine with hold
        floor = cfg.min_lr / base
        hold = cfg.hold_steps

        def fn(step: int) -> float:
            if step < warm:
                return warmup(step)
            if step < warm + hold:
                return 1.0
            frac = min(1.0, (step - warm - hold) / max(1, total - warm - hold))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return fn


def lr_at(cfg: TrainConfig, total_steps: int, step: int) -> float:
    return cfg.lr * lr_multiplier(cfg, total_steps)(step)


def key_steps(cfg: TrainConfig, total_steps: int, samples: int = 12) -> list[int]:
    """Steps worth showing in a table: evenly spaced ones plus the phase boundaries
    (0, end of warmup, end of hold, the last step that updates, the end)."""
    total = max(1, total_steps)
    warm = min(warmup_steps(cfg, total), total)
    marks = {0, warm, total - 1, total}
    if warm:
        marks.add(warm // 2)
    if cfg.schedule == "cosine" and cfg.hold_steps:
        marks.add(min(total, warm + cfg.hold_steps))
    marks.update(round(i * total / samples) for i in range(samples + 1))
    return sorted(s for s in marks if 0 <= s <= total)


def phase(cfg: TrainConfig, total_steps: int, step: int) -> str:
    warm = min(warmup_steps(cfg, max(1, total_steps)), max(1, total_steps))
    if step >= total_steps:
        return "end"
    if step < warm:
        return "warmup"
    if cfg.schedule == "constant":
        return "constant"
    if cfg.schedule == "cosine" and step < warm + cfg.hold_steps:
        return "hold"
    return "decay"
