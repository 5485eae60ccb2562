"""Fine-tuning speed: textcls against HF Trainer on the same pretrained base (all-MiniLM-L6-v2) and data.

    PYTHONPATH=. python bench/finetune_speed.py                 # 2,000 SST-2 rows, the recipe's epochs
    PYTHONPATH=. python bench/finetune_speed.py --quick         # 200 rows, 1 epoch: a smoke run
    PYTHONPATH=. python bench/finetune_speed.py --rows 5000 --epochs 1 --threads 2 --json ft.json

Data: the first --rows rows of SST-2's train.tsv, and its dev.tsv for prediction (../shared/data/sst2). SST-2
only: MiniLM's tokenizer is English and uncased, so ChnSentiCorp would be one [UNK] after another.
Each system runs in its own subprocess (on the CPU, then on the GPU when there is one), so peak RSS is each
one's own (VmHWM of the process: loading, tokenizing, training and prediction).

textcls is fine-tuned as a user does it, `textcls train TRAIN --base DIR --valid DEV`, run in-process through
the CLI (with `--budget 24h` so that the budget never cuts epochs, `--set nblr.weight=0 --set
train.ensemble=1`: one transformer alone, `--set train.num_threads=N`, and --epochs as `--set
train.epochs=E`). Its training time is
`Trainer.fit()` less the evaluations and `last/` checkpoints inside it, read by wrapping those methods
(the code path is unchanged): the step loop alone, from its first batch until the last step's work is
done. HF Trainer gets textcls's resolved choices (lr, epochs, warmup, weight decay, clipping, batch 32,
schedule, bf16 where textcls computes in bf16, seed) with group_by_length, DataCollatorWithPadding, no
evaluation, no saving and no integrations; its time runs from on_train_begin to on_train_end (a
callback). The texts are tokenized by the checkpoint's own fast tokenizer with textcls's max_length
before training starts. Examples/s = training examples (rows x epochs) / those seconds; on a GPU both
ends are synchronized. The heads differ as each system's default does: textcls pools by the mean (the base's
sentence-transformers Pooling module), HF's BertForSequenceClassification by its pooler; both are tiny.

Prediction: texts in, probabilities out, on the dev sentences, batches of 64 in fp32 (`textcls predict`'s
defaults; --predict-precision bf16 for both) after one warm-up batch: textcls's run predictor (tokenize,
length-sorted batches) against HF's fast tokenizer + `model(...)` under torch.inference_mode on length-sorted,
dynamically padded batches. The HF model is first unwrapped of the bf16 autocast that accelerate wraps
around forward() when training in bf16 (it would otherwise predict in bf16 where textcls predicts in fp32).
The ratios (textcls / HF) are the figures to read; issue 28's targets are training >= 1.3x and
prediction >= 2x. Absolute numbers move with the machine's load: run it on idle cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrained import DATA, ROOT, minilm_folder, subsample

from textcls.device import machine_summary

TEXT, LABEL = "sentence", "label"
PREDICT_BATCH = 64  # `textcls predict --batch-size` default
TARGETS = {"train": 1.3, "predict": 2.0}  # issue 28: textcls / HF
HF_SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup",
                "polynomial": "polynomial"}


# ------------------------------------------------------------------ helpers (tests/test_bench_finetune_speed.py)


def hf_training_arguments(choices: dict, device: str, output_dir: str, fields: set[str]) -> dict:
    """TrainingArguments keywords equivalent to textcls's resolved `choices` (lr, epochs, warmup, ...).

    `fields`: the installed TrainingArguments' field names; transformers 5 spells `group_by_length=True`
    as `train_sampling_strategy="group_by_length"` and a warmup ratio as a float `warmup_steps`.
    Raises ValueError for a textcls schedule HF lacks."""
    if choices["schedule"] not in HF_SCHEDULES:
        raise ValueError(f"no HF scheduler for textcls's {choices['schedule']!r} schedule")
    args = {"output_dir": output_dir, "per_device_train_batch_size": choices["batch_size"],
            "learning_rate": choices["lr"], "num_train_epochs": choices["epochs"],
            "lr_scheduler_type": HF_SCHEDULES[choices["schedule"]], "weight_decay": choices["weight_decay"],
            "max_grad_norm": choices["max_grad_norm"] or 0.0, "seed": choices["seed"],
            "bf16": choices["precision"] == "bf16", "use_cpu": device == "cpu", "dataloader_num_workers": 0,
            "report_to": [], "save_strategy": "no", "disable_tqdm": True}
    args.update({"eval_strategy": "no"} if "eval_strategy" in fields else {"evaluation_strategy": "no"})
    if "group_by_length" in fields:
        args["group_by_length"] = True
    else:
        args["train_sampling_strategy"] = "group_by_length"
    warmup = choices["warmup"]
    if warmup >= 1:
        args["warmup_steps"] = int(warmup)
    elif "warmup_ratio" in fields:
        args["warmup_ratio"] = warmup
    else:
        args["warmup_steps"] = float(warmup)
    return args


def examples_seen(steps: int, rows: int, batch_size: int) -> int:
    """Training examples in `steps` batches over epochs of `rows` rows (each epoch's last batch partial)."""
    per_epoch = math.ceil(rows / batch_size)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * rows + min(rest * batch_size, rows)


def ratio_rows(results: list[dict]) -> list[dict]:
    """Per device, textcls / HF of training and prediction examples/s and of peak RSS (None where missing)."""
    rows = []
    for device in dict.fromkeys(r["device"] for r in results):
        by = {r["system"]: r for r in results if r["device"] == device and "error" not in r}
        if {"textcls", "HF"} <= set(by):
            ours, theirs = by["textcls"], by["HF"]
            rows.append({"device": device, **{key: ours[key] / theirs[key] if theirs.get(key) else None
                                              for key in ("train_ex_s", "predict_ex_s", "peak_rss_mb")}})
    return rows


def format_table(results: list[dict]) -> str:
    """The systems' figures, then their ratios (textcls / HF) beside the issue's targets."""
    lines = [f"{'device':6} {'system':10} {'threads':>7} {'precision':>9} {'train ex/s':>10} {'predict ex/s':>12} "
             f"{'peak RSS MB':>11} {'dev acc':>7}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['device']:6} {r['system']:10} ERROR {r['error']}")
            continue
        lines.append(f"{r['device']:6} {r['system']:10} {r['threads']:>7} {r['precision']:>9} {r['train_ex_s']:>10.1f} "
                     f"{r['predict_ex_s']:>12.1f} {r['peak_rss_mb']:>11.0f} {r['accuracy']:>7.4f}")
    for q in ratio_rows(results):
        show = lambda v: f"{v:.2f}x" if v is not None else "-"  # noqa: E731
        lines.append(f"{q['device']:6} {'textcls/HF':10} {'':>7} {'':>9} {show(q['train_ex_s']):>10} "
                     f"{show(q['predict_ex_s']):>12} {show(q['peak_rss_mb']):>11}")
    hf = {r["device"]: r for r in results if r["system"] == "HF" and "error" not in r}
    for r in results:
        if r["system"] == "textcls" and "predict_onnx_ex_s" in r:
            theirs = hf.get(r["device"])
            versus = f", {r['predict_onnx_ex_s'] / theirs['predict_ex_s']:.2f}x HF" if theirs else ""
            lines.append(f"{r['device']:6} textcls predict --runtime onnx: {r['predict_onnx_ex_s']:.1f} ex/s{versus} "
                         f"(export and check {r['onnx_export_seconds']:.1f} s, once; max |dp| "
                         f"{r['onnx_max_difference']:.1e})")
    lines.append(f"targets (issue 28): training >= {TARGETS['train']}x, prediction >= {TARGETS['predict']}x")
    return "\n".join(lines)


# --------------------------------------------------------------------------- both workers


def peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM: of this executable since exec, unlike a child's rusage,
    which carries the forking parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def read_rows(path: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of a TSV, through textcls's reader, so both systems get the same strings."""
    from textcls.config import config_from_dict
    from textcls.data.readers import iter_records

    cfg = config_from_dict({"data": {"text_columns": [TEXT], "label_column": LABEL}}).data
    records = list(iter_records(path, cfg, labelled=True))
    return [r.text for r in records], [r.labels[0] for r in records]


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed_predict(predict, texts: list[str]) -> tuple[object, float]:
    """(probabilities, seconds) of `predict(texts)` after a warm-up call on one batch."""
    predict(texts[:PREDICT_BATCH])
    started = time.perf_counter()
    probs = predict(texts)
    return probs, time.perf_counter() - started


# --------------------------------------------------------------------------- textcls worker


class LoopClock:
    """Seconds of textcls's step loop: `Trainer.fit()` less the evaluations and checkpoints it runs, timed by
    wrapping those three methods for the duration of a `with` block (the methods themselves run unchanged)."""

    def __init__(self):
        self.seconds = 0.0
        self.examples = self.steps = self.threads = 0
        self._depth = 0  # evaluate() calls checkpoint(): only the outermost pause counts

    def __enter__(self) -> "LoopClock":
        import torch

        from textcls.train.engine import Trainer

        self._saved = {name: getattr(Trainer, name) for name in ("fit", "evaluate", "checkpoint")}
        fit, clock = self._saved["fit"], self

        def timed_fit(trainer):
            sync(trainer.device)
            started = time.perf_counter()
            try:
                return fit(trainer)
            finally:
                sync(trainer.device)
                clock.seconds += time.perf_counter() - started
                clock.examples += trainer.progress.examples
                clock.steps += trainer.state.step
                clock.threads = torch.get_num_threads()

        def paused(method):
            def run(trainer, *args, **kwargs):
                clock._depth += 1
                if clock._depth == 1:
                    sync(trainer.device)  # the queued step work belongs to the loop
                started = time.perf_counter()
                try:
                    return method(trainer, *args, **kwargs)
                finally:
                    clock._depth -= 1
                    if clock._depth == 0:
                        clock.seconds -= time.perf_counter() - started
            return run

        Trainer.fit = timed_fit
        Trainer.evaluate = paused(self._saved["evaluate"])
        Trainer.checkpoint = paused(self._saved["checkpoint"])
        return self

    def __exit__(self, *exc) -> None:
        from textcls.train.engine import Trainer

        for name, method in self._saved.items():
            setattr(Trainer, name, method)


def textcls_worker(spec: dict) -> dict:
    """`textcls train TRAIN --base DIR --valid DEV ...` in this process, then its run's predictor on DEV."""
    import torch

    from textcls.cli import app
    from textcls.device import resolve_precision
    from textcls.predictor import run_predictor
    from textcls.run.info import load_run_config
    from textcls.run.load import load_run

    argv = ["train", spec["train"], "--base", spec["base"], "--valid", spec["dev"], "--text-column", TEXT,
            "--label-column", LABEL, "--budget", "24h", "--output", spec["out"], "--quiet",
            "--set", "nblr.weight=0", "--set", "train.ensemble=1",
            "--set", "output.overwrite=true", "--set", f"train.seed={spec['seed']}",
            "--set", f"train.num_threads={spec['threads']}", "--set", f"train.device={spec['device']}"]
    if spec.get("epochs"):
        argv += ["--set", f"train.epochs={spec['epochs']}"]
    with LoopClock() as clock:
        code = app(argv, standalone_mode=False)
    if code:
        raise SystemExit(code)
    train_peak = peak_rss_mb()
    cfg = load_run_config(Path(spec["out"]))
    device = torch.device(spec["device"])
    t = cfg.train
    choices = {"max_length": cfg.data.max_length, "lr": t.lr, "epochs": t.epochs, "warmup": t.warmup,
               "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm, "batch_size": t.batch_size,
               "schedule": t.schedule, "seed": t.seed, "precision": resolve_precision(t.precision, device),
               "pooling": cfg.model.pooling}
    run = load_run(spec["out"], device=device)
    predictor = run_predictor(run, PREDICT_BATCH, device, spec["predict_precision"])
    texts, labels = read_rows(spec["dev"])
    probs, seconds = timed_predict(lambda x: predictor.predict_proba(x), texts)
    right = sum(run.labels[i] == y for i, y in zip(probs.argmax(1), labels))
    onnx = {}
    if device.type == "cpu" and spec["predict_precision"] == "fp32":  # `textcls predict --runtime onnx`'s path
        from textcls.export.runtime import use_onnx

        started = time.perf_counter()  # the export and its check, once per run (then cached in the run)
        onnx_predictor = use_onnx(run_predictor(run, PREDICT_BATCH, device, "fp32"), Path(spec["out"]),
                                  cfg.data.max_length)
        export_seconds = time.perf_counter() - started
        onnx_probs, onnx_seconds = timed_predict(lambda x: onnx_predictor.predict_proba(x), texts)
        onnx = {"onnx_export_seconds": export_seconds, "predict_onnx_ex_s": len(texts) / onnx_seconds,
                "onnx_max_difference": float(abs(onnx_probs - probs).max())}
    return {"system": "textcls", "device": spec["device"], "threads": clock.threads, "precision": choices["precision"],
            "predict_precision": spec["predict_precision"],
            "train_examples": clock.examples, "train_steps": clock.steps, "train_seconds": clock.seconds,
            "train_ex_s": clock.examples / clock.seconds, "predict_rows": len(texts), "predict_seconds": seconds,
            "predict_ex_s": len(texts) / seconds, "accuracy": right / len(texts),
            "train_peak_rss_mb": train_peak, "peak_rss_mb": peak_rss_mb(), "choices": choices, **_cuda_peak(device),
            **onnx}


def _cuda_peak(device) -> dict:
    import torch

    if torch.device(device).type != "cuda":
        return {}
    return {"cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20}


# --------------------------------------------------------------------------- HF worker


def hf_worker(spec: dict) -> dict:
    """AutoModelForSequenceClassification + Trainer with textcls's choices (spec["choices"]), then prediction."""
    import dataclasses

    import datasets
    import numpy as np
    import torch
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from textcls.run.bases import hf_model_dir

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(spec["threads"])
    choices, device = spec["choices"], spec["device"]
    folder = hf_model_dir(Path(spec["base"]))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts, labels = read_rows(spec["train"])
    label_ids = sorted(set(labels))  # class i of the HF head is label_ids[i]
    data = datasets.Dataset.from_dict({"text": texts, "label": [label_ids.index(y) for y in labels]})
    data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=choices["max_length"]),
                    batched=True, remove_columns=["text"])
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(label_ids)).float()

    class Clock(TrainerCallback):
        seconds, threads = 0.0, 0

        def on_train_begin(self, args, state, control, **kwargs):
            sync(device)
            self.started, self.threads = time.perf_counter(), torch.get_num_threads()

        def on_train_end(self, args, state, control, **kwargs):
            sync(device)
            self.seconds = time.perf_counter() - self.started

    clock = Clock()
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    with tempfile.TemporaryDirectory(prefix="hf-trainer-") as out:
        args = TrainingArguments(**hf_training_arguments(choices, device, out, fields))
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
                          callbacks=[clock])
        trainer.train()
    steps = trainer.state.global_step
    examples = examples_seen(steps, len(data), choices["batch_size"])
    train_peak = peak_rss_mb()

    # accelerate leaves its mixed-precision autocast wrapped around forward(): without it, the precision below
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval()
    collate = DataCollatorWithPadding(tokenizer)
    target = torch.device("cuda" if device == "cuda" else "cpu")

    @torch.inference_mode()
    def predict(batch_texts: list[str]) -> np.ndarray:
        enc = tokenizer(batch_texts, truncation=True, max_length=choices["max_length"])
        order = np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
        probs = np.zeros((len(batch_texts), len(label_ids)), dtype=np.float32)
        for start in range(0, len(order), PREDICT_BATCH):
            rows = order[start:start + PREDICT_BATCH]
            batch = collate([{k: enc[k][i] for k in enc} for i in rows])
            with torch.autocast(target.type, dtype=torch.bfloat16, enabled=spec["predict_precision"] == "bf16"):
                logits = model(**{k: v.to(target) for k, v in batch.items()}).logits
            probs[rows] = torch.softmax(logits.float(), -1).cpu().numpy()
        return probs

    dev_texts, dev_labels = read_rows(spec["dev"])
    probs, seconds = timed_predict(predict, dev_texts)
    right = sum(label_ids[i] == y for i, y in zip(probs.argmax(1), dev_labels))
    return {"system": "HF", "device": device, "threads": clock.threads, "precision": choices["precision"],
            "predict_precision": spec["predict_precision"],
            "train_examples": examples, "train_steps": steps, "train_seconds": clock.seconds,
            "train_ex_s": examples / clock.seconds, "predict_rows": len(dev_texts), "predict_seconds": seconds,
            "predict_ex_s": len(dev_texts) / seconds,
            "accuracy": right / len(dev_texts),
            "train_peak_rss_mb": train_peak, "peak_rss_mb": peak_rss_mb(), "transformers": transformers.__version__,
            **_cuda_peak(device)}


