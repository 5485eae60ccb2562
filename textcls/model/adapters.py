"""Adapter slots per depth. Without adapters every slot is `nn.Identity()` (no parameters, no keys)."""

from __future__ import annotations

from torch import nn

from textcls.config import ModelConfig


class AdapterSlots(nn.Module):
    """`attention[d]` runs after depth d's attention output, `ffn[d]` after its FFN output."""

    def __init__(self, attention: list[nn.Module], ffn: list[nn.Module]):
        super().__init__()
        self.attention = nn.ModuleList(attention)
        self.ffn = nn.ModuleList(ffn)


def build_adapters(cfg: ModelConfig) -> AdapterSlots:
    n = cfg.num_layers
    return AdapterSlots([nn.Identity() for _ in range(n)], [nn.Identity() for _ in range(n)])
