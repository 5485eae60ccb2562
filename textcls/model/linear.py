"""fp32 Linear layers on the CPU through oneDNN's inner-product kernel rather than BLAS sgemm.

PyTorch computes an fp32 `F.linear` on the CPU with its BLAS (MKL in the x86 wheels), and keeps oneDNN for
bf16. On the project machine (AMD EPYC, AVX-512) MKL's sgemm ran the model's Linear shapes at 190-230 GFLOP/s
and oneDNN's inner product, on the same plain row-major tensors, at 400-500 (`bench/linear_kernels.py`).
`linear` takes oneDNN's kernel for fp32 CPU tensors, and its backward does the same for both products
(dx = dy W, dW = dy^T x). The results are fp32 sums in another order: equal to `F.linear`'s within float
rounding, not bit for bit. Everywhere else (CUDA, bf16 or autocast, a graph being traced or exported, a
PyTorch built without oneDNN, or `TEXTCLS_CPU_LINEAR=blas` in the environment) `F.linear` runs.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

ENV = "TEXTCLS_CPU_LINEAR"  # "blas": PyTorch's own F.linear everywhere
enabled = os.environ.get(ENV, "").lower() != "blas"  # read once, at import
_op = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None


# A weight that several forward passes read before one backward (a layer shared across depths) has its
# transpose, dx's operand, made once in that backward. Counted per weight; a forward pass drops what an
# earlier backward kept, so a transpose never outlives the weights it was taken from (fused AdamW updates
# parameters without bumping their version counters, so versions cannot tell).
_pending = WeakIdKeyDictionary()  # weight -> backward products still to run
_transposes = WeakIdKeyDictionary()  # weight -> W^T, contiguous


def _inner(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x W^T + b through oneDNN's inner product (weight contiguous, (out, in))."""
    return _op(x, weight, bias, "none", [], "")


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    """W^T, contiguous, for one backward product: kept while more products of this backward need it."""
    left = _pending.get(weight, 1) - 1
    transposed = _transposes.pop(weight, None)
    if transposed is None:
        transposed = weight.t().contiguous()
    if left > 0:
        _pending[weight], _transposes[weight] = left, transposed
    else:
        _pending.pop(weight, None)
    return transposed


class _InnerProduct(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return _inner(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        _transposes.pop(weight, None)
        if x.requires_grad:  # the backward products that will ask _transposed for W^T
            _pending[weight] = _pending.get(weight, 0) + 1
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        rows = grad.reshape(-1, grad.shape[-1])  # (N, out)
        dx = _inner(grad, _transposed(weight), None) if need_x else None  # dy W
        dw = _inner(rows.t(), x.reshape(-1, x.shape[-1]).t(), None) if need_w else None  # dy^T x: (out, in)
        db = rows.sum(0) if need_b and ctx.has_bias else None
        return dx, dw, db


def uses_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear(x, weight, ...)` runs oneDNN's kernel here."""
    return (enabled and _op is not None and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and weight.is_contiguous() and x.numel() > 0
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear(x, weight, bias), through oneDNN's fp32 kernel on a CPU (see the module's docstring)."""
    if not uses_onednn(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return _InnerProduct.apply(x, weight, bias)
    return _inner(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters, init and repr) computing with `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
