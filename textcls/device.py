"""Devices and precision: where a model runs and in which float type."""

from __future__ import annotations

import functools
import os
from pathlib import Path

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


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on `device`: free GPU memory, or the smaller of the system's
    MemAvailable and the cgroup limit's headroom; None when it cannot be told."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError, ValueError):
            return None
    if device.type != "cpu":
        return None
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return max(0, min(found)) if found else None


REUSED_BLOCK = 1 << 30  # bytes: malloc blocks up to this size are reused after free rather than unmapped


@functools.cache  # decided once per process
def reuse_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks of up to 1 GiB for later requests instead of unmapping them.

    glibc serves each block over 32 MiB with a fresh mmap and unmaps it on free. A tensor of that size made every
    training step, such as the dense gradient of a pretrained base's word embeddings (47 MB for MiniLM's
    30,522 x 384), then comes back as new pages that the kernel faults in and zeroes one at a time: on the project
    machine 13 ms for MiniLM's, against 2 ms from reused memory, in a step of about 180 ms. PyTorch's CPU tuning
    guide suggests preloading jemalloc or tcmalloc for the same reason; this is the in-process setting for glibc.
    The price is memory held: torch's aligned allocations leave a small chunk after each block, so a freed block
    serves the same request again only once its neighbours are consolidated, a few steps in. MiniLM's training
    process settles about 200 MB above glibc's default. Training and prediction call this. It changes nothing
    where the C library is not glibc, or where the environment already tunes malloc (MALLOC_*_ or GLIBC_TUNABLES)
    or preloads another allocator (LD_PRELOAD). Returns whether it is on.
    """
    import ctypes
    import platform
    import sys

    if (not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc" or "LD_PRELOAD" in os.environ
            or "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ)):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, REUSED_BLOCK)) and bool(libc.mallopt(m_trim_threshold, REUSED_BLOCK))


RELEVANT_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _cpu_model_and_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, list[str]]:
    """The first CPU's name, with its family and model numbers where /proc/cpuinfo gives them (a virtual
    machine's name is often just "AMD EPYC", the same for CPUs whose speeds differ 2x), and its RELEVANT flags."""
    import platform

    fields, flags = {}, set()
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("flags", "Features"):
                    flags = set(value.split())
                    break  # the first CPU's block is read
                if value and key not in fields:
                    fields[key] = value
    except OSError:  # not Linux: the platform's name, no flags
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        model = f"{model}, family {fields['cpu family']} model {fields['model']}"
    return model, [f for f in RELEVANT_CPU_FLAGS if f in flags]


def machine_summary() -> str:
    """One line for benchmark output: the CPU model with its flags that matter for speed, the cores this
    process may use, torch's thread count, native bf16, and the GPU when there is one."""
    import os

    model, flags = _cpu_model_and_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"CPU {model} ({' '.join(flags) or 'no AVX2/AVX-512/AMX'})", f"{cores} cores",
             f"torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"native bf16 {'yes' if cpu_has_bf16() else 'no'}"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    return "machine: " + "; ".join(parts)
