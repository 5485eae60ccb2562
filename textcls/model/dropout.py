"""Dropout whose mask is cheap to draw on a CPU.

PyTorch's CPU dropout draws its mask with `bernoulli_`, one double from the Mersenne twister per element:
about 4 ns an element, which made the masks 14-15% of a MiniLM fine-tuning step on 2 cores (bench/step_parts.py,
bench/speed.py). Here one 64-bit draw from the same generator gives four 16-bit lanes, and an element is kept
where its lane reaches a threshold: the keep probability is (1 - p) rounded to 1/65,536, each element
independent, the scale 1 / (1 - p) as usual; about 4x cheaper. Seeding (`torch.manual_seed`) and the
generator state that checkpoints carry work as before; only the stream of masks differs from `bernoulli_`'s.
Elsewhere (CUDA draws masks in parallel) and outside training, torch's own dropout runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LANES = 4  # 16-bit lanes per 64-bit draw
LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None) -> torch.Tensor:
    """Bool tensor of `shape`, each element True with probability (1 - p) rounded to 1/65,536."""
    n = math.prod(shape)
    bits = torch.empty((n + LANES - 1) // LANES, dtype=torch.int64, device=device)
    bits.random_(-(1 << 63), (1 << 63) - 1)  # the full 64-bit range: every lane uniform on int16
    lanes = bits.view(torch.int16)[:n].view(shape)
    return lanes >= round(p * LEVELS) - LEVELS // 2  # P(lane >= t) = (32,768 - t) / 65,536 = 1 - p


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), with the cheap mask on a CPU."""
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    scaled = keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p))  # 0 or 1 / (1 - p)
    return x * scaled


class Dropout(nn.Dropout):
    """nn.Dropout (same repr, no state) drawing its mask with `keep_mask` on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
