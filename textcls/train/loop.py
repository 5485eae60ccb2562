"""`textcls train`: one classifier (train/classify.py on the engine, train/engine.py) or an ensemble of them
(train/ensemble.py).

The names other code imports from here are re-exported: `check_inputs`, `TrainResult` (classify.py),
`Interrupted`, `select_device`, `seed_everything` (engine.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from textcls.config import Config
from textcls.run.bases import with_base
from textcls.run.layout import is_ensemble_dir
from textcls.run.lock import run_lock
from textcls.train import distributed
from textcls.train.classify import TrainResult, _class_weights, _init_from, check_inputs, train_model
from textcls.train.engine import Interrupted, StopFlag, seed_everything, select_device
from textcls.train.ensemble import train_ensemble
from textcls.train.progress import TrainProgress

__all__ = ["train", "trains_members", "check_inputs", "Interrupted", "TrainResult", "select_device",
           "seed_everything", "StopFlag", "TrainProgress", "_class_weights", "_init_from"]


def trains_members(cfg: Config) -> bool:
    """Whether `cfg` trains an ensemble: members planned, or one model that members may join while the budget
    holds them (`train.ensemble_max`; under torchrun, where members do not run, that one model alone)."""
    return cfg.train.ensemble > 1 or (cfg.train.ensemble_max > 0 and not distributed.launched())


def train(cfg: Config, output: Optional[Path] = None, resume: bool = False, quiet: bool = False,
          on_eval: Optional[Callable[[int, dict], bool]] = None) -> TrainResult:
    """Train per `cfg` into `output` (default output.dir).

    `on_eval(step, record)` is called after each evaluation with the logged metrics; returning True
    stops training there (used by `textcls tune` for pruning and its time budget). With
    `train.ensemble` > 1, or `train.ensemble_max` (members added while the budget holds them, also to one
    planned member), the members are trained by train/ensemble.py (one after another, or
    `train.ensemble_workers` at a time in child processes); `textcls tune`
    (with `on_eval`) trains single models and keeps the ensemble size for its best config.
    """
    run_dir = Path(output or cfg.output.dir)
    cfg = with_base(cfg)  # a HuggingFace base: converted once, its architecture taken as the model section
    with run_lock(run_dir, enabled=os.environ.get("RANK", "0") == "0"):  # one writer; torchrun's rank 0 holds it
        if on_eval is None and (trains_members(cfg) or (resume and is_ensemble_dir(run_dir))):
            return train_ensemble(cfg, run_dir, resume=resume, quiet=quiet)
        return train_model(cfg, run_dir, resume=resume, quiet=quiet, on_eval=on_eval)
