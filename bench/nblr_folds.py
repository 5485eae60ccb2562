"""The bag-of-n-grams model alone, by k-fold accuracy on each suite set's training rows (no test file read).

How `nblr.normalize`, `nblr.c` and `nblr.chars` were chosen for the automatic recipe: each setting is fitted on k-1
folds of a set's training file and scored on the fold left out, over the same seeded folds for every
setting. Prints one row per set and the mean over the sets. Where the recipe would hold out whole texts (most
rows lie inside another row: SST-2), the folds do the same.

    PYTHONPATH=. python bench/nblr_folds.py                               # every set, 5 folds
    PYTHONPATH=. python bench/nblr_folds.py --sets mpqa,mr --folds 3
    PYTHONPATH=. python bench/nblr_folds.py --sets sst2 --limit 12000     # the first 12,000 rows of a large set
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import SETS, read

from textcls.data.overlap import Containment, inside_share, text_key
from textcls.device import machine_summary
from textcls.model.nblr import fit_nblr_model
from textcls.recipe.rules import WHOLE_TEXTS_SHARE

SETTINGS = {  # name -> fit_nblr_model options; the first is the schema's default
    "binary, c 1": {"c": 1.0},
    "unit length, c 3": {"normalize": True, "c": 3.0},
    "unit length, c 10": {"normalize": True, "c": 10.0},
    "unit length, c 30": {"normalize": True, "c": 30.0},
    "unit length, c 10, min count 1": {"normalize": True, "c": 10.0, "min_count": 1},
    "unit length, c 30, min count 1": {"normalize": True, "c": 30.0, "min_count": 1},
    "unit length, c 10, chars 3-5": {"normalize": True, "c": 10.0, "chars": (3, 5)},
    "unit length, c 30, chars 3-5": {"normalize": True, "c": 30.0, "chars": (3, 5)},
    "unit length, c 10, chars 2-4": {"normalize": True, "c": 10.0, "chars": (2, 4)},
    "unit length, c 10, chars 3-6": {"normalize": True, "c": 10.0, "chars": (3, 6)},
}


def fold_accuracy(texts: list[str], labels: list[str], options: dict, folds: int, seed: int,
                  whole_texts: bool = False) -> float:
    """Mean accuracy over `folds` seeded folds: fitted on the others, scored on each. `whole_texts`: the folds
    are made of the rows inside no other row, and a fold's model is fitted without the rows inside its held-out
    texts, as the recipe holds rows out of such a file (`data.valid_whole_texts`)."""
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    inside = Containment([text_key(t) for t in texts]) if whole_texts else None
    whole = np.asarray(inside.whole() if inside is not None else range(len(texts)), dtype=np.int64)
    fold = np.full(len(texts), -1)
    fold[whole[np.random.default_rng(seed).permutation(len(whole))]] = np.arange(len(whole)) % folds
    scores = []
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        trained = fold != f
        if inside is not None:
            trained[inside.within_any(held)] = False
        train = np.flatnonzero(trained)
        model = fit_nblr_model([texts[i] for i in train], None, np.eye(len(names), dtype=np.float32)[y[train]],
                               **options)
        predicted = model.probabilities([texts[i] for i in held]).argmax(1)
        scores.append(float(np.mean(predicted == y[held])))
    return float(np.mean(scores))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="the first N training rows of each set")
    parser.add_argument("--settings", default=None,
                        help="comma-separated numbers of the settings to fit (default all): " +
                        "; ".join(f"{i} {name}" for i, name in enumerate(SETTINGS, 1)))
    args = parser.parse_args(argv)
    chosen = args.settings.split(",") if args.settings else [str(i) for i in range(1, len(SETTINGS) + 1)]
    if not all(i.strip().isdigit() and 1 <= int(i) <= len(SETTINGS) for i in chosen):
        parser.error(f"--settings takes numbers from 1 to {len(SETTINGS)}, got {args.settings}")
    settings = dict(list(SETTINGS.items())[int(i) - 1] for i in chosen)
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    print(machine_summary(), flush=True)
    table = {}
    for name in names:
        texts, labels = read(SETS[name], SETS[name].train, args.limit)
        started = time.perf_counter()
        whole = inside_share([text_key(t) for t in texts]) >= WHOLE_TEXTS_SHARE
        table[name] = {s: fold_accuracy(texts, labels, o, args.folds, args.seed, whole) for s, o in settings.items()}
        print(f"{name}: {len(texts):,} rows{', folds of whole texts' if whole else ''}, "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"| set ({args.folds}-fold accuracy) | " + " | ".join(settings) + " |")
    print("| --- |" + " ---: |" * len(settings))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{row[s]:.2%}" for s in settings) + " |")
    print("| mean | " + " | ".join(f"{np.mean([row[s] for row in table.values()]):.2%}" for s in settings) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