# --------------------------------------------------------------------------- driver


def run_worker(system: str, spec: dict, work: Path) -> dict:
    """One system in its own process (`--worker`), its threads pinned alike; its result, or its error."""
    spec_path, result_path = work / f"{system}-{spec['device']}-spec.json", work / f"{system}-{spec['device']}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    threads = str(spec["threads"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *inherited]), "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "RAYON_NUM_THREADS": threads}  # RAYON: the tokenizers' threads
    proc = subprocess.run([sys.executable, __file__, "--worker", system, str(spec_path), str(result_path)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {"system": system, "device": spec["device"], "error": f"exit {proc.returncode}: "
                f"{tail[-1] if tail else ''}", "stderr": proc.stderr[-4000:]}
    return json.loads(result_path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=3, metavar=("SYSTEM", "SPEC", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--base", type=Path, default=None, help="HF model folder (default: the PyPI MiniLM)")
    parser.add_argument("--data", type=Path, default=DATA, help="the folder holding sst2/train.tsv and dev.tsv")
    parser.add_argument("--rows", type=int, default=None, help="training rows: the first N of train.tsv (2,000)")
    parser.add_argument("--predict-rows", type=int, default=None, help="dev rows to predict (default: all 872)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's (3 under 20,000 rows)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: the "
                        "cores this process may use, as the recipe sets)")
    parser.add_argument("--devices", default="cpu,cuda", help="cuda is skipped without a GPU")
    parser.add_argument("--predict-precision", choices=("fp32", "bf16"), default="fp32",
                        help="both sides' prediction (fp32: `textcls predict`'s default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 rows, 1 epoch, 100 dev rows: a smoke run")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_finetune_speed")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.worker:
        system, spec_path, result_path = args.worker
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        result = (textcls_worker if system == "textcls" else hf_worker)(spec)
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")
        return
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    from textcls.run.bases import resolve_base

    train_path, dev_path = args.data.resolve() / "sst2" / "train.tsv", args.data.resolve() / "sst2" / "dev.tsv"
    if not train_path.is_file() or not dev_path.is_file():
        sys.exit(f"{train_path} and {dev_path} are needed (the SST-2 copy in ../shared/data); pass --data DIR")
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    base = (args.base or minilm_folder(ROOT / "runs" / "bases" / "all-MiniLM-L6-v2")).resolve()
    resolve_base(str(base))  # converted once, here: neither worker's time or memory holds the conversion
    settings = {"rows": args.rows or (200 if args.quick else 2000),
                "epochs": args.epochs or (1 if args.quick else None),  # None: the recipe's
                "predict_rows": args.predict_rows or (100 if args.quick else 0),  # 0: all of dev.tsv
                "threads": threads, "seed": args.seed, "predict_precision": args.predict_precision}
    work = Path(tempfile.mkdtemp(prefix="textcls-ftspeed-"))
    try:
        results = compare(args, settings, train_path, dev_path, work, base)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_summary(), "settings": settings, "results": results,
                                         "ratios": ratio_rows(results)}, indent=1))


def compare(args: argparse.Namespace, settings: dict, train_path: Path, dev_path: Path, work: Path,
            base: Path) -> list[dict]:
    """Each device's textcls run, then HF's with textcls's choices; their results in that order."""
    import torch

    rows, epochs, predict_rows = settings["rows"], settings["epochs"], settings["predict_rows"]
    (work / "train").mkdir()
    (work / "dev").mkdir()
    train_file = subsample(train_path, rows, work / "train")
    dev_file = subsample(dev_path, predict_rows, work / "dev") if predict_rows else dev_path
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    epoch_text = "the recipe's epochs" if epochs is None else f"{epochs} epoch(s)"
    dev_text = f"the first {predict_rows:,} dev rows" if predict_rows else "the dev rows"
    print(f"SST-2: {rows:,} training rows, {epoch_text}, predicting {dev_text}; base {base}; "
          f"{settings['threads']} threads; devices {', '.join(devices)}", flush=True)
    results = []
    for device in devices:
        spec = {"train": str(train_file), "dev": str(dev_file), "base": str(base), "device": device,
                "threads": settings["threads"], "epochs": epochs, "seed": settings["seed"],
                "predict_precision": settings["predict_precision"], "out": str(args.output / f"textcls-{device}")}
        ours = run_worker("textcls", spec, work)
        results.append(ours)
        if "error" in ours:
            print(ours["stderr"], file=sys.stderr)
            continue
        print(f"{device}: textcls chose {json.dumps(ours['choices'])}", flush=True)
        theirs = run_worker("HF", {**spec, "choices": ours["choices"]}, work)
        if "error" in theirs:
            print(theirs["stderr"], file=sys.stderr)
        results.append(theirs)
    return results


if __name__ == "__main__":
    main()
