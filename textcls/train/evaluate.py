"""Run a model over a tokenized dataset: logits in input order, loss and the metrics report."""

from __future__ import annotations

import numpy as np
import torch

from textcls.data.batching import BucketSampler, collate, lengths_of
from textcls.device import autocast_context
from textcls.metrics import report_from_logits
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
