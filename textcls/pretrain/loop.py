"""`textcls pretrain`: masked-LM (+ SOP) pretraining of the encoder on the training engine.

The loop is train/engine.py's `Trainer`, shared with `textcls train` (schedules, optimizer groups,
accumulation, `last/` checkpoints with exact resume, progress, `metrics.jsonl`, the interrupt flag);
the task is pretrain/mlm.py's `MaskedLMTask`. The run directory holds `model.safetensors` (the
encoder and the pretraining heads), which `model.init_from` of a classifier starts from.
`metrics.jsonl` has one record per evaluation, with the mean `train_loss` since the previous one.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from textcls.config import Config, TrainConfig, save_config
from textcls.data.tokenizer import load_tokenizer
from textcls.device import reuse_freed_memory
from textcls.errors import ConfigError
from textcls.io import atomic_write_text
from textcls.pretrain.corpus import Corpus, build_corpus
from textcls.pretrain.heads import PretrainModel
from textcls.pretrain.mlm import MaskedLMTask, Masker
from textcls.run.layout import CONFIG, TOKENIZER
from textcls.run.lock import run_lock
from textcls.run.prepare import prepare_run_dir, replace_old_run
from textcls.train import distributed
from textcls.train.engine import StopFlag as _StopFlag  # looked up per run: tests stand in for the signal here
from textcls.train.engine import Trainer, seed_everything, select_device
from textcls.train.logs import MetricsLog
from textcls.train.progress import announcer


@dataclass
class PretrainResult:
    run_dir: Path
    steps: int
    seconds: float
    tokens_per_second: float
    metrics: dict  # the last held-out evaluation


def _save_run_files(run_dir: Path, cfg: Config, corpus: Corpus) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG)
    atomic_write_text(run_dir / TOKENIZER, corpus.tokenizer.to_str())


# Classifier-training keys that pretraining does not use: set away from their defaults, they are refused.
CLASSIFIER_ONLY = ("trainable", "ensemble", "ensemble_variants", "patience", "ema_decay", "save_total_limit",
                   "token_dropout", "label_smoothing", "batch_tokens", "class_weights", "adversarial_eps")


def _check_classifier_keys(cfg: Config) -> None:
    defaults = TrainConfig()
    used = [f"train.{k}" for k in CLASSIFIER_ONLY if getattr(cfg.train, k) != getattr(defaults, k)]
    used += ["output.tensorboard"] if cfg.output.tensorboard else []
    if used:
        raise ConfigError(f"{', '.join(f'`{k}`' for k in used)} {'is' if len(used) == 1 else 'are'} for training a "
                          "classifier; `textcls pretrain` does not use them, so remove them from the pretraining "
                          "config (or set them back to their defaults)")


def pretrain(cfg: Config, output: Optional[Path] = None, resume: bool = False, quiet: bool = False) -> PretrainResult:
    """Pretrain the configured encoder; writes a run directory that `model.init_from` starts from."""
    run_dir = Path(output or cfg.output.dir)
    with run_lock(run_dir, enabled=os.environ.get("RANK", "0") == "0"):  # one writer; torchrun's rank 0 holds it
        return _pretrain(cfg, run_dir, resume, quiet)


def _pretrain(cfg: Config, run_dir: Path, resume: bool, quiet: bool) -> PretrainResult:
    if cfg.model.init_from:
        raise ConfigError("`model.init_from` starts a classifier from a run; pretraining starts from random weights, "
                          "so remove it from the pretraining config (keep it in the classifier's)")
    _check_classifier_keys(cfg)
    if distributed.launched():  # under torchrun: join the process group before touching any file
        distributed.setup(select_device(cfg.train.device))
    with distributed.main_first():  # rank 0 checks (and may clear) the run directory first
        cfg, resume = prepare_run_dir(cfg, run_dir, resume, announcer(distributed.is_main()))
    cfg.output.dir = str(run_dir)
    t, p = cfg.train, cfg.pretrain
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    reuse_freed_memory()
    device = distributed.setup(select_device(t.device))  # cuda:LOCAL_RANK under torchrun
    main = distributed.is_main()  # only rank 0 writes files and prints
    metrics = MetricsLog(run_dir, enabled=main)
    tokenizer = load_tokenizer(run_dir / TOKENIZER) if resume else None
    corpus = distributed.prepare_once(lambda tok: build_corpus(cfg, tok), tokenizer)
    if not resume and main:
        replace_old_run(run_dir)
        _save_run_files(run_dir, cfg, corpus)
    masker = Masker(cfg, corpus)

    seed_everything(t.seed)
    model = PretrainModel(cfg.model, corpus.tokenizer.get_vocab_size(), masker.pad_id, p.sop).to(device)
    task = MaskedLMTask(cfg, run_dir, corpus, masker, model, device)
    trainer = Trainer(task, model, t, run_dir, device, metrics, resume=resume, quiet=quiet, log_train_loss=False,
                      stop_flag=_StopFlag)
    state = trainer.fit()
    distributed.barrier()  # return together, after rank 0 has written the final files
    seconds = time.perf_counter() - trainer.started
    return PretrainResult(run_dir, state.step, seconds, trainer.progress.tokens / max(seconds, 1e-9),
                          task.last_metrics)
