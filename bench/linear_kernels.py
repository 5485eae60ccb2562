"""fp32 Linear kernels on this CPU: PyTorch's default (MKL) against oneDNN, forward alone and forward + backward.

    PYTHONPATH=. python bench/linear_kernels.py                # the shapes of textcls's small models and MiniLM
    PYTHONPATH=. python bench/linear_kernels.py --threads 1

Forward, in GFLOP/s: `F.linear` (MKL) against textcls's `linear` (textcls/model/linear.py: oneDNN's inner
product on the same plain row-major tensors) without autograd, as prediction runs it. Forward + backward
(y = x W^T + b, then dx, dW and db through autograd, as a training step runs it), in ms: the same two, with
their largest difference relative to the output's scale. The figures behind docs/speed.md's "where the time goes".
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from textcls.device import machine_summary
from textcls.model.linear import linear

# (tokens, in, out): small-model SST-2 and ChnSentiCorp batches (32 x 17, 32 x 81), MiniLM's 64 x 26
SHAPES = [(544, 256, 1024), (2592, 256, 1024), (2592, 1024, 256), (1664, 384, 1536), (1664, 1536, 384)]


def seconds(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    started = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - started) / reps


def training_step(fn, x, w, b, g):
    """y = fn(x, w, b) and its backward from g: (y, dx, dW, db)."""
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    y = fn(x, w, b)
    y.backward(g)
    return y.detach(), x.grad, w.grad, b.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_summary())
    print(f"{'tokens x in -> out':>22} {'fwd MKL':>9} {'fwd oneDNN':>10} {'fwd+bwd MKL':>12} {'fwd+bwd oneDNN':>14} "
          f"{'ratio':>6} {'rel err':>8}")
    for m, k, n in SHAPES:
        x, w, b, g = torch.randn(m, k), torch.randn(n, k), torch.randn(n), torch.randn(m, n)
        flops = 2 * m * k * n
        with torch.no_grad():
            fwd_mkl = flops / seconds(lambda: F.linear(x, w, b), args.reps) / 1e9
            fwd_dnn = flops / seconds(lambda: linear(x, w, b), args.reps) / 1e9
        step_mkl = seconds(lambda: training_step(F.linear, x, w, b, g), args.reps)
        step_dnn = seconds(lambda: training_step(linear, x, w, b, g), args.reps)
        err = max(float((u - v).abs().max() / u.abs().max()) for u, v in zip(training_step(F.linear, x, w, b, g),
                                                                               training_step(linear, x, w, b, g)))
        print(f"{m:>8} x {k:>4} -> {n:>4} {fwd_mkl:>6.0f} GF {fwd_dnn:>7.0f} GF {step_mkl * 1e3:>9.2f} ms "
              f"{step_dnn * 1e3:>11.2f} ms {step_mkl / step_dnn:>5.2f}x {err:>8.1e}")


if __name__ == "__main__":
    main()
