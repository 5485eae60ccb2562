"""How accuracy grows with ensemble size: every k-member subset of a finished ensemble, on a labelled file.

    PYTHONPATH=. python bench/ensemble_curve.py runs/sst2_best ../shared/data/sst2/dev.tsv
    PYTHONPATH=. python bench/ensemble_curve.py runs/chnsenticorp_best dev.tsv --exclude-texts-of train.tsv

Each member predicts the file once; for k = 1 .. N the script prints the mean, lowest and highest
accuracy over all k-member subsets (probabilities averaged, as `predict` does), so one run shows how
many members a recipe needs. `--exclude-texts-of FILE` scores only rows whose text is not in FILE
(ChnSentiCorp's dev overlaps its train split).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from textcls.device import machine_summary


def scored_rows(run, data_file: str, exclude_texts_of: Optional[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A labelled file's texts, gold label indexes in the run's label order, and which rows to score
    (those whose text is not in `exclude_texts_of`, or all)."""
    from textcls.data.labels import LabelNamer
    from textcls.data.readers import iter_records

    records = list(iter_records(data_file, run.cfg.data, labelled=True))
    namer = LabelNamer(run.cfg.data)  # label values that index a label-name file
    texts = [r.text for r in records]
    gold = np.array([run.labels.index(namer(r.labels[0])) for r in records])
    keep = np.ones(len(records), dtype=bool)
    if exclude_texts_of:
        seen = {r.text for r in iter_records(exclude_texts_of, run.cfg.data, labelled=True)}
        keep = np.array([t not in seen for t in texts])
    return texts, gold, keep


def main(argv: Optional[list[str]] = None) -> int:
    from textcls.predict import predict_probabilities
    from textcls.run.load import load_run
    from textcls.run.members import member_dirs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="A finished run with train.ensemble > 1.")
    parser.add_argument("data_file", help="Labelled file in the run's data format.")
    parser.add_argument("--exclude-texts-of", default=None, help="Score only rows whose text is not in this file.")
    parser.add_argument("--max-subsets", type=int, default=200, help="Subsets sampled per size at most.")
    args = parser.parse_args(argv)
    print(machine_summary(), flush=True)  # the figures below belong to this machine

    texts, gold, keep = scored_rows(load_run(args.run_dir), args.data_file, args.exclude_texts_of)
    probs = []
    for path in member_dirs(args.run_dir):
        probs.append(predict_probabilities(load_run(path), texts))
        print(f"{path}: accuracy {np.mean(probs[-1].argmax(1)[keep] == gold[keep]):.4f}", flush=True)
    rng = np.random.default_rng(0)
    print(f"{int(keep.sum())} rows scored")
    print("members  mean acc  lowest  highest  subsets")
    for k in range(1, len(probs) + 1):
        subsets = list(itertools.combinations(range(len(probs)), k))
        if len(subsets) > args.max_subsets:
            subsets = [subsets[i] for i in rng.choice(len(subsets), args.max_subsets, replace=False)]
        accs = [np.mean(np.mean([probs[i] for i in s], 0).argmax(1)[keep] == gold[keep]) for s in subsets]
        print(f"{k:>7}  {np.mean(accs):.4f}    {min(accs):.4f}  {max(accs):.4f}  {len(subsets):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
