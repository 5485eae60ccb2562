"""Devices and precision: where a model runs and in which float type."""

from __future__ import annotations

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX); elsewhere oneDNN emulates it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether `device` has bf16 units: a CUDA device that supports bf16, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` becomes bf16 where the device has bf16 units and fp32 elsewhere; any other value stays."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on any device, fp16 on CUDA only; fp32 (autocast off) otherwise; `auto` as resolved."""
    precision = resolve_precision(precision, device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)
