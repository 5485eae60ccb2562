"""Sharing ablation on SST-2: every sharing strategy trained with the same budget, one markdown table.

    python bench/sharing_ablation.py                        # the full table (see --help for sizes)
    python bench/sharing_ablation.py --max-steps 300 --hidden-size 128 --num-layers 4   # a quick one

Each row trains the same model (same seed, data order, steps and schedule) with a different
`model.sharing`, then reports unique and effective (unrolled) parameters, training examples/s
and dev accuracy at the end (training runs without a validation file, so examples/s
counts training steps only; the dev set is evaluated afterwards). "examples per CPU-s" divides by
the process CPU time instead of wall time: on a shared, loaded machine it is the steadier figure.
Runs on CPU by default; set --device to use a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from textcls.config import config_from_dict  # noqa: E402
from textcls.data.pipeline import prepare_data  # noqa: E402
from textcls.device import machine_summary  # noqa: E402
from textcls.evaluation import evaluate_file  # noqa: E402
from textcls.info import parameter_counts  # noqa: E402
from textcls.run.load import load_run  # noqa: E402
from textcls.train.loop import train  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "sst2"
STRATEGIES = {
    "none": {"strategy": "none"},
    "all": {"strategy": "all"},
    "sequence k=2": {"strategy": "sequence", "group_size": 2},
    "cycle n=2": {"strategy": "cycle", "num_unique": 2},
    "all, share attention": {"strategy": "all", "share": "attention"},
    "all, share ffn": {"strategy": "all", "share": "ffn"},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default=str(SST2 / "train.tsv"))
    p.add_argument("--valid", default=str(SST2 / "dev.tsv"))
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=6)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--embedding-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=list(STRATEGIES))
    return p.parse_args()


def run_one(args: argparse.Namespace, name: str, out: Path) -> dict:
    raw = {
        "data": {"train": args.train, "text_columns": ["sentence"], "label_column": "label",
                 "max_length": args.max_length},
        "tokenizer": {"vocab_size": args.vocab_size},
        "model": {"hidden_size": args.hidden_size, "num_layers": args.num_layers, "num_heads": args.num_heads,
                  "intermediate_size": 4 * args.hidden_size, "embedding_size": args.embedding_size,
                  "sharing": STRATEGIES[name], "pooling": "cls_tanh", "dropout": 0.1},
        "train": {"max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr, "warmup": 0.1,
                  "seed": 0, "device": args.device, "num_threads": args.threads, "log_every": 10**9},
    }
    cfg = config_from_dict(raw, source=f"sharing ablation ({name})")
    prepare_data(cfg)  # tokenizer + Arrow cache built (or reused) outside the timing
    cpu = time.process_time()
    result = train(cfg, out, quiet=True)  # no validation file: the timing covers training only
    cpu = time.process_time() - cpu
    run = load_run(out)
    counts = parameter_counts(run.model)
    accuracy = evaluate_file(run, args.valid)["accuracy"]
    return {"strategy": name, "unique": counts.unique_total, "effective": counts.effective_total,
            "examples_per_second": args.max_steps * args.batch_size / result.seconds,
            "examples_per_cpu_second": args.max_steps * args.batch_size / cpu, "accuracy": accuracy,
            "seconds": result.seconds}


def main() -> None:
    args = parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    torch.set_num_threads(args.threads)
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sharing-ablation-") as tmp:
        for i, name in enumerate(args.strategies):
            rows.append(run_one(args, name, Path(tmp) / f"run{i}"))
            print(f"{name}: done in {rows[-1]['seconds']:.0f}s", file=sys.stderr)
    print(f"\nSST-2, {args.max_steps} steps x batch {args.batch_size}, H={args.hidden_size} L={args.num_layers} "
          f"E={args.embedding_size or args.hidden_size}, {args.threads} thread(s) on {args.device}; "
          f"total {time.perf_counter() - started:.0f}s\n")
    print("| strategy | unique params | effective params | train examples/s | examples per CPU-s | dev accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['strategy']} | {r['unique']:,} | {r['effective']:,} | {r['examples_per_second']:,.0f} "
              f"| {r['examples_per_cpu_second']:,.0f} | {r['accuracy']:.4f} |")


if __name__ == "__main__":
    main()
