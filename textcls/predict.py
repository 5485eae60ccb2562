"""Load a run directory and stream predictions: read a chunk, sort it by length, batch, restore order.

Memory stays flat on inputs of any size: only one chunk of texts is held at a time, and the output
goes to a temp file renamed onto the target at the end (a killed predict leaves no half file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import IO, Iterator, Optional

import numpy as np
import torch

from textcls.config import DataConfig
from textcls.data.batching import pad_batch
from textcls.data.pipeline import encode_texts
from textcls.data.readers import SUFFIXES, Record, detect_format, has_header, iter_records
from textcls.data.tokenizer import CLS, PAD, SEP
from textcls.errors import ConfigError, DataError, data_error_hint
from textcls.io import atomic_open
from textcls.rundir import Run
from textcls.train.evaluate import autocast_context


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@torch.inference_mode()
def predict_ids(model: torch.nn.Module, ids: list[list[int]], types: Optional[list[list[int]]], num_labels: int,
                batch_size: int = 64, pad_id: int = 0, device: torch.device = torch.device("cpu"),
                precision: str = "fp32", task: str = "single") -> np.ndarray:
    """(N, C) probabilities (softmax, or sigmoid for multilabel) in input order.

    Rows are sorted by length so each batch pads little, and written back to their input position.
    """
    order = np.argsort(np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    probs = np.zeros((len(ids), num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, mask, type_ids = pad_batch([ids[i] for i in rows], [types[i] for i in rows] if types else None,
                                              pad_id)
        with autocast_context(device, precision):
            logits = model(input_ids.to(device), mask.to(device),
                           None if type_ids is None else type_ids.to(device)).float()
        p = torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, -1)
        probs[rows] = p.cpu().numpy()
    return probs


def predict_probabilities(run: Run, texts: list[str], pairs: Optional[list[str]] = None, batch_size: int = 64,
                          device: torch.device = torch.device("cpu"), precision: str = "fp32") -> np.ndarray:
    """(N, C) probabilities for raw texts (optionally text pairs), in input order."""
    if run.groups:
        probs = group_mean(run, lambda g: predict_probabilities(g, texts, pairs, batch_size, device, precision))
    else:
        cfg = run.cfg
        ids, types = encode_texts(run.tokenizer, texts, pairs, cfg.data.max_length, cfg.data.truncation,
                                  cfg.data.head_tokens)
        probs = predict_ids(run.model, ids, types if pairs else None, len(run.labels), batch_size,
                            run.tokenizer.token_to_id(PAD), device, precision, cfg.data.task)
    return with_ngram(run, probs, texts, pairs)


def with_ngram(run: Run, probs: np.ndarray, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
    """The run's probabilities with its n-gram model's share mixed in (unchanged without one). The group
    runs of an ensemble have none: the mix happens once, on the ensemble's mean."""
    if run.ngram is None:
        return probs
    model, share = run.ngram
    return ((1 - share) * probs + share * model.probabilities(texts, pairs)).astype(np.float32)


def group_mean(run: Run, probabilities) -> np.ndarray:
    """An ensemble with several tokenizers: the member-weighted mean of each group's probabilities."""
    total = sum(n for _, n in run.groups)
    return sum(probabilities(group) * (n / total) for group, n in run.groups).astype(np.float32)


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of `size`-token windows `stride` apart covering `length` tokens; the last ends at the end."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


