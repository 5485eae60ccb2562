"""The pretraining loop: packed blocks -> masking -> MLM (+ SOP) loss -> AdamW steps, held-out eval, resume.

It reuses the training engine: schedules, optimizer groups, `last/` checkpoints (with RNG state),
progress display, device selection and the interrupt flag. Exact resume: an epoch's block order is
a pure function of (seed, epoch), and a micro-batch's masks of (seed, epoch, batch position), so a
resumed run rebuilds both and skips the batches already done.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from textcls.config import Config, TrainConfig, save_config
from textcls.data.tokenizer import MASK, PAD, SPECIAL_TOKENS, load_tokenizer
from textcls.errors import ConfigError
from textcls.io import atomic_write_text
from textcls.pretrain.corpus import Corpus, build_corpus
from textcls.pretrain.heads import PretrainModel
from textcls.pretrain.masking import batch_rng, mask_tokens, valid_rng
from textcls.pretrain.packing import IGNORE, Blocks, collate_blocks
from textcls.rundir import save_weights, write_run_info
from textcls.train import distributed
from textcls.train.checkpoint import load_checkpoint, rng_state, save_checkpoint
from textcls.train.evaluate import autocast_context
from textcls.train.engine import Interrupted, seed_everything, select_device
from textcls.train.engine import StopFlag as _StopFlag  # a module name: tests stand in for the signal here
from textcls.train.optim import build_optimizer, optimizer_step
from textcls.train.progress import TrainProgress, console
from textcls.train.run_dir import prepare_run_dir, replace_old_run
from textcls.train.schedules import lr_multiplier


@dataclass
class PretrainResult:
    run_dir: Path
    steps: int
    seconds: float
    tokens_per_second: float
    metrics: dict  # the last held-out evaluation


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of an epoch: a permutation of the blocks that depends on (seed, epoch) only."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class _Masker:
    """Applies `mask_tokens` with the tokenizer's ids; the generator is passed per batch."""

    def __init__(self, cfg: Config, corpus: Corpus):
        tok = corpus.tokenizer
        self.cfg = cfg.pretrain
        self.mask_id = tok.token_to_id(MASK)
        self.special = [i for i in (tok.token_to_id(s) for s in SPECIAL_TOKENS) if i is not None]
        self.vocab_size = tok.get_vocab_size()
        self.pad_id = tok.token_to_id(PAD) or 0

    def __call__(self, blocks: Blocks, index: np.ndarray, rng: np.random.Generator):
        batch = collate_blocks(blocks, index, self.pad_id)
        inputs, labels = mask_tokens(batch.input_ids, batch.attention_mask, batch.starts, self.cfg, rng,
                                     self.mask_id, self.special, self.vocab_size)
        return batch, inputs, labels


