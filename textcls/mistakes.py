"""`textcls eval --errors FILE`: every misclassified row, the most confident mistakes first.

A row is (text[, text_pair], gold, predicted, probability). Single-label: `probability` is the
predicted label's. Multilabel: a row is a mistake when the predicted label set differs from the gold
one, and `probability` is that of its most confident wrong decision (p for a label predicted but not
gold, 1 - p for a gold label missed). JSONL (labels as lists for multilabel) or CSV (labels joined by
spaces), chosen by the file's suffix; written atomically.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from textcls.errors import ConfigError
from textcls.io import atomic_open
from textcls.predictor import NblrMix, Predictor

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}


def errors_format(path: Union[str, Path]) -> str:
    """jsonl, csv or tsv by the suffix; another suffix is a ConfigError (checked before the evaluation runs)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"--errors {path}: name the file .jsonl, .csv or .tsv")
    return fmt


class _Computed:
    """A predictor that answers with probabilities already computed (for the rows they were computed on)."""

    def __init__(self, like: Predictor, probs: np.ndarray):
        self.labels, self.task, self.probs = like.labels, like.task, probs

    def predict_proba(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
        return self.probs


def computed_once(predictor: Predictor, texts: list[str], pairs: Optional[list[str]],
                  advance: Optional[Callable[[int], None]] = None,
                  chunk_size: int = 4096) -> tuple[np.ndarray, Predictor]:
    """(the predictor's probabilities of the rows, a stand-in predictor that reports them without predicting
    again): `predictor_report` of the stand-in is that of the predictor, an NB-LR mix's parts included.

    The rows are predicted `chunk_size` at a time, as `predict` reads its input, and `advance(n)` is called
    after each chunk of n rows (a progress display)."""
    mix = isinstance(predictor, NblrMix)
    parts: list[list[np.ndarray]] = []
    for start in range(0, max(len(texts), 1), chunk_size):
        chunk = texts[start:start + chunk_size]
        chunk_pairs = pairs[start:start + chunk_size] if pairs is not None else None
        parts.append(predictor.predict_parts(chunk, chunk_pairs) if mix else
                     [predictor.predict_proba(chunk, chunk_pairs)])
        if advance is not None:
            advance(len(chunk))
    joined = [np.concatenate(column) for column in zip(*parts)]
    if mix:
        base, alone = joined
        stand_in = NblrMix(_Computed(predictor.base, base), _Computed(predictor.nblr, alone), predictor.share)
        return predictor.combine([base, alone]), stand_in
    return joined[0], _Computed(predictor, joined[0])


def mistakes(texts: list[str], pairs: Optional[list[str]], targets: np.ndarray, probs: np.ndarray,
             labels: list[str], task: str, threshold=0.5) -> list[dict]:
    """The misclassified rows of (N, C) 0/1 `targets` and probabilities, most confident first (ties: file order)."""
    gold = targets > 0.5
    if task == "multilabel":
        predicted = probs >= np.asarray(threshold, dtype=np.float32)
        wrong = predicted != gold
        confidence = np.where(wrong, np.where(predicted, probs, 1 - probs), -1.0).max(1)
        bad = wrong.any(1)
    else:
        top = probs.argmax(1)
        predicted = np.eye(len(labels), dtype=bool)[top]
        confidence = probs[np.arange(len(probs)), top]
        bad = ~gold[np.arange(len(gold)), top]
    rows = []
    for i in np.flatnonzero(bad)[np.argsort(-confidence[bad], kind="stable")]:
        row = {"text": texts[i]}
        if pairs is not None:
            row["text_pair"] = pairs[i]
        names = lambda mask: [labels[j] for j in np.flatnonzero(mask)]  # noqa: E731
        if task == "multilabel":
            row["gold"], row["predicted"] = names(gold[i]), names(predicted[i])
        else:
            row["gold"], row["predicted"] = names(gold[i])[0], labels[int(top[i])]
        row["probability"] = round(float(confidence[i]), 6)
        rows.append(row)
    return rows


def write_mistakes(path: Union[str, Path], rows: list[dict]) -> None:
    fmt = errors_format(path)
    with atomic_open(path, "w") as handle:
        if fmt == "jsonl":
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        columns = ["text", *(["text_pair"] if rows and "text_pair" in rows[0] else []), "gold", "predicted",
                   "probability"]
        writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([" ".join(v) if isinstance(v, list) else v for v in (row[c] for c in columns)])
