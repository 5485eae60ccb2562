"""Adversarial training on the embeddings (Miyato, Dai and Goodfellow 2017, "Adversarial Training Methods
for Semi-Supervised Text Classification").

Each training batch runs twice. The clean pass records the gradient g of the loss with respect to the
normalized embeddings (the output of the embeddings' LayerNorm, one vector per token). The second pass adds
r = eps * g / ||g|| to them, the norm taken over each example's whole sequence, which is the direction that
raises that example's loss fastest, and the two gradients are summed before the optimizer step. A step costs
about two forward and backward passes.
"""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingAdversary:
    """Forward hook on the module whose output is perturbed (the embeddings' LayerNorm).

    Usage per micro-batch: clean forward + backward, then `perturb()`, the same forward + backward again,
    then `clear()`. The hook acts in training mode only, so evaluation is never perturbed.
    """

    def __init__(self, module: nn.Module, eps: float):
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = eps
        self._output: torch.Tensor | None = None
        self._delta: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor):
        if not module.training:
            return None
        if self._delta is not None:
            return output + self._delta.to(output.dtype)
        if not torch.is_grad_enabled():
            return None
        if not output.requires_grad:  # frozen embeddings (trainable: adapters or head): the gradient still exists
            output = output.detach().requires_grad_()
        else:
            output.retain_grad()
        self._output = output
        return output

    def perturb(self) -> None:
        """Set the perturbation from the clean pass's gradient (call after its backward)."""
        output, self._output = self._output, None
        if output is None or output.grad is None:
            raise RuntimeError("adversarial training found no embedding gradient: run the clean forward and "
                               "backward in training mode first")
        grad = output.grad.detach().float()
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        self._delta = self.eps * grad / norm

    def clear(self) -> None:
        self._output = self._delta = None

    def remove(self) -> None:
        self.clear()
        self._handle.remove()
