"""Checks of training options that need the data or the device (the rest is in textcls/config/checks.py)."""

from __future__ import annotations

import logging

import torch

from textcls import device as devices
from textcls.config import Config
from textcls.errors import ConfigError

log = logging.getLogger("textcls")


def warn_slow_bf16(device: torch.device, precision: str, where: str) -> None:
    if precision == "bf16" and device.type == "cpu" and not devices.cpu_has_bf16():
        log.warning("%s: bf16 on this CPU (no AVX512-BF16 or AMX units) is emulated and usually slower than "
                    "fp32; use fp32 here and bf16 on GPUs or CPUs with bf16 units", where)


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
