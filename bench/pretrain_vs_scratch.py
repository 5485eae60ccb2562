"""Dev accuracy of the same model trained from scratch vs after `textcls pretrain` on the task's own texts.

For each dataset: pretrain (MLM, whole-word masking) on the train + unlabelled test texts (labels are
never read; dev is held out), then fine-tune from that run (`model.init_from`), and fine-tune the
same architecture from random weights with the same tokenizer (so only the pretraining differs).
Prints a markdown table with dev accuracy (best epoch) and wall times.

    python bench/pretrain_vs_scratch.py --budget small   # minutes on one core: subsets, few steps
    python bench/pretrain_vs_scratch.py --budget full    # the whole training sets; hours on a CPU

Run from the repository root with the data in ../shared/data (or pass --data).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textcls.config import config_from_dict  # noqa: E402
from textcls.device import machine_summary  # noqa: E402
from textcls.pretrain.loop import pretrain  # noqa: E402
from textcls.train.loop import train  # noqa: E402

DATASETS = {  # name: (folder, text column, unlabelled test file)
    "sst2": ("sst2", "sentence", "test.tsv"),
    "chnsenticorp": ("chnsenticorp", "text_a", "test.tsv"),
}

BUDGETS = {
    # train_rows: labelled rows used for fine-tuning (None = all); pretrain_steps; finetune epochs.
    "small": {"train_rows": 2000, "pretrain_steps": 400, "epochs": 4, "max_length": 64, "vocab_size": 4000,
              "model": {"hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512,
                        "embedding_size": 64}},
    "full": {"train_rows": None, "pretrain_steps": 6000, "epochs": 3, "max_length": 128, "vocab_size": 8000,
             "model": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024,
                       "embedding_size": 128}},
}


def subset(src: Path, dst: Path, rows: int | None, seed: int = 0) -> Path:
    """The header and `rows` randomly chosen lines of a TSV file (all of them when rows is None)."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    body = lines[1:]
    if rows is not None and rows < len(body):
        body = random.Random(seed).sample(body, rows)
    dst.write_text(lines[0] + "".join(body), encoding="utf-8")
    return dst


def run_dataset(name: str, budget: dict, data_root: Path, work: Path, threads: int) -> list[dict]:
    folder, column, unlabelled = DATASETS[name]
    src = data_root / folder
    work.mkdir(parents=True, exist_ok=True)
    train_file = subset(src / "train.tsv", work / "train.tsv", budget["train_rows"])
    model = {**budget["model"], "max_positions": max(128, budget["max_length"]), "pooling": "cls_tanh",
             "dropout": 0.1}
    common = {"tokenizer": {"vocab_size": budget["vocab_size"]}, "model": model}
    train_opts = {"batch_size": 32, "lr": 5e-4, "warmup": 0.1, "seed": 0, "num_threads": threads, "log_every": 100}

    pre_cfg = config_from_dict({
        **common,
        "data": {"text_columns": [column], "max_length": budget["max_length"]},
        "pretrain": {"files": [str(src / "train.tsv"), str(src / unlabelled)], "whole_word_mask": True,
                     "valid_fraction": 0.02},
        "train": {**train_opts, "max_steps": budget["pretrain_steps"], "lr": 1e-3, "warmup": 0.06,
                  "batch_size": 64, "eval_every": max(1, budget["pretrain_steps"] // 4)},
        "output": {"dir": str(work / "pretrain"), "overwrite": True},
    })
    t0 = time.perf_counter()
    pre = pretrain(pre_cfg, quiet=True)
    pre_seconds = time.perf_counter() - t0

    rows = []
    for setup, init in (("scratch", None), ("pretrained", str(work / "pretrain"))):
        cfg = config_from_dict({
            **common,
            "data": {"train": str(train_file), "valid": str(src / "dev.tsv"), "text_columns": [column],
                     "label_column": "label", "max_length": budget["max_length"]},
            # The same tokenizer for both, so only the pretraining differs.
            "tokenizer": {"path": str(work / "pretrain" / "tokenizer.json")},
            "model": {**model, "init_from": init},
            "train": {**train_opts, "epochs": budget["epochs"]},
            "output": {"dir": str(work / setup), "overwrite": True},
        })
        t0 = time.perf_counter()
        result = train(cfg, quiet=True)
        rows.append({"dataset": name, "setup": setup, "dev_accuracy": result.best_metric,
                     "pretrain_s": pre_seconds if init else 0.0, "finetune_s": time.perf_counter() - t0,
                     "mlm_accuracy": pre.metrics.get("mlm_accuracy") if init else None,
                     "train_rows": sum(1 for _ in open(train_file, encoding="utf-8")) - 1})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    parser.add_argument("--datasets", default="sst2,chnsenticorp")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_pretrain")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pretrain-steps", type=int, help="override the budget's pretraining steps")
    parser.add_argument("--train-rows", type=int, help="override the budget's labelled rows")
    args = parser.parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    budget = dict(BUDGETS[args.budget])
    if args.pretrain_steps:
        budget["pretrain_steps"] = args.pretrain_steps
    if args.train_rows:
        budget["train_rows"] = args.train_rows
    rows = []
    for name in args.datasets.split(","):
        rows += run_dataset(name, budget, args.data, args.work / name, args.threads)
    print(f"\nbudget {args.budget}: {budget['pretrain_steps']} pretraining steps (batch 64 x "
          f"{budget['max_length']} tokens), fine-tuning {budget['epochs']} epochs, {args.threads} thread(s)\n")
    print("| dataset | labelled train rows | setup | dev accuracy | pretrain wall (s) | fine-tune wall (s) "
          "| held-out MLM acc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        mlm = f"{r['mlm_accuracy']:.3f}" if r["mlm_accuracy"] is not None else "-"
        print(f"| {r['dataset']} | {r['train_rows']} | {r['setup']} | {r['dev_accuracy']:.4f} | "
              f"{r['pretrain_s']:.0f} | {r['finetune_s']:.0f} | {mlm} |")


if __name__ == "__main__":
    main()
