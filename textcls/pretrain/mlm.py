"""Masked-LM pretraining as a task for the training engine (train/engine.py): packed blocks -> masking ->
MLM (+ SOP) loss, and the held-out evaluation with fixed masks.

Exact resume: an epoch's block order is a pure function of (seed, epoch), and a micro-batch's masks
of (seed, epoch, batch position), so a resumed run rebuilds both from the position the engine asks for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from textcls.config import Config
from textcls.data.tokenizer import MASK, PAD, SPECIAL_TOKENS
from textcls.device import autocast_context
from textcls.pretrain.corpus import Corpus
from textcls.pretrain.heads import PretrainModel
from textcls.pretrain.masking import batch_rng, mask_tokens, valid_rng
from textcls.pretrain.packing import IGNORE, Blocks, collate_blocks
from textcls.run.info import write_run_info
from textcls.run.layout import WEIGHTS
from textcls.run.weights import save_weights
from textcls.train import distributed
from textcls.train.engine import Evaluation


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of an epoch: a permutation of the blocks that depends on (seed, epoch) only."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class Masker:
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
def evaluate_mlm(model: PretrainModel, blocks: Blocks, masker: Masker, batch_size: int, seed: int,
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


class MaskedLMTask:
    """Masked-LM (+ sentence-order) pretraining as the engine's `Task`. Rank 0 alone evaluates, and saves the
    weights after every evaluation (pretraining keeps the latest, not a best)."""

    def __init__(self, cfg: Config, run_dir: Path, corpus: Corpus, masker: Masker, model: PretrainModel,
                 device: torch.device):
        self.t, self.p, self.run_dir, self.corpus = cfg.train, cfg.pretrain, run_dir, corpus
        self.masker, self.model, self.device = masker, model, device
        self.batches_per_epoch = math.ceil(len(corpus.train) / self.t.batch_size)
        self.last_metrics: dict = {}  # of the last held-out evaluation

    def batches(self, epoch: int, position: int) -> Iterator[distributed.MicroBatch]:
        t = self.t
        batches = epoch_batches(len(self.corpus.train), t.batch_size, t.seed, epoch)
        # One block batch per rank and micro-step; `position` counts batches over all ranks.
        for index, own, consumed, blocks in distributed.shard(batches, position):
            # Masks depend on the batch's global position, so they match a single-process run.
            at = position + (distributed.rank() if own else 0)
            batch, inputs, labels = self.masker(self.corpus.train, index, batch_rng(t.seed, epoch, at))
            yield distributed.MicroBatch((batch, inputs, labels), own, consumed, blocks,
                                         int(batch.attention_mask.sum()))
            position += consumed

    def loss(self, forward: Callable, masked) -> torch.Tensor:
        batch, inputs, labels = masked
        d = self.device
        labels = labels.to(d)
        mlm_logits, sop_logits = forward(inputs.to(d), batch.attention_mask.to(d), batch.token_type_ids.to(d), labels)
        return _objective(_losses(mlm_logits, sop_logits, labels, batch.sop_labels.to(d)), self.p.sop_weight)

    def evaluate(self) -> Optional[Evaluation]:
        if not distributed.is_main():  # rank 0 evaluates and writes; the others meet it at the checkpoint
            return None
        t = self.t
        valid = self.corpus.valid
        metrics = evaluate_mlm(self.model, valid, self.masker, t.eval_batch_size, t.seed, self.device, t.precision) \
            if len(valid) else {}
        return Evaluation(metrics)

    def save(self, step: int, evaluation: Optional[Evaluation], improved: bool) -> None:
        if evaluation is None:
            return
        digest = save_weights(self.model.state_dict(), self.run_dir / WEIGHTS)
        write_run_info(self.run_dir, kind="pretrain", sha256={WEIGHTS: digest}, step=step,
                       **evaluation.metrics)
        self.last_metrics = evaluation.metrics
