"""GPU benchmark: textcls training and prediction on CUDA in fp32 and bf16, next to HF models of the same size.

    PYTHONPATH=. python bench/gpu.py                         # needs a CUDA device; a few minutes on an H100
    PYTHONPATH=. python bench/gpu.py --quick                 # fewer batches
    PYTHONPATH=. python bench/gpu.py --device cpu --quick    # the same code on the CPU (a smoke run)

Every system gets the same token ids (a textcls WordPiece tokenizer trained on each training file) for
the same real examples, so the length distribution is the real one. Per dataset (SST-2: short
sentences; ChnSentiCorp: reviews of ~100-500 characters) and model shape (small: H256 L4, ALBERT-like
shared layers with E=128 and BERT-like unshared; base: H768 L12, BERT-base's shape):
  - training examples/s of a full step (collation, host-to-device copy, forward, backward, clipping,
    AdamW), textcls bucketed batches in fp32 and bf16 autocast, against HF
    Bert/AlbertForSequenceClassification with length-grouped dynamic padding in bf16 autocast (what
    Trainer's `--bf16 --group_by_length` does), and the peak GPU memory of each;
  - prediction examples/s: textcls `predict_ids` (length-sorted batches) in fp32 and bf16, against HF
    with dynamic padding in bf16. HF runs twice: as it comes (PyTorch picks cuDNN attention for bf16 on
    Hopper, which plans every new shape) and with cuDNN attention left out, as textcls does;
  - end to end: `train()` on the whole SST-2 training file with the shipped configs/sst2.yaml model,
    one epoch in fp32 and in bf16 (wall time, examples/s, dev accuracy), then `predict_file` on the dev file.
Runs are sequential (the GPU is not shared) and timed between two synchronizations, after warm-up steps.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed
from speed import DATASETS, SIZE, hf_length_grouped, hf_optimizer, hf_tokenizer, load_corpus, subset

from textcls.config import TrainConfig, load_config
from textcls.data.batching import BucketSampler, pad_batch
from textcls.device import autocast_context, machine_summary
from textcls.model import TextClassifier
from textcls.predict import predict_ids
from textcls.train.engine import compile_model
from textcls.train.loss import compute_loss
from textcls.train.optim import build_optimizer
from textcls.train.steps import STATIC_MULTIPLE

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # name: model size (textcls and HF alike), vocabulary of the benchmark tokenizer
    "small": dict(SIZE),
    "base": dict(SIZE, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
}


def textcls_model(shape: str, arch: str) -> TextClassifier:
    return speed.textcls_model(arch, size=SHAPES[shape])


def hf_model(shape: str, arch: str) -> torch.nn.Module:
    return speed.hf_model(arch, size=SHAPES[shape])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step: Callable, items: list, device: torch.device, warmup: int = 3) -> tuple[float, float]:
    """(seconds for items[warmup:], peak GPU MB) with one synchronization before and one after."""
    for item in items[:warmup]:
        step(item)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for item in items[warmup:]:
        step(item)
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else float("nan")
    return seconds, peak


# --------------------------------------------------------------------------- training


def textcls_train(shape: str, arch: str, ids, labels, batch: int, steps: int, device: torch.device,
                  precision: str, static: bool = False) -> tuple[float, float]:
    """`static`: `train.compile: static` (rows padded to multiples of 16, a graph per shape, CUDA graphs on a GPU);
    every shape is compiled in the warm-up, before the timed steps."""
    torch.manual_seed(0)
    model = textcls_model(shape, arch).to(device).train()
    optimizer = build_optimizer(model, TrainConfig(lr=5e-5))
    forward = compile_model(model, "static", device) if static else model
    multiple = STATIC_MULTIPLE if static else None
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    batches = BucketSampler(lengths, batch, seed=0).batches(0)[:steps + 3]
    label_tensor = torch.as_tensor(labels)
    pin = device.type == "cuda"

    def step(rows: np.ndarray) -> None:
        input_ids, mask, _ = pad_batch([ids[i] for i in rows], multiple_of=multiple)
        y = label_tensor[rows]
        if pin:
            input_ids, mask, y = input_ids.pin_memory(), mask.pin_memory(), y.pin_memory()
        input_ids, mask, y = (t.to(device, non_blocking=True) for t in (input_ids, mask, y))
        if static and device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        with autocast_context(device, precision):
            logits = forward(input_ids, mask, None)
        compute_loss(logits, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    shapes = {}  # the first batch of each padded shape: compiled (and captured) before the timing
    for rows in batches:
        shapes.setdefault((len(rows), -(-max(lengths[rows]) // STATIC_MULTIPLE)), rows)
    warmup = [*shapes.values()] if static else []
    seconds, peak = timed_steps(step, warmup + batches, device, warmup=len(warmup) + 3)
    return sum(len(b) for b in batches[3:]) / seconds, peak


def hf_attention(no_cudnn: bool):
    """HF models call SDPA too; `no_cudnn` leaves out cuDNN attention as textcls does (see model/attention.py)."""
    if not no_cudnn:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def hf_train(shape: str, arch: str, ids, labels, batch: int, steps: int, device: torch.device, tokenizer,
             precision: str, no_cudnn: bool = False) -> tuple[float, float]:
    from transformers import DataCollatorWithPadding

    torch.manual_seed(0)
    model = hf_model(shape, arch).to(device).train()
    optimizer = hf_optimizer(model)
    features = [{"input_ids": x, "attention_mask": [1] * len(x), "labels": int(y)} for x, y in zip(ids, labels)]
    batches = hf_length_grouped(np.array([len(x) for x in ids]), batch, seed=0)[:steps + 3]
    collate = DataCollatorWithPadding(tokenizer)

    def step(rows: list[int]) -> None:
        inputs = {k: v.to(device, non_blocking=True) for k, v in collate([features[i] for i in rows]).items()}
        with autocast_context(device, precision), hf_attention(no_cudnn):
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds, peak = timed_steps(step, batches, device)
    return sum(len(b) for b in batches[3:]) / seconds, peak


# --------------------------------------------------------------------------- prediction


def textcls_predict(shape: str, arch: str, ids, batch: int, device: torch.device, precision: str) -> float:
    torch.manual_seed(0)
    model = textcls_model(shape, arch).to(device).eval()
    chunks = [ids[i:i + 4096] for i in range(0, len(ids), 4096)]
    predict_ids(model, ids[:batch], None, 2, batch, 0, device, precision)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for chunk in chunks:
        predict_ids(model, chunk, None, 2, batch, 0, device, precision)  # returns numpy: synchronizes
    return len(ids) / (time.perf_counter() - t0)


def hf_predict(shape: str, arch: str, ids, batch: int, device: torch.device, tokenizer, precision: str,
               no_cudnn: bool = False) -> float:
    from transformers import DataCollatorWithPadding

    torch.manual_seed(0)
    model = hf_model(shape, arch).to(device).eval()
    collate = DataCollatorWithPadding(tokenizer)
    features = [{"input_ids": x, "attention_mask": [1] * len(x)} for x in ids]
    batches = [list(range(i, min(i + batch, len(ids)))) for i in range(0, len(ids), batch)]

    @torch.inference_mode()
    def step(rows: list[int]) -> None:
        inputs = {k: v.to(device) for k, v in collate([features[i] for i in rows]).items()}
        with autocast_context(device, precision), hf_attention(no_cudnn):
            logits = model(**inputs).logits
        torch.softmax(logits.float(), -1).cpu().numpy()

    step(batches[0])
    t0 = time.perf_counter()
    for rows in batches:
        step(rows)
    return len(ids) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- sections


def bench_dataset(name: str, device: torch.device, args) -> None:
    t0 = time.perf_counter()
    corpus = load_corpus(name)
    tok = hf_tokenizer(corpus)
    lengths = corpus.lengths
    print(f"\n== {name}: {len(corpus.ids)} training rows, tokens per row mean {lengths.mean():.0f}, "
          f"max {lengths.max()} (tokenizer {time.perf_counter() - t0:.0f}s)", flush=True)
    ids, labels = subset(corpus, min(len(corpus.ids), args.batch * (args.steps + 3) * 2), seed=1)
    pred_ids, _ = subset(corpus, min(len(corpus.ids), args.predict_rows), seed=2)
    for shape, arch in (("small", "albert"), ("small", "bert"), ("base", "bert")):
        if shape not in args.shapes:
            continue
        size = SHAPES[shape]
        print(f"  {shape} {arch} (H{size['hidden_size']} L{size['num_layers']}), batch {args.batch}:", flush=True)
        rates = {}
        for label, fn in (("textcls fp32", lambda: textcls_train(shape, arch, ids, labels, args.batch, args.steps,
                                                                 device, "fp32")),
                          ("textcls bf16", lambda: textcls_train(shape, arch, ids, labels, args.batch, args.steps,
                                                                 device, "bf16")),
                          *((("textcls fp32 static", lambda: textcls_train(shape, arch, ids, labels, args.batch,
                                                                           args.steps, device, "fp32", True)),
                             ("textcls bf16 static", lambda: textcls_train(shape, arch, ids, labels, args.batch,
                                                                           args.steps, device, "bf16", True)))
                            if args.static else ()),
                          ("HF bf16 group_by_length", lambda: hf_train(shape, arch, ids, labels, args.batch,
                                                                       args.steps, device, tok, "bf16")),
                          ("HF bf16, no cuDNN attn", lambda: hf_train(shape, arch, ids, labels, args.batch,
                                                                      args.steps, device, tok, "bf16", True))):
            rate, peak = fn()
            rates[label] = rate
            print(f"    train   {label:<24} {rate:9.0f} ex/s   peak GPU memory {peak:7.0f} MB", flush=True)
        hf_best = max(rates["HF bf16 group_by_length"], rates["HF bf16, no cuDNN attn"])
        print(f"    ratio textcls bf16 / faster HF bf16: {rates['textcls bf16'] / hf_best:.2f}x; "
              f"bf16 / fp32: {rates['textcls bf16'] / rates['textcls fp32']:.2f}x", flush=True)
        pred = {}
        for label, fn in (("textcls fp32", lambda: textcls_predict(shape, arch, pred_ids, args.eval_batch, device,
                                                                   "fp32")),
                          ("textcls bf16", lambda: textcls_predict(shape, arch, pred_ids, args.eval_batch, device,
                                                                   "bf16")),
                          ("HF bf16", lambda: hf_predict(shape, arch, pred_ids, args.eval_batch, device, tok,
                                                         "bf16")),
                          ("HF bf16, no cuDNN attn", lambda: hf_predict(shape, arch, pred_ids, args.eval_batch,
                                                                        device, tok, "bf16", True))):
            pred[label] = fn()
            print(f"    predict {label:<24} {pred[label]:9.0f} ex/s", flush=True)
        hf_best = max(pred["HF bf16"], pred["HF bf16, no cuDNN attn"])
        print(f"    ratio textcls bf16 / faster HF bf16 predict: {pred['textcls bf16'] / hf_best:.2f}x", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def bench_end_to_end(device: torch.device, args) -> None:
    from textcls.predict import predict_file
    from textcls.run.load import load_run
    from textcls.train.loop import train

    train_file, _, _ = DATASETS["sst2"]
    dev = train_file.parent / "dev.tsv"
    print(f"\n== end to end: configs/sst2.yaml, one epoch over {train_file.name} on {device}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="textcls-gpu-"))
    for precision, compiled in [("fp32", False), ("bf16", False), *([("fp32", "static"), ("bf16", "static")]
                                                                   if args.static else [])]:
        cfg = load_config(ROOT / "configs" / "sst2.yaml",
                          [f"data.train={train_file}", f"data.valid={dev}", f"train.device={device}",
                           f"train.precision={precision}", "train.eval_every=null", f"train.compile={compiled}"]
                          + ([f"train.max_steps={args.e2e_steps}"] if args.e2e_steps else []))
        label = f"{precision} static" if compiled else precision
        t0 = time.perf_counter()
        result = train(cfg, work / label.replace(" ", "-"), quiet=True)
        wall = time.perf_counter() - t0
        print(f"  train {label}: {result.steps} steps, {result.examples_per_second:,.0f} ex/s in the loop, "
              f"{wall:.1f}s wall (tokenizer and data included), dev accuracy {result.best_metric:.4f}", flush=True)
        run = load_run(result.run_dir, device=device)
        t0 = time.perf_counter()
        n = predict_file(run, str(dev), str(work / f"{label.replace(' ', '-')}.jsonl"), batch_size=args.eval_batch,
                         device=device, precision=precision)
        print(f"  predict {label}: {n} rows of {dev.name} in {time.perf_counter() - t0:.2f}s "
              f"({n / (time.perf_counter() - t0):,.0f} ex/s, reading and writing included)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer steps and rows")
    parser.add_argument("--datasets", default="sst2,chnsenticorp")
    parser.add_argument("--shapes", default="small,base")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--static", action="store_true", help="also train with `train.compile: static` (a compiled "
                        "graph per padded shape; CUDA graphs on a GPU), and end to end with it")
    args = parser.parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    args.steps = 20 if args.quick else 150
    args.predict_rows = 1024 if args.quick else 8192
    args.e2e_steps = 30 if args.quick else None
    args.shapes = args.shapes.split(",")
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run on a GPU machine, or pass --device cpu for a smoke run")
        props = torch.cuda.get_device_properties(device)
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        torch.matmul(a, a)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(10):
            torch.matmul(a, a)
        sync(device)
        tflops = 10 * 2 * 8192 ** 3 / (time.perf_counter() - t0) / 1e12
        print(f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB, torch {torch.__version__}, "
              f"bf16 matmul 8192^3: {tflops:.0f} TFLOP/s", flush=True)
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    for name in args.datasets.split(","):
        bench_dataset(name, device, args)
    if not args.skip_end_to_end:
        bench_end_to_end(device, args)


if __name__ == "__main__":
    main()
