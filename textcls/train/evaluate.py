"""Run a model over a tokenized dataset: logits in input order, loss and the metrics report."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from textcls.data.batching import BucketSampler, collate, lengths_of
from textcls.device import autocast_context
from textcls.metrics import METRICS, report_from_logits, report_from_mean
from textcls.train import distributed


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, ds, batch_size: int, num_labels: int, device: torch.device,
                   precision: str = "fp32", pad_id: int = 0) -> np.ndarray:
    """(N, C) float32 logits in dataset order; batches are length-sorted.

    Under torchrun each rank runs its share of the batches and the (N, C) arrays are summed over
    ranks: every row is filled by exactly one rank, so the result equals the single-process one.
    In a distributed run this is a collective: call it on every rank or on none.
    """
    was_training = model.training
    model.eval()
    sampler = BucketSampler(lengths_of(ds), batch_size, shuffle=False)
    out = np.zeros((len(ds), num_labels), dtype=np.float32)
    for indices in distributed.eval_shard(sampler.batches()):
        batch = collate(ds, indices, num_labels, pad_id).to(device)
        with autocast_context(device, precision):
            logits = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        out[batch.indices] = logits.float().cpu().numpy()
    model.train(was_training)
    return distributed.all_sum(out)


def evaluate(model: torch.nn.Module, ds, labels: list[str], batch_size: int, device: torch.device,
             task: str = "single", threshold=0.5, precision: str = "fp32", pad_id: int = 0) -> dict:
    logits = predict_logits(model, ds, batch_size, len(labels), device, precision, pad_id)
    return report_from_logits(logits, ds, labels, task, threshold)


def evaluate_groups(parts: list[tuple[torch.nn.Module, object, int, int]], labels: list[str], batch_size: int,
                    device: torch.device, task: str = "single", threshold=0.5, precision: str = "fp32",
                    mix: Optional[tuple[np.ndarray, float]] = None) -> dict:
    """The report of a model, or of an ensemble with several tokenizers: `parts` = (model, its tokenization
    of the rows, pad id, member count) per tokenizer group; the member-weighted mean probabilities.
    One part is `evaluate` itself. `mix` = ((N, C) probabilities of another model, its share): the report
    is of the mixture, with the metrics without it under "without_ngram".

    Left for train/ensemble.py until it calls textcls.train.ngram.validation_report, which reports through
    the run's predictor (textcls.predictor) as eval, predict and the single-run report do; then it goes."""
    if len(parts) == 1 and mix is None:
        model, ds, pad_id, _ = parts[0]
        return evaluate(model, ds, labels, batch_size, device, task, threshold, precision, pad_id)
    total = sum(n for *_, n in parts)
    mean = None
    for model, ds, pad_id, n in parts:
        logits = torch.from_numpy(predict_logits(model, ds, batch_size, len(labels), device, precision, pad_id))
        p = (torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, -1)) * (n / total)
        mean = p if mean is None else mean + p
    report = report_from_mean(mean, parts[0][1], labels, task, threshold)
    if mix is None:
        return report
    probs, share = mix
    if probs.shape != tuple(mean.shape):
        raise ValueError(f"the n-gram model scored {probs.shape[0]} rows, the transformers {mean.shape[0]}")
    without = {k: report[k] for k in METRICS if k in report}
    mixed = report_from_mean((1 - share) * mean + share * torch.from_numpy(probs), parts[0][1], labels, task,
                              threshold)
    return {**mixed, "without_ngram": without}
