"""Adapters vs full fine-tuning on SST-2, from one frozen base.

1. A base encoder: `textcls pretrain` (masked LM) on the SST-2 training sentences when this textcls
   has that command; otherwise (stated in the output) `textcls train` on SST-2 itself.
2. From that base (`model.init_from`), three SST-2 runs: full fine-tuning (`train.trainable: all`),
   Houlsby adapters (m = 64, `trainable: adapters`) and K-Adapter side adapters (width 64).
3. A markdown table: trainable / total parameters, the run's weights file size, train examples/s
   and dev accuracy (best evaluation).

    PYTHONPATH=. python bench/adapters.py --budget reduced   # minutes on 2 cores
    PYTHONPATH=. python bench/adapters.py --budget full      # the README figures; about an hour on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from textcls.device import machine_summary

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"

BUDGETS = {  # train rows (None = all 67,349), fine-tuning steps (0 = one epoch), pretraining steps, model
    "reduced": {"train_rows": 4000, "steps": 250, "pretrain_steps": 300, "hidden": 128, "layers": 2},
    "full": {"train_rows": None, "steps": 0, "pretrain_steps": 4000, "hidden": 256, "layers": 4},
}


def write_subset(src: Path, dst: Path, rows: int | None) -> Path:
    with open(src, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    dst.write_text("\n".join(lines if rows is None else lines[: rows + 1]) + "\n", encoding="utf-8")
    return dst


def base_config(args, train_file: Path) -> dict:
    h = args.hidden
    return {
        "data": {"train": str(train_file), "valid": str(SST2 / "dev.tsv"), "text_columns": ["sentence"],
                 "label_column": "label", "max_length": 64, "cache_dir": str(args.out / "cache")},
        "tokenizer": {"vocab_size": 8000},
        "model": {"hidden_size": h, "num_layers": args.layers, "num_heads": max(1, h // 64),
                  "intermediate_size": 4 * h, "pooling": "cls_tanh", "dropout": 0.1},
        "train": {"batch_size": 32, "lr": 5e-4, "seed": 0, "num_threads": args.threads, "log_every": 100},
    }


def has_pretrain() -> bool:
    probe = subprocess.run([sys.executable, "-m", "textcls", "pretrain", "--help"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    return probe.returncode == 0


def build_base(args, train_file: Path) -> tuple[Path, str]:
    base = args.out / "base"
    if (base / "model.safetensors").exists():
        return base, "existing " + (json.loads((base / "run.json").read_text()).get("kind") or "train") + " run"
    cfg = base_config(args, train_file)
    command = "pretrain" if has_pretrain() else "train"
    cfg["train"]["max_steps"] = args.pretrain_steps
    path = args.out / "base.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    subprocess.run([sys.executable, "-m", "textcls", command, str(path), "--output", str(base), "--quiet"],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    how = "`textcls pretrain` (masked LM on the SST-2 train sentences)" if command == "pretrain" else \
        "`textcls train` on SST-2 (no `textcls pretrain` in this checkout)"
    return base, how


METHODS = {  # name -> (trainable, adapters section, learning-rate attribute)
    "full fine-tuning": ("all", {"enabled": False}, "lr_full"),
    "houlsby adapters": ("adapters", {"enabled": True, "style": "houlsby"}, "lr_adapters"),
    "side adapters": ("adapters", {"enabled": True, "style": "side", "side_layers": 1}, "lr_adapters"),
}


def run_method(args, name: str, base: Path, train_file: Path) -> dict:
    from textcls.config import config_from_dict
    from textcls.model.trainable import apply_trainable, count_trainable
    from textcls.run.load import load_run
    from textcls.train.loop import train

    trainable, adapters, lr = METHODS[name]
    raw = base_config(args, train_file)
    raw["model"].update(init_from=str(base), adapters={**adapters, "size": args.size})
    raw["train"].update(trainable=trainable, lr=getattr(args, lr), epochs=1,
                        max_steps=args.steps or None, eval_batch_size=256)
    out = args.out / name.replace(" ", "-")
    raw["output"] = {"dir": str(out), "overwrite": True}
    result = train(config_from_dict(raw, source=f"bench:{name}"), quiet=True)
    run = load_run(out)
    apply_trainable(run.model, trainable)
    n, total = count_trainable(run.model)
    return {"method": name, "trainable": n, "total": total, "file_bytes": (out / "model.safetensors").stat().st_size,
            "examples_per_s": result.examples_per_second, "dev_accuracy": result.best_metric,
            "seconds": result.seconds, "steps": result.steps}


def table(rows: list[dict]) -> str:
    lines = ["| method | trainable params | % of total | weights file | train examples/s | dev accuracy |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f}% | "
                     f"{r['file_bytes'] / 1024:,.0f} KiB | {r['examples_per_s']:,.0f} | {r['dev_accuracy']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="reduced")
    parser.add_argument("--train-rows", type=int, help="SST-2 training rows (default from --budget)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps per method; 0 = one epoch")
    parser.add_argument("--pretrain-steps", type=int, help="steps for the base")
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--size", type=int, default=64, help="adapter bottleneck m (side network width)")
    parser.add_argument("--lr-full", type=float, default=5e-4)
    parser.add_argument("--lr-adapters", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-adapters"))
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    args = parser.parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    for key, value in BUDGETS[args.budget].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    train_file = write_subset(SST2 / "train.tsv", args.out / "train.tsv", args.train_rows)

    started = time.perf_counter()
    base, how = build_base(args, train_file)
    print(f"base: {how}, {base} ({time.perf_counter() - started:.0f}s)", flush=True)
    rows = [run_method(args, name, base, train_file) for name in args.methods.split(",")]
    print(f"\nSST-2 ({args.train_rows or 'all'} train rows, dev 872), hidden {args.hidden}, {args.layers} layers, "
          f"{args.steps or 'one epoch of'} steps per method, m = {args.size}, {args.threads} threads; base: {how}\n")
    print(table(rows))
    (args.out / "results.json").write_text(json.dumps({"base": how, "args": {k: str(v) for k, v in vars(args).items()},
                                                       "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
