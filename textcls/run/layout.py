"""Every file name of a run directory, spelled once. Other modules join these to a run's path.

    RUN/config.yaml  tokenizer.json  labels.json    what to train, and how text becomes ids and labels
    RUN/model.safetensors  run.json  eval_report.json    the best weights, their sha256, their report
    RUN/metrics.jsonl  curves.png  confusion.png  class_f1.png  tensorboard/    the training log and its pictures
    RUN/last/  checkpoint-{step}/    resumable checkpoints (state.json, model and trainer state)
    RUN/ensemble.json  members/K/    an ensemble: its bookkeeping and one ordinary run per member
    RUN/nblr.json  nblr.safetensors    the bag-of-n-grams model mixed into the probabilities
    RUN/teacher_probs.safetensors    a distilled student's cached teacher probabilities (textcls distill)
"""

from __future__ import annotations

import re
from pathlib import Path

CONFIG = "config.yaml"
TOKENIZER = "tokenizer.json"
LABELS = "labels.json"
WEIGHTS = "model.safetensors"
RUN_INFO = "run.json"
EVAL_REPORT = "eval_report.json"  # the validation report of the weights in WEIGHTS
METRICS = "metrics.jsonl"
CURVES = "curves.png"
CONFUSION = "confusion.png"  # `textcls plot`: the eval report's confusion matrix, normalized per true label
CLASS_F1 = "class_f1.png"  # `textcls plot`: the eval report's F1 per class
TENSORBOARD = "tensorboard"
ENSEMBLE = "ensemble.json"
MEMBERS = "members"
NBLR_WEIGHTS = "nblr.safetensors"
NBLR_INFO = "nblr.json"
TEACHER_PROBS = "teacher_probs.safetensors"
LEGACY_NBLR = {NBLR_INFO: "ngram.json", NBLR_WEIGHTS: "ngram.safetensors"}  # their names before the rename

LOCK = ".lock"  # held by the one process writing the run (run/lock.py), removed when it is done
LAST = "last"  # the newest resumable checkpoint; step checkpoints are copies of it
STEP_CHECKPOINT = "checkpoint-{step}"
STEP_CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
# Inside a checkpoint folder:
STATE = "state.json"  # the loop position and the checksums of the weights beside it
TRAINER_STATE = "trainer_state.pt"  # optimizer, scheduler, RNG (torch.save; loaded with weights_only=True)
EMA_WEIGHTS = "ema.safetensors"
ONNX_CACHE = "onnx_cache"  # `predict --runtime onnx`: the graphs exported from the weights, by their digest

# What run directories hold (train, pretrain, ensembles, `textcls plot`): `output.overwrite` removes these only.
RUN_ENTRY = re.compile("|".join(re.escape(name) for name in (
    CONFIG, TOKENIZER, LABELS, WEIGHTS, RUN_INFO, EVAL_REPORT, METRICS, ENSEMBLE, NBLR_INFO, NBLR_WEIGHTS, CURVES,
    TEACHER_PROBS, CONFUSION, CLASS_F1, LAST, MEMBERS, TENSORBOARD, ONNX_CACHE, *LEGACY_NBLR.values()))
    + "|" + STEP_CHECKPOINT_RE.pattern)
# Temp names a killed run can leave: `.last.*`/`.checkpoint-N.*` folders, `.model.safetensors.*` and `.NAME.*.tmp`.
STALE_TEMP_DIR = re.compile(rf"\.({re.escape(LAST)}|{STEP_CHECKPOINT_RE.pattern})\..+")
STALE_TEMP_FILE = re.compile(rf"\.{re.escape(WEIGHTS)}\..+|\..+\.tmp")
NEXT_WEIGHTS = f".{WEIGHTS}.next"  # the best weights being swapped in (see store.save_best)


def is_run_dir(path: Path) -> bool:
    """A folder textcls trained into: its config.yaml and tokenizer.json (written first, by every run kind)."""
    return (path / CONFIG).is_file() and (path / TOKENIZER).is_file()


def is_ensemble_dir(path: Path) -> bool:
    return (path / ENSEMBLE).is_file()


def step_checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / STEP_CHECKPOINT.format(step=step)
