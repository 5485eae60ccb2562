"""Multi-head self-attention on `scaled_dot_product_attention`, with a fused QKV projection.

On CUDA the cuDNN attention backend is left out: PyTorch prefers it for bf16/fp16 on Hopper, and it
builds an execution plan for every new (batch, length) shape, about 13 ms of CPU time per call, while
length-bucketed batches bring a new shape every few steps (measured on an H200: 47 ms per forward of
a new shape against 2.5 ms with the memory-efficient kernel, which needs no plan).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from textcls.model.dropout import dropout
from textcls.model.linear import Linear
from textcls.model.packing import Packing

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
except ImportError:  # torch < 2.3 has no cuDNN attention to avoid
    sdpa_kernel, _CUDA_BACKENDS = None, None


def _backends(x: torch.Tensor):
    """The SDPA backends allowed for a tensor on x's device (all of them off CUDA)."""
    if x.is_cuda and sdpa_kernel is not None:
        return sdpa_kernel(_CUDA_BACKENDS)
    return contextlib.nullcontext()


def attention_bias(attention_mask: torch.Tensor | Packing | None, causal: bool, t: int,
                   device: torch.device) -> torch.Tensor | Packing | None:
    """Boolean mask broadcastable to (B, heads, T, T); True = may attend. A Packing comes back carrying
    that mask for its padded layout (`t` is then its T)."""
    if isinstance(attention_mask, Packing):
        return attention_mask.with_bias(attention_bias(attention_mask.mask, causal, attention_mask.mask.shape[1],
                                                       device))
    mask = None
    if attention_mask is not None:
        mask = attention_mask[:, None, None, :]  # (B, 1, 1, T): keys that are real tokens
    if causal:
        tri = torch.ones(t, t, dtype=torch.bool, device=device).tril()  # (T, T): history only
        mask = tri if mask is None else mask & tri
    return mask


class SelfAttention(nn.Module):
    """x (B, T, H) -> (B, T, H), or packed x (N, H) -> (N, H): fused QKV, SDPA, output projection Wo."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = Linear(hidden_size, 3 * hidden_size)
        self.out = Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | Packing | None, need_weights: bool = False,
                first_only: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`mask`: attention_bias's mask for x (B, T, H), or the Packing (with its bias) of packed x (N, H).
        Returns the output shaped as x and, with `need_weights`, the probabilities (B, nh, T, T).
        `first_only`: only each sequence's first token asks (keys and values are all the tokens): the output
        is (B, 1, H), padded or packed x alike, and the probabilities (B, nh, 1, T)."""
        packing = mask if isinstance(mask, Packing) else None
        qkv = self.qkv(x)  # (B, T, 3H), or packed (N, 3H)
        if packing is not None:  # attention alone runs padded: the padding rows are zeros, masked as keys
            qkv, mask = packing.unpack(qkv), packing.bias  # (B, T, 3H)
        b, t, h = qkv.shape[0], qkv.shape[1], x.shape[-1]
        q, k, v = qkv.view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hd)
        if first_only:
            q = q[:, :, :1]  # (B, nh, 1, hd)
            mask = None if mask is None else mask[..., :1, :]  # a causal (T, T) mask keeps its first row
        p = self.dropout if self.training else 0.0
        if need_weights or (p > 0.0 and q.device.type == "cpu"):
            y, probs = self._explicit(q, k, v, mask, p)
            probs = probs if need_weights else None
        else:
            probs = None
            with _backends(q):
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(b, q.shape[2], h)
        if packing is not None and not first_only:
            y = packing.pack(y)  # (N, H): the padding rows' outputs are dropped
        return self.out(y), probs

    def _explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                  p: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention written out: (B, nh, T, hd) x3 -> output (B, nh, T, hd) and probabilities (B, nh, T, T).
        It serves inspection (the probabilities) and CPU training with attention dropout, where SDPA
        would run the same arithmetic (its fused CPU kernels take no dropout) with `bernoulli_`'s slow masks."""
        scores = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5  # (B, nh, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = scores.softmax(-1, dtype=torch.float32)  # bf16's CPU softmax is slower, and less exact
        return dropout(probs, p, self.training).to(v.dtype) @ v, probs
