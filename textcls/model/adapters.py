"""Adapters: bottleneck adapters in per-depth slots (Houlsby / Pfeiffer) and a K-Adapter side network.

Slots belong to depth positions, not to (possibly shared) unique layers: `encoder.adapters.attention[d]`
runs after depth d's attention output, `encoder.adapters.ffn[d]` after its FFN output, each before the
residual add + LayerNorm. Like the encoder's blocks, slots store their unique modules once and keep
a depth -> unique schedule, so `adapters.shared: true` ties one adapter across depths without
repeating its tensors in the state dict. A slot without an adapter is `nn.Identity()` (no keys).

State-dict keys: `encoder.adapters.{attention,ffn}.{u}.{down,up}.{weight,bias}` and `side.*`.
"""

from __future__ import annotations

import torch
from torch import nn

from textcls.config import AdapterConfig, ModelConfig
from textcls.model.attention import attention_bias
from textcls.model.layer import ACTIVATIONS, AttentionBlock, FeedForwardBlock
from textcls.model.linear import Linear
from textcls.model.packing import Packing

DEFAULT_SIZE = 64


def bottleneck_size(cfg: ModelConfig) -> int:
    """m: `adapters.size`, else hidden_size / reduction_factor, else 64."""
    a = cfg.adapters
    if a.size:
        return a.size
    if a.reduction_factor:
        return max(1, round(cfg.hidden_size / a.reduction_factor))
    return DEFAULT_SIZE


def near_identity_init(weight: torch.Tensor, std: float) -> None:
    """Truncated normal with a small std, cut at 2 std (Houlsby et al. 2019)."""
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class BottleneckAdapter(nn.Module):
    """x (..., H) -> x + up(act(down(x))): H -> m -> H with an identity residual."""

    def __init__(self, hidden_size: int, size: int, activation: str, init_scale: float):
        super().__init__()
        self.down = Linear(hidden_size, size)
        self.up = Linear(size, hidden_size)
        self.act = ACTIVATIONS[activation]
        self.init_scale = init_scale
        self.reset_near_identity()

    def reset_near_identity(self) -> None:
        """Called again by TextClassifier's init pass, which otherwise re-draws every Linear."""
        for linear in (self.down, self.up):
            near_identity_init(linear.weight, self.init_scale)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class DepthSlots(nn.Module):
    """Unique modules stored once (keys `{u}.*`) + a depth schedule; `slots[d]` is depth d's module."""

    def __init__(self, unique: list[nn.Module], schedule: list[int]):
        super().__init__()
        for u, module in enumerate(unique):
            self.add_module(str(u), module)
        self.schedule = list(schedule)

    def __getitem__(self, depth: int) -> nn.Module:
        return self._modules[str(self.schedule[depth])]

    def __len__(self) -> int:
        return len(self.schedule)


class AdapterSlots(nn.Module):
    """`attention[d]` runs after depth d's attention output, `ffn[d]` after its FFN output."""

    def __init__(self, attention: DepthSlots, ffn: DepthSlots):
        super().__init__()
        self.attention = attention
        self.ffn = ffn


def _identity_slots(n: int) -> DepthSlots:
    return DepthSlots([nn.Identity() for _ in range(n)], list(range(n)))


def _adapter_slots(cfg: ModelConfig) -> DepthSlots:
    a, n = cfg.adapters, cfg.num_layers
    depths = set(range(n) if a.layers is None else a.layers)

    def make() -> nn.Module:
        return BottleneckAdapter(cfg.hidden_size, bottleneck_size(cfg), a.activation, a.init_scale)

    if a.shared:  # one adapter for every chosen depth; an Identity for the others
        unique = [make()] + ([nn.Identity()] if len(depths) < n else [])
        return DepthSlots(unique, [0 if d in depths else 1 for d in range(n)])
    return DepthSlots([make() if d in depths else nn.Identity() for d in range(n)], list(range(n)))


