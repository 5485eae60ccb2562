"""Which members make a good ensemble: train single members of a config over variants x seeds, then score
averages of them on a labelled file.

    PYTHONPATH=. python bench/member_grid.py configs/sst2_best.yaml ../shared/data/sst2/dev.tsv \\
        --variant base= --variant v16k=tokenizer.vocab_size=16000 --seeds 7 --parallel 8 \\
        --set train.device=cuda --mix base --mix v16k --mix base+v16k --size 12

Each member is `textcls train CONFIG --set train.ensemble=1 --set train.seed=S` plus its variant's
overrides (comma-separated `key=value`s), run as its own process, `--parallel` at a time (on a GPU
several small members share the card; on a CPU give each one thread). Finished members are kept under
`--out` and reused on a rerun. The report gives, per variant, the mean accuracy of its members and, per
`--mix`, the mean (10th-90th percentile) accuracy of `--size`-member ensembles drawn from it: the same
number of members from each variant of the mix (seeds drawn per variant), probabilities averaged as
`predict` does, over `--draws` random draws. `--exclude-texts-of FILE` scores only rows whose text is not in FILE.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
from ensemble_curve import scored_rows  # bench/ is on sys.path when a script in it runs

from textcls.device import machine_summary


def parse_variant(spec: str) -> tuple[str, list[str]]:
    name, _, sets = spec.partition("=")
    if not name:
        raise SystemExit(f"--variant {spec!r}: expected NAME=key=value,key=value (or NAME= for the config as is)")
    return name, [s for s in sets.split(",") if s]


def train_member(config: str, run: Path, seed: int, sets: list[str]) -> Optional[str]:
    """Train one member unless it is already there; an error message, or None."""
    if (run / "model.safetensors").exists() and (run / "eval_report.json").exists():
        return None
    cmd = [sys.executable, "-m", "textcls", "train", config, "--output", str(run), "--quiet",
           "--set", "train.ensemble=1", "--set", f"train.seed={seed}", "--set", "output.overwrite=true"]
    for s in sets:
        cmd += ["--set", s]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return None if done.returncode == 0 else f"{run.name}: {done.stderr.strip()[-400:]}"


def main(argv: Optional[list[str]] = None) -> int:
    from textcls.predict import predict_probabilities
    from textcls.run.load import load_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("data_file", help="Labelled file to score members and ensembles on.")
    parser.add_argument("--variant", action="append", default=[], help="NAME=key=value,key=value (repeatable).")
    parser.add_argument("--set", action="append", default=[], help="key=value for every member (repeatable).")
    parser.add_argument("--seeds", type=int, default=4, help="Members per variant (seeds 0..N-1).")
    parser.add_argument("--parallel", type=int, default=2, help="Members trained at once.")
    parser.add_argument("--mix", action="append", default=[], help="Variants joined by '+' (repeatable).")
    parser.add_argument("--size", type=int, default=0, help="Members per ensemble (default: all of a mix).")
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--exclude-texts-of", default=None, help="Score only rows whose text is not in this file.")
    parser.add_argument("--out", type=Path, default=Path("runs/member_grid"))
    args = parser.parse_args(argv)
    print(machine_summary(), flush=True)  # the figures below belong to this machine

    variants = dict(parse_variant(v) for v in args.variant) or {"base": []}
    jobs = [(name, seed) for seed in range(args.seeds) for name in variants]
    with ThreadPoolExecutor(args.parallel) as pool:
        errors = [e for e in pool.map(lambda j: train_member(args.config, args.out / f"{j[0]}_s{j[1]}", j[1],
                                                             args.set + variants[j[0]]), jobs) if e]
    for e in errors:
        print("failed:", e, file=sys.stderr)
    if errors:
        return 1

    texts, gold, keep = scored_rows(load_run(args.out / f"{jobs[0][0]}_s0"), args.data_file, args.exclude_texts_of)
    probs = {(name, seed): predict_probabilities(load_run(args.out / f"{name}_s{seed}"), texts, batch_size=64)
             for name, seed in jobs}

    def accuracy(members: list[tuple[str, int]]) -> float:
        mean = np.mean([probs[m] for m in members], axis=0)
        return 100 * float((mean.argmax(-1) == gold)[keep].mean())

    print(f"{args.data_file}: {int(keep.sum())} rows scored")
    print(f"{'variant':<12} {'members':>7} {'member mean':>12}")
    for name in variants:
        accs = [accuracy([(name, s)]) for s in range(args.seeds)]
        print(f"{name:<12} {len(accs):>7} {np.mean(accs):>11.2f}%")
    rng = random.Random(0)
    for mix in args.mix:
        names = mix.split("+")
        size = args.size or len(names) * args.seeds
        per = [size // len(names) + (i < size % len(names)) for i in range(len(names))]
        if max(per) > args.seeds:
            print(f"{mix}: {size} members need {max(per)} seeds per variant; --seeds is {args.seeds}")
            continue
        accs = []
        for _ in range(args.draws):
            members = [(name, s) for name, k in zip(names, per) for s in rng.sample(range(args.seeds), k)]
            accs.append(accuracy(members))
        print(f"{mix:<24} {size:>3} members  {np.mean(accs):.2f}% ({np.percentile(accs, 10):.2f}-"
              f"{np.percentile(accs, 90):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
