"""How many optimizer steps a run takes: one function shared by the loop and `textcls schedule`.

The count depends on the data (number of length-bucketed batches per epoch), on gradient
accumulation (the last, shorter group of an epoch is one step too) and on `epochs` / `max_steps`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from textcls.config import Config, TrainConfig
from textcls.data.batching import BucketSampler
from textcls.errors import DataError


@dataclass(frozen=True)
class StepPlan:
    batches_per_epoch: int  # micro-batches
    steps_per_epoch: int  # optimizer steps
    total_steps: int


STATIC_MULTIPLE = 16  # `train.compile: static` without `pad_to_multiple_of`: max_length / 16 lengths at most


def pad_multiple(cfg: TrainConfig) -> Optional[int]:
    """What training batches are padded to a multiple of: `pad_to_multiple_of`, or STATIC_MULTIPLE under
    `compile: static` (a graph per shape: few shapes), else None (the longest row)."""
    return cfg.pad_to_multiple_of or (STATIC_MULTIPLE if cfg.compile == "static" else None)


def train_sampler(lengths: np.ndarray, cfg: TrainConfig) -> BucketSampler:
    """The sampler the loop draws training batches from (order is pure in (seed, epoch))."""
    return BucketSampler(lengths, cfg.batch_size, cfg.batch_tokens, shuffle=True, seed=cfg.seed,
                         multiple_of=pad_multiple(cfg))


def plan_steps(cfg: TrainConfig, batches_per_epoch: int, world_size: int = 1) -> StepPlan:
    """`max_steps` when set, else ceil(epochs * steps per epoch); at least one step.

    Under torchrun one optimizer step consumes grad_accum x world_size sampler batches."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / (cfg.grad_accum * world_size)))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    return StepPlan(batches_per_epoch, steps_per_epoch, total)


def plan_from_lengths(cfg: TrainConfig, lengths: np.ndarray, world_size: int = 1) -> StepPlan:
    """The step plan of a training set given its token lengths (the Arrow `length` column)."""
    return plan_steps(cfg, len(train_sampler(lengths, cfg)), world_size)


def plan_for_config(cfg: Config) -> StepPlan:
    """The step plan of a fresh `textcls train` with this config: prepares (tokenizes, caches) the
    training data exactly as the loop does and counts its batches."""
    from textcls.data.batching import lengths_of
    from textcls.data.pipeline import prepare_data
    from textcls.data.tokenizer import load_tokenizer
    from textcls.run.bases import with_base
    from textcls.run.layout import TOKENIZER

    if not cfg.data.train:
        raise DataError("the number of steps comes from the training data, and the config sets no `data.train`; "
                        "set it, or give the total with --steps N")
    cfg = with_base(cfg)
    tokenizer = load_tokenizer(Path(cfg.model.init_from) / TOKENIZER) if cfg.model.init_from else None
    data = prepare_data(cfg, tokenizer)
    return plan_from_lengths(cfg.train, lengths_of(data.train))
