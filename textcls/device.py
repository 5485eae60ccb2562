"""Devices and precision: where a model runs and in which float type."""

from __future__ import annotations

import torch


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on any device, fp16 on CUDA only; fp32 (autocast off) otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)
