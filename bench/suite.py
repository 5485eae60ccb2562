"""The automatic recipe against fastText on every labelled set in ../shared/data and the demo's AG News slice.

For each set: `textcls train TRAIN --budget B --output RUN` (the automatic recipe, whole run timed from the
command line), `textcls eval RUN TEST --report ...`, and fastText (`pip install 'textcls[bench]'`) in two
settings: its defaults, and bigrams with dim 50, 25 epochs, lr 0.5. Prints accuracy, macro-F1, train wall
time and predict examples/s as a table. Chinese text reaches fastText as space-separated characters.

    PYTHONPATH=. python bench/suite.py                      # every set, 10 minutes each (about an hour)
    PYTHONPATH=. python bench/suite.py --sets mr,subj --budget 5m
    PYTHONPATH=. python bench/suite.py --quick --sets mpqa  # a smoke run: 2,000 training rows, 60 s budget
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from textcls.device import machine_summary

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Set:
    name: str
    train: Path
    test: Path
    text: str  # column name, or index of a headerless file
    label: str
    flags: tuple[str, ...] = ()  # column flags for `textcls train` where detection is ambiguous
    cjk: bool = False


SETS = {
    "mr": Set("mr", SHARED / "mr" / "train.tsv", SHARED / "mr" / "test.tsv", "text", "label"),
    "subj": Set("subj", SHARED / "subj" / "train.tsv", SHARED / "subj" / "test.tsv", "text", "label"),
    "mpqa": Set("mpqa", SHARED / "mpqa" / "train.tsv", SHARED / "mpqa" / "test.tsv", "text", "label"),
    "sst2": Set("sst2", SHARED / "sst2" / "train.tsv", SHARED / "sst2" / "dev.tsv", "sentence", "label"),
    "chnsenticorp": Set("chnsenticorp", SHARED / "chnsenticorp" / "train.tsv", SHARED / "chnsenticorp" / "dev.tsv",
                        "text_a", "label", cjk=True),
    # headerless label, title, description: a pair, named by index
    "ag_news_demo": Set("ag_news_demo", ROOT / "data" / "ag_news_demo" / "train.csv",
                        ROOT / "data" / "ag_news_demo" / "test.csv", "1+2", "0",
                        ("--text-column", "1", "--text-column", "2", "--label-column", "0")),
}


def read(s: Set, path: Path, limit: Optional[int] = None) -> tuple[list[str], list[str]]:
    """(texts, labels) of a file; a pair's texts joined by a space (fastText reads one text)."""
    with open(path, encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            rows = list(csv.reader(handle))
            texts = [" ".join(r[int(i)] for i in s.text.split("+")) for r in rows]
            labels = [r[int(s.label)] for r in rows]
        else:
            rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
            header, rows = rows[0], rows[1:]
            texts = [r[header.index(s.text)] for r in rows]
            labels = [r[header.index(s.label)] for r in rows]
    return texts[:limit], labels[:limit]


def scores(gold: list[str], pred: list[str]) -> tuple[float, float]:
    labels = sorted(set(gold))
    g, p = np.asarray(gold), np.asarray(pred)
    f1s = []
    for y in labels:
        tp, fp, fn = np.sum((p == y) & (g == y)), np.sum((p == y) & (g != y)), np.sum((p != y) & (g == y))
        f1s.append(2 * tp / max(1, 2 * tp + fp + fn))
    return float(np.mean(g == p)), float(np.mean(f1s))


def run_fasttext(s: Set, train: tuple[list[str], list[str]], test: tuple[list[str], list[str]], tmp: Path,
                 **options) -> dict:
    import fasttext

    def prepare(text: str) -> str:
        text = " ".join(ch for ch in text if not ch.isspace()) if s.cjk else text
        return " ".join(text.split())

    path = tmp / f"{s.name}.ft.txt"
    path.write_text("".join(f"__label__{y} {prepare(x)}\n" for x, y in zip(*train)), encoding="utf-8")
    started = time.perf_counter()
    model = fasttext.train_supervised(str(path), thread=2, verbose=0, **options)
    train_s = time.perf_counter() - started
    texts = [prepare(x) for x in test[0]]
    started = time.perf_counter()
    pred = [labels[0].removeprefix("__label__") for labels in model.predict(texts)[0]]
    predict_s = time.perf_counter() - started
    acc, f1 = scores(test[1], pred)
    return {"accuracy": acc, "macro_f1": f1, "train_s": train_s, "predict_eps": len(texts) / max(predict_s, 1e-9)}


def run_textcls(s: Set, train_path: Path, budget: str, out: Path, test_rows: int) -> dict:
    textcls = [sys.executable, "-m", "textcls"]
    started = time.perf_counter()
    proc = subprocess.run([*textcls, "train", str(train_path), "--budget", budget, "--output", str(out), *s.flags,
                           "--set", "output.overwrite=true"], capture_output=True, text=True)
    train_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"textcls train {s.name} failed: {proc.stderr[-2000:]}")
    report = out.parent / f"{s.name}.eval.json"
    started = time.perf_counter()
    proc = subprocess.run([*textcls, "eval", str(out), str(s.test), "--report", str(report)], capture_output=True,
                          text=True)
    eval_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"textcls eval {s.name} failed: {proc.stderr[-2000:]}")
    metrics = json.loads(report.read_text())
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "train_s": train_s,
            "predict_eps": test_rows / max(eval_s, 1e-9)}  # eval includes process start and loading the run


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    parser.add_argument("--budget", default="10m", help="textcls's --budget per set (default 10m)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 training rows and a 60s budget")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "suite", help="folder for the runs")
    args = parser.parse_args(argv)
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    budget, limit = ("60s", 2000) if args.quick else (args.budget, None)
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name in names:
            s = SETS[name]
            train, test = read(s, s.train, limit), read(s, s.test)
            train_path = s.train
            if limit is not None:  # the first rows, in the file's own format
                train_path = tmp / f"{name}{s.train.suffix}"
                with open(s.train, encoding="utf-8") as handle:
                    head = [line for _, line in zip(range(limit + (s.train.suffix == ".tsv")), handle)]
                train_path.write_text("".join(head), encoding="utf-8")
            results = {f"textcls (auto, {budget})": run_textcls(s, train_path, budget, args.output / name,
                                                                len(test[0]))}
            results["fastText (defaults)"] = run_fasttext(s, train, test, tmp)
            results["fastText (bigrams, dim 50, 25 epochs, lr 0.5)"] = run_fasttext(
                s, train, test, tmp, wordNgrams=2, dim=50, epoch=25, lr=0.5)
            for system, r in results.items():
                rows.append((name, len(train[0]), len(test[0]), system, r))
                print(f"{name}: {system}: accuracy {r['accuracy']:.4f}", file=sys.stderr, flush=True)
    print("| set | train rows | test rows | system | accuracy | macro-F1 | train wall time | predict ex/s |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, n_train, n_test, system, r in rows:
        print(f"| {name} | {n_train:,} | {n_test:,} | {system} | {r['accuracy']:.2%} | {r['macro_f1']:.3f} | "
              f"{r['train_s']:.1f} s | {r['predict_eps']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
