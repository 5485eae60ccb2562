"""Distillation on the generalization suite: a fine-tuned MiniLM teacher, the student distilled from it by
`textcls distill`, the same student trained on the labels alone, and fastText's figure.

    python bench/distill.py                                   # mr, subj, mpqa, sst2 (all rows; SST-2 all 67k)
    python bench/distill.py --sst2-rows 10000 --budget 20m    # SST-2 on its first 10,000 training rows
    python bench/distill.py --sets mpqa --rows 300 --teacher-dir runs/bench_pretrained/mpqa-full-lr0.0001  # smoke

Per set, through the CLI only:
- teacher: `textcls train TRAIN --base MINILM --budget B` (the automatic recipe with the base), or the run given
  by --teacher-dir (a run directory, or a folder holding one run per set name);
- student: `textcls distill TEACHER --budget B` (no CONFIG: the automatic student, the teacher's lower layers
  or the recipe-sized shared encoder), on the teacher's training file and validation split (with --rows /
  --sst2-rows: `--set data.train=SUBSAMPLE`);
- label-only student: the same student on the same rows and split, with `train.max_steps` the student's step
  count and no time budget, so that it takes as many optimizer steps as the student did (whose epochs also
  cover the augmented copies): for a student of the teacher's layers, `textcls distill` with `distill.alpha=0`
  and no augmented copies (the same starting layers); otherwise `textcls train` with the student's own
  config.yaml less its `distill` section;
- each (the teacher's figures can come from an earlier run's --json: --teacher-figures): `textcls eval RUN TEST`
  (test accuracy), unique parameters (`model.parameters()`, shared layers once),
  the size of its weights files, and `textcls predict RUN INPUT` timed as a whole process (start, load, predict)
  with OMP_NUM_THREADS=--threads, as examples/s, where INPUT is the test file's rows repeated to --predict-rows
  rows (default 10,000, the same file for every system), so that throughput rather than start-up is timed.
fastText's figure is the better of its two settings in ../shared/data/README.md (bench/pretrained.py). --rows N
takes the first N training rows of every set: a smoke run, whose figures say only that the pipeline works.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrained import DATA, FASTTEXT_BEST, ROOT, SETS, minilm_folder, subsample, weights_bytes

from textcls.device import machine_summary


def cli(*args: str, threads: int, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m textcls ARGS` with this checkout first on PYTHONPATH; (the process, its wall seconds)."""
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *inherited]), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "textcls", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise RuntimeError(f"textcls {' '.join(args)} failed:\n{done.stderr[-1500:]}")
    return done, seconds


def repeated(test: Path, rows: int, folder: Path) -> Path:
    """The test file's data rows repeated (in order) to `rows` rows, under its header: the predict timing input."""
    header, *lines = test.read_text(encoding="utf-8").splitlines(keepends=True)
    if rows <= len(lines):
        return test
    target = folder / f"{test.parent.name}-predict-{rows}.tsv"
    target.write_text(header + "".join(lines[i % len(lines)] for i in range(rows)), encoding="utf-8")
    return target


def measure(run: Path, test: Path, threads: int, timing_input: Path | None = None) -> dict:
    """Test accuracy, unique parameters, weights bytes and whole-process predict examples/s of a run (on
    `timing_input`, default the test file)."""
    from textcls.run.load import load_run

    report = run / "test_report.json"
    cli("eval", str(run), str(test), "--report", str(report), threads=threads)
    accuracy = json.loads(report.read_text())["accuracy"]
    loaded = load_run(run)
    params = sum(p.numel() for p in loaded.model.parameters())  # parameters() counts a shared tensor once
    weights = weights_bytes(run)
    timing_input = timing_input or test
    rows = sum(1 for _ in open(timing_input, encoding="utf-8")) - 1  # the header
    _, seconds = cli("predict", str(run), str(timing_input), "--output", str(run / "timing_predictions.jsonl"),
                     threads=threads)
    return {"test_accuracy": accuracy, "unique_parameters": params, "weights_bytes": weights,
            "predict_examples_per_second": rows / seconds, "predict_seconds": seconds}


def teacher_for(name: str, train_file: Path, base: Path | None, teacher_dir: Path | None, out: Path, budget: str,
                threads: int) -> Path:
    if teacher_dir is not None:
        run = teacher_dir if (teacher_dir / "config.yaml").is_file() else teacher_dir / name
        if not (run / "config.yaml").is_file():
            sys.exit(f"--teacher-dir {teacher_dir}: no run for {name} (neither it nor {run} holds config.yaml)")
        return run
    _, text, label = SETS[name][1:]
    cli("train", str(train_file), "--base", str(base), "--budget", budget, "--text-column", text,
        "--label-column", label, "--output", str(out), "--set", "output.overwrite=true", "--quiet", threads=threads)
    return out