@torch.inference_mode()
def predict_windowed(run: Run, texts: list[str], stride: Optional[int] = None, batch_size: int = 64,
                     device: torch.device = torch.device("cpu"), precision: str = "fp32") -> np.ndarray:
    """(N, C) probabilities; a text longer than max_length is split into overlapping windows of
    max_length tokens (`[CLS] window [SEP]`, starts `stride` tokens apart; default half a window)
    and its windows' probabilities are averaged. Texts that fit are predicted as by predict_probabilities."""
    if run.groups:
        probs = group_mean(run, lambda g: predict_windowed(g, texts, stride, batch_size, device, precision))
        return with_ngram(run, probs, texts)
    cfg = run.cfg
    size = cfg.data.max_length - 2
    stride = stride or max(1, size // 2)
    cls_id, sep_id = run.tokenizer.token_to_id(CLS), run.tokenizer.token_to_id(SEP)
    windows, owner = [], []
    for i, enc in enumerate(run.tokenizer.encode_batch(texts, add_special_tokens=False)):
        for start in window_starts(len(enc.ids), size, stride):
            windows.append([cls_id, *enc.ids[start:start + size], sep_id])
            owner.append(i)
    order = np.argsort([len(x) for x in windows], kind="stable")
    window_probs = np.zeros((len(windows), len(run.labels)), dtype=np.float32)
    pad_id = run.tokenizer.token_to_id(PAD)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, mask, _ = pad_batch([windows[i] for i in rows], None, pad_id)
        with autocast_context(device, precision):
            logits = run.model(input_ids.to(device), mask.to(device), None).float()
        p = torch.sigmoid(logits) if cfg.data.task == "multilabel" else torch.softmax(logits, -1)
        window_probs[rows] = p.cpu().numpy()
    sums = np.zeros((len(texts), len(run.labels)), dtype=np.float64)
    np.add.at(sums, np.asarray(owner), window_probs)
    counts = np.bincount(owner, minlength=len(texts))[:, None]
    return with_ngram(run, (sums / counts).astype(np.float32), texts)  # the n-gram model reads whole texts


def _format_row(probs: np.ndarray, labels: list[str], top_k: int, fmt: str, task: str, threshold) -> str:
    if task == "multilabel":
        thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float32), probs.shape)
        chosen = [i for i in np.argsort(-probs) if probs[i] >= thresholds[i]]
        if fmt == "tsv":
            return "\t".join(f"{labels[i]}\t{probs[i]:.6f}" for i in chosen)
        row = {"labels": [labels[i] for i in chosen],
               "probabilities": {labels[i]: round(float(probs[i]), 6) for i in range(len(labels))}}
        if top_k > 1:  # the k most probable labels, over the threshold or not
            row["top_k"] = [{"label": labels[i], "probability": round(float(probs[i]), 6)}
                            for i in np.argsort(-probs, kind="stable")[:top_k]]
        return json.dumps(row, ensure_ascii=False)
    top = np.argsort(-probs, kind="stable")[:max(1, top_k)]
    if fmt == "tsv":
        return "\t".join(f"{labels[i]}\t{probs[i]:.6f}" for i in top)
    row = {"label": labels[top[0]], "probability": round(float(probs[top[0]]), 6)}
    if top_k > 1:
        row["top_k"] = [{"label": labels[i], "probability": round(float(probs[i]), 6)} for i in top]
    return json.dumps(row, ensure_ascii=False)


@contextlib.contextmanager
def _output(path: Optional[str]) -> Iterator[IO]:
    if path in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
    else:
        with atomic_open(path, "w") as handle:
            yield handle


