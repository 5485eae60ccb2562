"""Predictors: anything that turns texts into class probabilities.

The contract is scikit-learn's: `predict_proba(texts, pairs=None) -> (N, C)` float32 in label order
(softmax for single-label, a sigmoid per label for multilabel). A single model, an ensemble sharing a
tokenizer (soft voting), tokenizer-variant groups (a member-weighted mean), the bag-of-n-grams model
and a weighted mix of these are all predictors; a mix is a predictor of predictors, and its
probabilities are computed in one place, `WeightedMean.combine`. `eval`, `predict` and the training
report go through `run_predictor(run)` and `predictor_report`.

Runtime knobs (batch size, device, precision, long-text windows) are held by the model predictors.
The module reads a run duck-typed (`labels`, `cfg`, `tokenizer`, `model`, `groups`, `nblr`) and does
not import the run directory's loader, so it sits below both it and the training code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import numpy as np
import torch

from textcls.config import DataConfig
from textcls.data.batching import pad_batch
from textcls.data.pipeline import encode_texts
from textcls.data.tokenizer import CLS, PAD, SEP, encode_batch_safely
from textcls.device import autocast_context, reuse_freed_memory
from textcls.metrics import METRICS, report_from_probabilities
from textcls.model.ensemble import EnsembleClassifier

BatchProbabilities = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


class Predictor(Protocol):
    """Texts (and the second texts of pairs) -> (N, C) float32 probabilities in `labels` order."""

    labels: list[str]
    task: str  # "single" or "multilabel"

    def predict_proba(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray: ...


class ProbabilityModel(Protocol):
    """A model that reads raw text: textcls.model.nblr.NblrModel."""

    task: str

    def probabilities(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray: ...


def activation(logits: torch.Tensor, task: str) -> torch.Tensor:
    """(B, C) logits -> probabilities: softmax, or a sigmoid per label for multilabel."""
    logits = logits.float()
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, -1)


@torch.inference_mode()
def predict_ids(model: torch.nn.Module, ids: list[list[int]], types: Optional[list[list[int]]], num_labels: int,
                batch_size: int = 64, pad_id: int = 0, device: torch.device = torch.device("cpu"),
                precision: str = "fp32", task: str = "single") -> np.ndarray:
    """(N, C) probabilities (softmax, or sigmoid for multilabel) of token ids, in input order.

    Rows are sorted by length so each batch pads little, and written back to their input position.
    """
    return _batched(lambda *batch: activation(model(*batch), task), ids, types, num_labels, batch_size, pad_id,
                    device, precision)


@torch.inference_mode()
def batched_outputs(fn: BatchProbabilities, ids: list[list[int]], types: Optional[list[list[int]]], width: int,
                    batch_size: int, pad_id: int, device: torch.device, precision: str) -> np.ndarray:
    """(N, width) float32 outputs of `fn(input_ids, mask, type_ids)` on length-sorted, padded batches of `ids`,
    in input order (probabilities, or any per-text vector such as a model's pooled one)."""
    return _batched(fn, ids, types, width, batch_size, pad_id, device, precision)


@torch.inference_mode()
def _batched(probabilities: BatchProbabilities, ids: list[list[int]], types: Optional[list[list[int]]],
             num_labels: int, batch_size: int, pad_id: int, device: torch.device, precision: str) -> np.ndarray:
    order = np.argsort(np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    probs = np.zeros((len(ids), num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, mask, type_ids = pad_batch([ids[i] for i in rows], [types[i] for i in rows] if types else None,
                                              pad_id)
        with autocast_context(device, precision):
            p = probabilities(input_ids.to(device), mask.to(device),
                              None if type_ids is None else type_ids.to(device))
        probs[rows] = p.float().cpu().numpy()
    return probs


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of `size`-token windows `stride` apart covering `length` tokens; the last ends at the end."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


@dataclass
class ModelPredictor:
    """One transformer with its tokenizer and data options: tokenize (`data.max_length`, truncation),
    sort by length, batch, restore the input order.

    `chunk_long`: a single text longer than max_length is split into overlapping windows of max_length
    tokens (`[CLS] window [SEP]`, starts `stride` tokens apart, default half a window) and its windows'
    probabilities are averaged; texts that fit are predicted as without it. Pairs are never windowed."""

    model: torch.nn.Module
    tokenizer: object  # tokenizers.Tokenizer
    data: DataConfig
    labels: list[str]
    batch_size: int = 64
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    chunk_long: bool = False
    stride: Optional[int] = None
    runtime: Optional[BatchProbabilities] = None  # another runtime's copy of `model` (predict --runtime onnx)

    @property
    def task(self) -> str:
        return self.data.task

    def batch_probabilities(self) -> BatchProbabilities:
        if self.runtime is not None:
            return self.runtime
        return lambda ids, mask, types: activation(self.model(ids, mask, types), self.task)

    def predict_proba(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
        if self.chunk_long and pairs is None:
            return self._windowed(texts)
        ids, types = encode_texts(self.tokenizer, texts, pairs, self.data.max_length, self.data.truncation,
                                  self.data.head_tokens)
        return _batched(self.batch_probabilities(), ids, types if pairs else None, len(self.labels),
                        self.batch_size, self.tokenizer.token_to_id(PAD), self.device, self.precision)

    def _windowed(self, texts: list[str]) -> np.ndarray:
        size = self.data.max_length - 2
        stride = self.stride or max(1, size // 2)
        cls_id, sep_id = self.tokenizer.token_to_id(CLS), self.tokenizer.token_to_id(SEP)
        windows, owner = [], []
        for i, enc in enumerate(encode_batch_safely(self.tokenizer, texts, add_special_tokens=False)):
            for start in window_starts(len(enc.ids), size, stride):
                windows.append([cls_id, *enc.ids[start:start + size], sep_id])
                owner.append(i)
        window_probs = _batched(self.batch_probabilities(), windows, None, len(self.labels), self.batch_size,
                                self.tokenizer.token_to_id(PAD), self.device, self.precision)
        sums = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        np.add.at(sums, np.asarray(owner, dtype=np.int64), window_probs)
        counts = np.bincount(owner, minlength=len(texts))[:, None]
        return (sums / counts).astype(np.float32)


@dataclass
class EnsemblePredictor(ModelPredictor):
    """Members sharing a tokenizer (an EnsembleClassifier), soft voting: each batch is tokenized once and
    its probabilities are the mean of the members'."""

    def __post_init__(self):
        if not isinstance(self.model, EnsembleClassifier):
            raise TypeError(f"EnsemblePredictor runs an EnsembleClassifier, not {type(self.model).__name__}")

    def batch_probabilities(self) -> BatchProbabilities:
        return self.runtime if self.runtime is not None else self.model.probabilities


@dataclass
class NblrPredictor:
    """The bag-of-n-grams model (textcls.model.nblr), which reads the whole text."""

    model: ProbabilityModel
    labels: list[str]

    @property
    def task(self) -> str:
        return self.model.task

    def predict_proba(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
        return np.asarray(self.model.probabilities(texts, pairs), dtype=np.float32)


class WeightedMean:
    """A predictor of predictors: the weighted mean of their probabilities (weights normalized to sum
    to 1). Tokenizer-variant groups are weighted by member count; see also NblrMix."""

    def __init__(self, predictors: Sequence[Predictor], weights: Sequence[float]):
        if not predictors or len(predictors) != len(weights):
            raise ValueError(f"{len(predictors)} predictors, {len(weights)} weights")
        first = predictors[0]
        if any(p.labels != first.labels or p.task != first.task for p in predictors):
            raise ValueError("a mix of predictors needs one label set and one task")
        total = float(sum(weights))
        if total <= 0 or any(w < 0 for w in weights):
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
        self.predictors = list(predictors)
        self.weights = [w / total for w in weights]
        self.labels, self.task = first.labels, first.task

    def predict_parts(self, texts: list[str], pairs: Optional[list[str]] = None) -> list[np.ndarray]:
        """Each predictor's (N, C) probabilities, in order."""
        return [p.predict_proba(texts, pairs) for p in self.predictors]

    def combine(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """The mix of the predictors' probabilities (`predict_parts`): the one place a mix is computed."""
        shapes = {np.shape(p) for p in parts}
        if len(parts) != len(self.predictors) or len(shapes) != 1:
            raise ValueError(f"{len(parts)} parts of shapes {sorted(shapes)} for {len(self.predictors)} predictors")
        return sum(w * np.asarray(p, dtype=np.float32) for w, p in zip(self.weights, parts)).astype(np.float32)

    def predict_proba(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
        return self.combine(self.predict_parts(texts, pairs))


class NblrMix(WeightedMean):
    """A predictor with the bag-of-n-grams model mixed in: (1 - share) of `base`'s probabilities and
    `share` of the NB-LR model's."""

    def __init__(self, base: Predictor, nblr: NblrPredictor, share: float):
        if not 0 <= share <= 1:
            raise ValueError(f"the NB-LR model's share must be in [0, 1], got {share}")
        super().__init__([base, nblr], [1 - share, share])
        self.base, self.nblr, self.share = base, nblr, share


def run_predictor(run, batch_size: int = 64, device: torch.device = torch.device("cpu"), precision: str = "fp32",
                  chunk_long: bool = False, stride: Optional[int] = None, nblr: bool = True) -> Predictor:
    """The predictor of a loaded run (textcls.run.load.Run): its model, or its ensemble (soft voting), or its
    tokenizer groups' member-weighted mean; with its NB-LR model's share mixed in (`nblr=False`: without).
    The model(s) must already be on `device` (load_run(..., device=) puts them there). Large freed blocks are
    reused from here on (textcls.device.reuse_freed_memory): batches of long texts make several each."""
    reuse_freed_memory()
    options = dict(batch_size=batch_size, device=device, precision=precision, chunk_long=chunk_long, stride=stride)
    if run.groups:
        base: Predictor = WeightedMean([run_predictor(group, nblr=False, **options) for group, _ in run.groups],
                                       [n for _, n in run.groups])
    else:
        kind = EnsemblePredictor if isinstance(run.model, EnsembleClassifier) else ModelPredictor
        base = kind(run.model, run.tokenizer, run.cfg.data, run.labels, **options)
    if nblr and run.nblr is not None:
        model, share = run.nblr
        return NblrMix(base, NblrPredictor(model, run.labels), share)
    return base


def predictor_report(predictor: Predictor, texts: list[str], pairs: Optional[list[str]], targets: np.ndarray,
                     threshold=0.5, nblr_probs: Optional[np.ndarray] = None) -> dict:
    """Loss and metrics of a predictor's probabilities on labelled rows ((N, C) 0/1 `targets`).

    An NblrMix reports the mix, with "without_nblr" (the metrics of its base alone) and "nblr" (its
    share and the NB-LR model's metrics alone). `nblr_probs`: the NB-LR model's probabilities on these
    rows when already computed (training has them from fitting it)."""
    task, labels = predictor.task, predictor.labels
    if not isinstance(predictor, NblrMix):
        return report_from_probabilities(predictor.predict_proba(texts, pairs), targets, labels, task, threshold)
    base = predictor.base.predict_proba(texts, pairs)
    alone = predictor.nblr.predict_proba(texts, pairs) if nblr_probs is None else nblr_probs
    report = report_from_probabilities(predictor.combine([base, alone]), targets, labels, task, threshold)
    without = report_from_probabilities(base, targets, labels, task, threshold)
    alone_report = report_from_probabilities(alone, targets, labels, task, threshold)
    return {**report, "without_nblr": _metrics(without),
            "nblr": {"weight": predictor.share, **_metrics(alone_report)}}


def _metrics(report: dict) -> dict:
    return {k: report[k] for k in METRICS if k in report}
