"""`train.ema_decay`: an exponential moving average of the weights, evaluated and saved instead of them.

The average lives in a copy of the model on the training device. After every optimizer step each
floating-point tensor (parameters and buffers) moves towards the trained one:
`avg = avg + (1 - d) * (w - avg)`, with `d = min(decay, (1 + n) / (10 + n))` after n updates, so the
first steps are not dominated by the random initial weights. Integer buffers are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float, updates: int = 0):
        self.decay, self.updates = decay, updates
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # state_dict() tensors share storage with the modules' tensors, and training updates them in
        # place, so the pairs can be collected once.
        own, avg = model.state_dict(), self.model.state_dict()
        pairs = [(avg[k], own[k]) for k in own]
        self._floats = [(a, w) for a, w in pairs if a.dtype.is_floating_point]
        self._others = [(a, w) for a, w in pairs if not a.dtype.is_floating_point]

    @property
    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = 1.0 - self.current_decay
        if self._floats:
            avg, own = zip(*self._floats)
            torch._foreach_lerp_(list(avg), list(own), weight)
        for a, w in self._others:
            a.copy_(w)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