def build_adapters(cfg: ModelConfig) -> AdapterSlots:
    a, n = cfg.adapters, cfg.num_layers
    if not a.enabled or a.style == "side":
        return AdapterSlots(_identity_slots(n), _identity_slots(n))
    attention = _adapter_slots(cfg) if a.style == "houlsby" else _identity_slots(n)
    return AdapterSlots(attention, _adapter_slots(cfg))


def adapter_modules(model: nn.Module) -> list[BottleneckAdapter]:
    """The distinct bottleneck adapters of a model (a tied adapter counts once)."""
    return [m for m in model.modules() if isinstance(m, BottleneckAdapter)]


# --------------------------------------------------------------------------- K-Adapter side network


def side_depths(a: AdapterConfig, num_layers: int) -> list[int]:
    return sorted(set(range(num_layers) if a.side_depths is None else a.side_depths))


class NoSide(nn.Module):
    """The side slot without a side network: passes the encoder output through (no keys)."""

    reads_all_depths = False

    def forward(self, x: torch.Tensor, hidden: list[torch.Tensor], mask: torch.Tensor | Packing) -> torch.Tensor:
        return x


class SideNetwork(nn.Module):
    """K-Adapter (Wang et al. 2020): a small transformer outside the frozen encoder.

    Width S = the bottleneck size m. For each tapped depth d (in order) it adds `taps[i](hidden[d])`
    (H -> S) to its running state and runs `side_layers` post-norm transformer layers of width S
    (K-Adapter's adapter layer). The result is projected S -> H, concatenated with the encoder's
    final output, and `merge` (2H -> H) maps it back to H, so pooler and head keep their shapes.
    `merge` starts as [I | 0]: a fresh side network leaves the encoder output unchanged; the zero
    half gets a gradient at once (LoRA's B = 0), after which the side network does too.
    """

    reads_all_depths = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        a, h = cfg.adapters, cfg.hidden_size
        s = bottleneck_size(cfg)
        heads = cfg.num_heads if s % cfg.num_heads == 0 else 1
        self.depths = side_depths(a, cfg.num_layers)
        self.taps = nn.ModuleList(Linear(h, s) for _ in self.depths)
        self.attention = nn.ModuleList(
            AttentionBlock(s, heads, cfg.dropout, cfg.dropout, cfg.layer_norm_eps, pre_norm=False)
            for _ in range(len(self.depths) * a.side_layers))
        self.ffn = nn.ModuleList(
            FeedForwardBlock(s, 4 * s, cfg.activation, cfg.dropout, cfg.layer_norm_eps, pre_norm=False)
            for _ in range(len(self.depths) * a.side_layers))
        self.out = Linear(s, h)
        self.merge = Linear(2 * h, h)
        self.identity = nn.Identity()  # the blocks' adapter slot
        self.side_layers = a.side_layers

    def reset_near_identity(self) -> None:
        h = self.merge.out_features
        with torch.no_grad():
            self.merge.weight[:, :h].copy_(torch.eye(h))
            self.merge.weight[:, h:].zero_()
            self.merge.bias.zero_()

    def forward(self, x: torch.Tensor, hidden: list[torch.Tensor], mask: torch.Tensor | Packing) -> torch.Tensor:
        """x (B, T, H) encoder output, hidden: per-depth (B, T, H), mask (B, T) -> (B, T, H); or all of them
        packed, (N, H), with the batch's Packing -> (N, H)."""
        bias = attention_bias(mask, False, x.shape[1], x.device)
        state = x.new_zeros(*x.shape[:-1], self.out.in_features)  # (B, T, S) or (N, S)
        k = 0
        for tap, depth in zip(self.taps, self.depths):
            state = state + tap(hidden[depth])
            for _ in range(self.side_layers):
                state, _ = self.attention[k](state, bias, self.identity)
                state = self.ffn[k](state, self.identity)
                k += 1
        return self.merge(torch.cat([x, self.out(state)], dim=-1))  # (B, T, 2H) -> (B, T, H), or packed


def build_side(cfg: ModelConfig) -> nn.Module:
    a = cfg.adapters
    return SideNetwork(cfg) if a.enabled and a.style == "side" else NoSide()