def _losses(mlm_logits: torch.Tensor, sop_logits: Optional[torch.Tensor], labels: torch.Tensor,
            sop_labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Summed losses and correct counts, so that means over several batches weigh every token alike."""
    target = labels[labels != IGNORE]  # (N,) in the order of the chosen positions, as the logits
    out = {"mlm_sum": F.cross_entropy(mlm_logits.float(), target, reduction="sum"), "mlm_n": target.numel(),
           "mlm_correct": (mlm_logits.argmax(-1) == target).sum()}
    if sop_logits is not None:
        keep = sop_labels != IGNORE
        out["sop_sum"] = F.cross_entropy(sop_logits.float()[keep], sop_labels[keep], reduction="sum")
        out["sop_n"] = int(keep.sum())
        out["sop_correct"] = (sop_logits.argmax(-1)[keep] == sop_labels[keep]).sum()
    return out


def _objective(parts: dict, sop_weight: float) -> torch.Tensor:
    loss = parts["mlm_sum"] / max(parts["mlm_n"], 1)
    if "sop_sum" in parts:
        loss = loss + sop_weight * parts["sop_sum"] / max(parts["sop_n"], 1)
    return loss


@torch.inference_mode()
def evaluate_mlm(model: PretrainModel, blocks: Blocks, masker: _Masker, batch_size: int, seed: int,
                 device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Held-out MLM loss and masked-token accuracy (+ SOP loss and accuracy), with fixed masks."""
    was_training = model.training
    model.eval()
    sums = {"mlm_sum": 0.0, "mlm_n": 0, "mlm_correct": 0, "sop_sum": 0.0, "sop_n": 0, "sop_correct": 0}
    for b, start in enumerate(range(0, len(blocks), batch_size)):
        index = np.arange(start, min(start + batch_size, len(blocks)))
        batch, inputs, labels = masker(blocks, index, valid_rng(seed, b))
        with autocast_context(device, precision):
            mlm_logits, sop_logits = model(inputs.to(device), batch.attention_mask.to(device),
                                           batch.token_type_ids.to(device), labels.to(device))
        for k, v in _losses(mlm_logits, sop_logits, labels.to(device), batch.sop_labels.to(device)).items():
            sums[k] += float(v)
    model.train(was_training)
    n = max(sums["mlm_n"], 1)
    out = {"mlm_loss": sums["mlm_sum"] / n, "mlm_accuracy": sums["mlm_correct"] / n}
    if model.has_sop and sums["sop_n"]:
        out.update(sop_loss=sums["sop_sum"] / sums["sop_n"], sop_accuracy=sums["sop_correct"] / sums["sop_n"])
    return out


def _save_run_files(run_dir: Path, cfg: Config, corpus: Corpus) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_text(run_dir / "tokenizer.json", corpus.tokenizer.to_str())


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
    if cfg.model.init_from:
        raise ConfigError("`model.init_from` starts a classifier from a run; pretraining starts from random weights, "
                          "so remove it from the pretraining config (keep it in the classifier's)")
    _check_classifier_keys(cfg)
    if distributed.launched():  # under torchrun: join the process group before touching any file
        distributed.setup(select_device(cfg.train.device))
    with distributed.main_first():  # rank 0 checks (and may clear) the run directory first
        cfg, resume = prepare_run_dir(cfg, run_dir, resume)  # no checkpoint yet: start over
    cfg.output.dir = str(run_dir)
    t, p = cfg.train, cfg.pretrain
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = distributed.setup(select_device(t.device))  # cuda:LOCAL_RANK under torchrun
    main = distributed.is_main()  # only rank 0 writes files and prints
    tokenizer = load_tokenizer(run_dir / "tokenizer.json") if resume else None
    corpus = distributed.prepare_once(lambda tok: build_corpus(cfg, tok), tokenizer)
    if not resume and main:
        replace_old_run(run_dir)
        _save_run_files(run_dir, cfg, corpus)
    masker = _Masker(cfg, corpus)
    if resume:  # keep the checkpoint's global batch at this world size
        t.grad_accum = distributed.grad_accum_on_resume(run_dir / "last", t.grad_accum)

    seed_everything(t.seed)
    model = PretrainModel(cfg.model, corpus.tokenizer.get_vocab_size(), masker.pad_id, p.sop).to(device)
    train_model = distributed.wrap_model(model, device)  # DDP under torchrun; save/eval use `model`
    batches_per_epoch = math.ceil(len(corpus.train) / t.batch_size)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / (t.grad_accum * distributed.world_size())))
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    optimizer = build_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(t, total_steps))
    scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" and device.type == "cuda" else None

    state = {"step": 0, "epoch": 0, "position": 0, "total_steps": total_steps, "train_loss": 0.0, "train_n": 0}
    if resume:
        state = load_checkpoint(run_dir / "last", model, optimizer, scheduler, scaler, rank=distributed.rank(),
                                world=distributed.world_size())
        if main:
            console.print(f"resuming {run_dir} at step {state['step']}/{total_steps} "
                          f"(epoch {state['epoch']}, batch {state['position']})", highlight=False)
    state.update(distributed.layout_state(t.grad_accum))
    progress = TrainProgress(total_steps, state["step"], t.log_every, enabled=not quiet and main)
    started, tokens_seen = time.perf_counter(), 0
    last_metrics: dict = {}

    def checkpoint() -> None:
        rng_ranks = distributed.gather_objects(rng_state())  # a collective: every rank checkpoints together
        if main:
            save_checkpoint(run_dir / "last", model, optimizer, scheduler,
                            {**state, "train_loss": float(state["train_loss"])}, scaler, rng_ranks=rng_ranks)

    def run_eval(kind: str) -> None:
        nonlocal last_metrics
        if not main:  # rank 0 evaluates and writes; the others meet it at the checkpoint
            state.update(train_loss=0.0, train_n=0)
            checkpoint()
            return
        metrics = evaluate_mlm(model, corpus.valid, masker, t.eval_batch_size, t.seed, device, t.precision) \
            if len(corpus.valid) else {}
        record = {"step": state["step"], "epoch": state["epoch"], "kind": kind, "lr": scheduler.get_last_lr()[0],
                  "train_loss": float(state["train_loss"]) / max(state["train_n"], 1), **metrics}
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        state.update(train_loss=0.0, train_n=0)
        digest = save_weights(model.state_dict(), run_dir / "model.safetensors")
        write_run_info(run_dir, kind="pretrain", sha256={"model.safetensors": digest}, step=state["step"],
                       **metrics)
        progress.message(f"eval step {state['step']}: " + " ".join(
            f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float) and k != "lr"))
        last_metrics = metrics
        checkpoint()

    model.train()
    with _StopFlag() as flag:
        try:
            while state["step"] < total_steps:
                epoch = state["epoch"]
                batches = epoch_batches(len(corpus.train), t.batch_size, t.seed, epoch)
                micro, loss_sum, n_tokens, n_blocks = 0, 0.0, 0, 0
                # One block batch per rank and micro-step; `position` counts batches over all ranks.
                for index, own, consumed, blocks in distributed.shard(batches, state["position"]):
                    # Masks depend on the batch's global position, so they match a single-process run.
                    at = state["position"] + (distributed.rank() if own else 0)
                    batch, inputs, labels = masker(corpus.train, index, batch_rng(t.seed, epoch, at))
                    last_in_epoch = state["position"] + consumed >= len(batches)
                    sync = (micro + 1) % t.grad_accum == 0 or last_in_epoch
                    with distributed.sync_gradients(train_model, sync):
                        with autocast_context(device, t.precision):
                            mlm_logits, sop_logits = train_model(inputs.to(device), batch.attention_mask.to(device),
                                                                 batch.token_type_ids.to(device), labels.to(device))
                        loss = _objective(_losses(mlm_logits, sop_logits, labels.to(device),
                                                  batch.sop_labels.to(device)), p.sop_weight)
                        if not own:  # a stand-in: join the all-reduce with a zero gradient
                            loss = loss * 0.0
                        scaled = loss / t.grad_accum
                        (scaler.scale(scaled) if scaler else scaled).backward()
                    micro += 1
                    loss_sum = loss_sum + loss.detach()  # no host sync per step (a GPU keeps running)
                    n_tokens += int(batch.attention_mask.sum())
                    n_blocks += blocks
                    state["position"] += consumed
                    if not sync:
                        continue
                    optimizer_step(model, optimizer, scaler, t.max_grad_norm)
                    scheduler.step()
                    state["step"] += 1
                    state["train_loss"] += loss_sum
                    state["train_n"] += micro
                    tokens_seen += n_tokens
                    progress.update(state["step"], loss_sum / micro, scheduler.get_last_lr()[0], n_blocks)
                    micro, loss_sum, n_tokens, n_blocks = 0, 0.0, 0, 0
                    if last_in_epoch:
                        state["epoch"], state["position"] = epoch + 1, 0
                    step = state["step"]
                    if t.eval_every and step % t.eval_every == 0 and step < total_steps and not last_in_epoch:
                        run_eval("step")
                    elif t.checkpoint_every and step % t.checkpoint_every == 0:
                        checkpoint()
                    if step < total_steps and distributed.any_true(flag.raised):  # all ranks stop together
                        checkpoint()
                        raise Interrupted(run_dir)
                    if step >= total_steps or last_in_epoch:
                        break
                if state["position"] == 0 or state["step"] >= total_steps:
                    if t.eval_each_epoch or state["step"] >= total_steps:
                        run_eval("epoch")
                    else:
                        checkpoint()
        finally:
            progress.close()
    distributed.barrier()  # return together, after rank 0 has written the final files
    seconds = time.perf_counter() - started
    return PretrainResult(run_dir, state["step"], seconds, tokens_seen / max(seconds, 1e-9), last_metrics)
