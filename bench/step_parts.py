"""Where a fine-tuning step of a pretrained base spends its time: forward + backward, gradient clipping, the
AdamW update and zeroing the gradients, timed apart on fixed random batches.

    PYTHONPATH=. python bench/step_parts.py                          # all-MiniLM-L6-v2, batch 32 x 26 tokens, bf16
    PYTHONPATH=. python bench/step_parts.py --length 48 --precision fp32 --threads 1

The base is the pip package's checkpoint, unpacked once into runs/bases (bench/pretrained.py's minilm_folder).
Autocast as in training with `train.precision: bf16`; the fused AdamW that textcls uses.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrained import ROOT, minilm_folder

from textcls.device import machine_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=26, help="tokens per row (SST-2's mean in MiniLM tokens: 26)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    from transformers import AutoModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_summary(), flush=True)
    encoder = AutoModel.from_pretrained(str(minilm_folder(ROOT / "runs" / "bases" / "all-MiniLM-L6-v2")))
    head = torch.nn.Linear(encoder.config.hidden_size, 2)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=True)
    ids = torch.randint(1000, encoder.config.vocab_size, (args.batch, args.length))
    mask, labels = torch.ones_like(ids), torch.randint(0, 2, (args.batch,))
    parts = dict.fromkeys(("forward + backward", "clip", "AdamW", "zero_grad"), 0.0)
    for step in range(args.steps + 5):  # 5 warm-up steps
        marks = [time.perf_counter()]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            pooled = encoder(input_ids=ids, attention_mask=mask).last_hidden_state.mean(1)
            loss = torch.nn.functional.cross_entropy(head(pooled).float(), labels)
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        if step >= 5:
            for name, a, b in zip(parts, marks, marks[1:]):
                parts[name] += b - a
    total = sum(parts.values())
    print(f"{args.batch} x {args.length} tokens, {args.precision}, {args.threads} threads: "
          f"{total / args.steps * 1000:.1f} ms per step")
    for name, seconds in parts.items():
        print(f"  {name:20s} {seconds / args.steps * 1000:7.1f} ms  {seconds / total:5.1%}")


if __name__ == "__main__":
    main()