def label_only(student: Path, teacher: Path, out: Path, threads: int, sets: list[str]) -> Path:
    """The same student trained on the labels alone, for as many steps as the student took. A student of the
    teacher's lower layers (`distill.student_layers` > 0) starts from the same layers: `textcls distill` with
    `distill.alpha: 0` and no augmented copies (the teacher lends its layers and nothing else), at the student's
    word-table rank and feed-forward width. Any other student: its config.yaml less `distill` (and the recipe
    record) through `textcls train`."""
    cfg = yaml.safe_load((student / "config.yaml").read_text(encoding="utf-8"))
    info = json.loads((student / "run.json").read_text())
    records = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    steps = int(max((r["step"] for r in records), default=info.get("step", 1)))
    if (cfg.get("distill") or {}).get("student_layers"):
        model = cfg.get("model") or {}
        rank = (model.get("embeddings") or {}).get("word_rank")  # the student's, not re-fitted
        cli("distill", str(teacher), "--output", str(out), "--quiet", *sets, "--set=distill.alpha=0",
            "--set=distill.augment_copies=0", f"--set=distill.student_layers={cfg['distill']['student_layers']}",
            f"--set=model.embeddings.word_rank={'null' if rank is None else rank}",
            f"--set=model.intermediate_size={model['intermediate_size']}",
            f"--set=train.max_steps={steps}", "--set=train.time_budget_seconds=null", threads=threads)
        return out
    cfg.pop("distill", None)
    cfg.pop("recipe", None)
    cfg["train"]["max_steps"] = steps
    cfg["train"]["time_budget_seconds"] = None  # the step count bounds it, not a slower machine's moment
    cfg["output"] = {"dir": str(out), "overwrite": True}
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    cli("train", str(path), "--quiet", threads=threads)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=None, help="HF model folder (default: the PyPI MiniLM)")
    parser.add_argument("--teacher-dir", type=Path, default=None, help="an existing teacher run (or a folder of "
                        "runs named by set); default: fine-tune MiniLM")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sets", default="mr,subj,mpqa,sst2")
    parser.add_argument("--rows", type=int, default=0, help="train on the first N rows of every set (a smoke run)")
    parser.add_argument("--sst2-rows", type=int, default=0, help="train on the first N SST-2 rows (0: all)")
    parser.add_argument("--budget", default="10m", help="each teacher's and each student's budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--predict-rows", type=int, default=10_000, help="rows of the predict timing input")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_distill")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="--set for the student")
    parser.add_argument("--teacher-figures", type=Path, default=None, help="the --json of an earlier run with the "
                        "same --teacher-dir: its teachers' figures are reported and the teachers not measured again")
    args = parser.parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine

    base = None if args.teacher_dir else (args.base or minilm_folder(ROOT / "runs" / "bases" / "all-MiniLM-L6-v2"))
    data = args.data.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="textcls-bench-distill-"))
    results = []
    earlier = {r["set"]: r for r in json.loads(args.teacher_figures.read_text())} if args.teacher_figures else {}
    for name in args.sets.split(","):
        train_rel, test_rel, _, _ = SETS[name]
        train_file, test = data / train_rel, data / test_rel
        rows = args.rows or (args.sst2_rows if name == "sst2" else 0)
        if rows:
            train_file = subsample(train_file, rows, scratch)
        out = args.output / name
        out.mkdir(parents=True, exist_ok=True)
        teacher = teacher_for(name, train_file, base, args.teacher_dir, out / "teacher", args.budget, args.threads)
        student = out / "student"
        sets = [f"--set={o}" for o in ["output.overwrite=true", *args.overrides]]
        if rows or args.teacher_dir:  # the subsample (or the set's file) rather than the teacher's own file
            sets.append(f"--set=data.train={train_file}")
        _, seconds = cli("distill", str(teacher), "--output", str(student), "--budget", args.budget, "--quiet",
                         *sets, threads=args.threads)
        plain = label_only(student, teacher, out / "labels-only", args.threads, sets)
        row = {"set": name, "rows": rows or "all", "fasttext": FASTTEXT_BEST[name], "distill_seconds": seconds}
        timing_input = repeated(test, args.predict_rows, scratch)
        row["predict_rows"] = max(args.predict_rows, sum(1 for _ in open(test, encoding="utf-8")) - 1)
        for role, run in (("teacher", teacher), ("student", student), ("labels_only", plain)):
            if role == "teacher" and name in earlier:
                row[role] = {**earlier[name]["teacher"], "from": str(args.teacher_figures)}
                continue
            row[role] = measure(run, test, args.threads, timing_input)
        results.append(row)
        if args.json:
            args.json.with_suffix(".jsonl").open("a", encoding="utf-8").write(json.dumps(row) + "\n")

    print(f"{'set':5} {'system':12} {'test acc':>8} {'params':>11} {'weights MB':>10} {'predict ex/s':>12}")
    for r in results:
        for role in ("teacher", "student", "labels_only"):
            m = r[role]
            print(f"{r['set']:5} {role:12} {100 * m['test_accuracy']:8.2f} {m['unique_parameters']:11,} "
                  f"{m['weights_bytes'] / 1e6:10.2f} {m['predict_examples_per_second']:12.1f}")
        print(f"{r['set']:5} {'fastText':12} {r['fasttext']:8.2f}")
    for r in results:  # the targets: speed-up, share of parameters, share of the teacher's gain kept
        t, s, plain = r["teacher"], r["student"], r["labels_only"]
        gain = 100 * t["test_accuracy"] - r["fasttext"]
        kept = (100 * s["test_accuracy"] - r["fasttext"]) / gain if gain > 0 else float("nan")
        speedup = s["predict_examples_per_second"] / t["predict_examples_per_second"]
        print(f"{r['set']:5} student/teacher: predict {speedup:.2f}x, "
              f"parameters 1/{t['unique_parameters'] / s['unique_parameters']:.1f}, gain over fastText kept "
              f"{100 * kept:.0f}%, vs labels only {100 * (s['test_accuracy'] - plain['test_accuracy']):+.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