def predict_file(run: Run, input_path: str, output_path: Optional[str] = None, top_k: int = 1,
                 output_format: Optional[str] = None, input_format: Optional[str] = None, batch_size: int = 64,
                 chunk_size: int = 4096, device: torch.device = torch.device("cpu"), precision: str = "fp32",
                 window_stride: Optional[int] = None, encoding: Optional[str] = None) -> int:
    """Predict every input line/row; writes one output line per input in order. Returns the count.

    The input is read with the run's data options (columns, header, encoding), in `input_format`, else
    the format its suffix names; a file without a suffix (or a device such as /dev/stdin) is plain text.
    `window_stride` (tokens) turns on window averaging for long documents (see predict_windowed)."""
    fmt = output_format or _output_format(output_path)
    if fmt == "tsv" and top_k > 1 and run.cfg.data.task == "multilabel":
        raise ConfigError("--top-k with a multi-label run needs JSONL output (TSV lists the labels over the "
                          "threshold); drop --top-k or write JSONL")
    data_cfg = dataclasses.replace(run.cfg.data, format=input_format or _input_format(input_path),
                                   on_bad_lines="error", encoding=encoding or run.cfg.data.encoding)
    data_cfg.format = detect_format(input_path, data_cfg)  # once (a .txt input is sniffed for fastText labels)
    if len(data_cfg.text_columns) == 2 and data_cfg.format == "txt":
        a, b = data_cfg.text_columns
        raise DataError(f"{input_path}: this run classifies text pairs (columns {a!r} and {b!r}), and a plain-text "
                        "input holds one text per line; give a CSV, TSV or JSONL input with both columns")
    records = iter_records(input_path, data_cfg, labelled=False, allow_empty=True)
    count = 0
    with _output(output_path) as out:
        with data_error_hint("predict reads the input with the run's data options; --input-format and --encoding "
                             "override them"):
            for chunk in _chunks(records, chunk_size):
                texts = [r.text for r in chunk]
                pairs = [r.text_pair or "" for r in chunk] if len(data_cfg.text_columns) == 2 and \
                    chunk[0].text_pair is not None else None
                if window_stride and pairs is None:
                    probs = predict_windowed(run, texts, window_stride, batch_size, device, precision)
                else:
                    probs = predict_probabilities(run, texts, pairs, batch_size, device, precision)
                task, threshold = run.cfg.data.task, run.cfg.train.threshold
                for row in probs:
                    out.write(_format_row(row, run.labels, top_k, fmt, task, threshold) + "\n")
                count += len(chunk)
        if count == 0:  # inside the `with`: the empty temp file is discarded, not renamed onto the output
            header = data_cfg.format in ("csv", "tsv") and has_header(data_cfg)
            raise DataError(f"input file {input_path} has no rows: nothing to predict" + (
                " (the first line of a CSV/TSV input is its header; --input-format txt reads one text per line)"
                if header else ""))
    return count


def window_stride(data: DataConfig, chunk_long: bool, stride: Optional[int]) -> Optional[int]:
    """predict's --chunk-long/--stride as the stride for `predict_file` (None: no windows)."""
    if stride and not chunk_long:
        raise ConfigError("--stride only applies with --chunk-long")
    if not chunk_long:
        return None
    if len(data.text_columns) == 2:
        raise ConfigError("--chunk-long works on single texts; this run reads text pairs")
    window = data.max_length - 2  # tokens of text per window, between [CLS] and [SEP]
    if stride and stride > window:
        raise ConfigError(f"--stride {stride} is longer than a window ({window} tokens), so text between windows "
                          f"would be skipped; use at most {window}")
    return stride or max(1, window // 2)


def _output_format(path: Optional[str]) -> str:
    """JSONL, or TSV for an output file ending in .tsv; a suffix naming another format is an error."""
    suffix = Path(path).suffix.lower() if path not in (None, "-") else ""
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix in (".csv", ".txt", ".ft", ".fasttext"):
        raise ConfigError(f"--output {path}: predictions are written as JSONL or TSV; name the file .jsonl or .tsv, "
                          "or pass --format jsonl|tsv")
    return "jsonl"


def _input_format(path: str) -> Optional[str]:
    """None (the suffix names it), "txt" for a path without a suffix; a directory or an unknown suffix is an error."""
    if path == "-":
        return None
    p = Path(path)
    if not p.exists():
        raise DataError(f"input file {path} does not exist; check the path")
    if p.is_dir():
        raise DataError(f"input {path} is a directory; pass a file (or - for stdin)")
    suffix = p.suffix.lower()
    if not suffix:
        return "txt"
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: cannot tell the format from the suffix {suffix}; pass --input-format "
                        "csv, tsv, jsonl, fasttext or txt")
    return None
