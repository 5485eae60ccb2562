"""fastText vs textcls on the same splits: accuracy, macro-F1, train wall time, predict examples/s.

    PYTHONPATH=. python bench/fasttext_vs_textcls.py                      # both datasets, full runs
    PYTHONPATH=. python bench/fasttext_vs_textcls.py --dataset sst2 --set train.max_steps=300   # a probe

fastText (pip `fasttext-wheel`) runs its default supervised settings with 2 threads; Chinese text is
split into characters for it (fastText splits on spaces), with word bigrams on ChnSentiCorp.
textcls trains the recipe in configs/ (cold tokenized cache, so tokenizing is in the train time).
For ChnSentiCorp, `dedup acc` is the accuracy on the dev rows whose text does not occur in train.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from textcls.device import machine_summary

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@dataclass
class Split:
    texts: list[str]
    labels: list[str]


@dataclass
class Dataset:
    name: str
    config: Path
    train: Split
    dev: Split
    chars: bool  # Chinese: fastText gets space-separated characters
    word_ngrams: int


def read_tsv(path: Path, text_col: str, label_col: str, limit: Optional[int] = None) -> Split:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return Split([r[text_col] for r in rows], [r[label_col].strip() for r in rows])


def load(name: str, limit: Optional[int]) -> Dataset:
    if name == "sst2":
        return Dataset(name, ROOT / "configs" / "sst2_best.yaml",
                       read_tsv(DATA / "sst2" / "train.tsv", "sentence", "label", limit),
                       read_tsv(DATA / "sst2" / "dev.tsv", "sentence", "label"), chars=False, word_ngrams=1)
    folder = DATA / "chnsenticorp"
    return Dataset(name, ROOT / "configs" / "chnsenticorp_best.yaml",
                   read_tsv(folder / "train.tsv", "text_a", "label", limit),
                   read_tsv(folder / "dev.tsv", "text_a", "label"), chars=True, word_ngrams=2)


def scores(gold: list[str], pred: list[str], mask: Optional[np.ndarray] = None) -> dict:
    gold_a, pred_a = np.asarray(gold), np.asarray(pred)
    if mask is not None:
        gold_a, pred_a = gold_a[mask], pred_a[mask]
    f1s = []
    for label in sorted(set(gold_a)):
        tp = np.sum((pred_a == label) & (gold_a == label))
        precision = tp / max(np.sum(pred_a == label), 1)
        recall = tp / max(np.sum(gold_a == label), 1)
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return {"accuracy": float(np.mean(gold_a == pred_a)), "macro_f1": float(np.mean(f1s))}


# --------------------------------------------------------------------------- fastText


def _ft_text(text: str, chars: bool) -> str:
    text = " ".join(text.split())
    return " ".join(ch for ch in text if not ch.isspace()) if chars else text


def run_fasttext(ds: Dataset, threads: int, word_ngrams: Optional[int],
                 epoch: int = 5) -> tuple[list[str], float, float]:
    import fasttext

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("".join(f"__label__{y} {_ft_text(x, ds.chars)}\n" for x, y in zip(ds.train.texts,
                                                                                      ds.train.labels)),
                        encoding="utf-8")
        started = time.perf_counter()
        model = fasttext.train_supervised(str(path), thread=threads, wordNgrams=word_ngrams or ds.word_ngrams,
                                          epoch=epoch, verbose=0)
        train_s = time.perf_counter() - started
    texts = [_ft_text(x, ds.chars) for x in ds.dev.texts]
    started = time.perf_counter()
    labels, _ = model.predict(texts, k=1)  # a list: fastText 0.9.2's single-text path breaks on numpy 2
    per_s = len(texts) / (time.perf_counter() - started)
    return [lab[0].removeprefix("__label__") for lab in labels], train_s, per_s


# --------------------------------------------------------------------------- textcls


def run_textcls(ds: Dataset, overrides: list[str], out: Path,
                threads: int) -> tuple[list[str], float, float, Optional[list[str]]]:
    """Predictions, train seconds, predict examples/s, and the predictions without the run's NB-LR model
    (`nblr.weight`; None without one)."""
    import torch

    from textcls.config import load_config
    from textcls.predict import predict_probabilities
    from textcls.run.load import load_run
    from textcls.train.loop import train

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as cache:
        cfg = load_config(ds.config, [f"data.cache_dir={cache}", "output.overwrite=true",
                                      f"train.num_threads={threads}", *overrides])
        train_file = None
        if len(ds.train.texts) != _rows(cfg.data.train):  # --limit: train on the same rows fastText saw
            train_file = Path(cache) / "train.tsv"
            column, label = cfg.data.text_columns[0], cfg.data.label_column
            with open(train_file, "w", encoding="utf-8") as handle:
                handle.write(f"{label}\t{column}\n")
                handle.writelines(f"{y}\t{x}\n" for x, y in zip(ds.train.texts, ds.train.labels))
            cfg.data.train = str(train_file)
        started = time.perf_counter()
        train(cfg, out, quiet=True)
        train_s = time.perf_counter() - started
    run = load_run(out)
    started = time.perf_counter()
    probs = predict_probabilities(run, ds.dev.texts, batch_size=64)
    per_s = len(ds.dev.texts) / (time.perf_counter() - started)
    without = None
    if run.nblr is not None:
        run.nblr = None
        without = [run.labels[i] for i in predict_probabilities(run, ds.dev.texts, batch_size=64).argmax(-1)]
    return [run.labels[i] for i in probs.argmax(-1)], train_s, per_s, without


def _rows(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1


# --------------------------------------------------------------------------- main


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["sst2", "chnsenticorp", "both"], default="both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="Use only the first N train rows (probes).")
    parser.add_argument("--ft-word-ngrams", type=int, default=None, help="Override fastText's wordNgrams.")
    parser.add_argument("--ft-epoch", type=int, default=5, help="fastText epochs (its default is 5).")
    parser.add_argument("--skip-textcls", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="textcls config override.")
    parser.add_argument("--output", type=Path, default=Path("runs/bench"))
    args = parser.parse_args(argv)
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    names = ["sst2", "chnsenticorp"] if args.dataset == "both" else [args.dataset]
    rows = []
    for name in names:
        ds = load(name, args.limit)
        seen = set(ds.train.texts)
        unseen = np.array([t not in seen for t in ds.dev.texts])
        systems = [("fastText", lambda: (*run_fasttext(ds, args.threads, args.ft_word_ngrams, args.ft_epoch), None))]
        if not args.skip_textcls:
            systems.append(("textcls", lambda: run_textcls(ds, args.overrides, args.output / name, args.threads)))
        for system, fn in systems:
            pred, train_s, per_s, without = fn()
            rows.append(_row(ds, name, system, pred, unseen, train_s=train_s, predict_per_s=per_s))
            print(_format(rows[-1]), flush=True)
            if without is not None:  # the same members, without the run's NB-LR model
                print(_format(_row(ds, name, "w/o n-gram", without, unseen)), flush=True)
    return 0


def _row(ds: Dataset, name: str, system: str, pred: list[str], unseen: np.ndarray, **timing) -> dict:
    row = {"dataset": name, "system": system, **scores(ds.dev.labels, pred), **timing}
    if ds.chars:
        row["dedup_accuracy"] = scores(ds.dev.labels, pred, unseen)["accuracy"]
        row["dedup_rows"] = int(unseen.sum())
    return row


def _format(row: dict) -> str:
    dedup = f"  dedup acc {row['dedup_accuracy']:.2%} ({row['dedup_rows']} rows)" if "dedup_accuracy" in row else ""
    timing = f"  train {row['train_s']:.1f}s  predict {row['predict_per_s']:,.0f} ex/s" if "train_s" in row else ""
    return (f"{row['dataset']:<13} {row['system']:<9} acc {row['accuracy']:.2%}  macro-F1 {row['macro_f1']:.4f}"
            f"{timing}{dedup}")


if __name__ == "__main__":
    sys.exit(main())
