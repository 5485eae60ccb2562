"""Checks of training options that need the data or the device (the rest is in config._validate)."""

from __future__ import annotations

import torch

from textcls.config import Config
from textcls.errors import ConfigError


def check_device_options(cfg: Config, device: torch.device) -> None:
    if cfg.train.precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"`train.precision: fp16` needs a CUDA device (the device is {device}); "
                          "use bf16 or fp32 on CPU")


def check_label_options(cfg: Config, labels: list[str]) -> None:
    t = cfg.train
    if isinstance(t.threshold, list) and len(t.threshold) != len(labels):
        raise ConfigError(f"`train.threshold` has {len(t.threshold)} values but there are {len(labels)} labels "
                          f"({', '.join(labels[:20])}); give one threshold per label, in labels.json order, "
                          "or one number")
    if isinstance(t.threshold, list) and cfg.data.task != "multilabel":
        raise ConfigError("`train.threshold` as a list is for `data.task: multilabel` only")
