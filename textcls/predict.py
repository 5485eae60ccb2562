"""Stream a run's predictions over a file: read a chunk, hand it to the run's predictor (textcls.predictor:
it sorts by length, batches and restores the order), write one line per input.

Memory stays flat on inputs of any size: only one chunk of texts is held at a time, and the output
goes to a temp file renamed onto the target at the end (a killed predict leaves no half file).
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import IO, Iterator, Optional

import numpy as np
import torch

from textcls.config import DataConfig
from textcls.data.readers import SUFFIXES, Record, detect_format, has_header, iter_records
from textcls.errors import ConfigError, DataError, data_error_hint
from textcls.export.runtime import with_runtime
from textcls.io import open_output
from textcls.predictor import predict_ids, run_predictor, window_starts  # noqa: F401 (re-exported: bench/ and tests use them)
from textcls.progress import WorkProgress
from textcls.run.load import Run
from textcls.run.outputs import check_output


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_probabilities(run: Run, texts: list[str], pairs: Optional[list[str]] = None, batch_size: int = 64,
                          device: torch.device = torch.device("cpu"), precision: str = "fp32") -> np.ndarray:
    """(N, C) probabilities for raw texts (optionally text pairs), in input order: the run's predictor."""
    return run_predictor(run, batch_size, device, precision).predict_proba(texts, pairs)


def predict_windowed(run: Run, texts: list[str], stride: Optional[int] = None, batch_size: int = 64,
                     device: torch.device = torch.device("cpu"), precision: str = "fp32") -> np.ndarray:
    """(N, C) probabilities; a text longer than max_length is split into overlapping windows of
    max_length tokens (`[CLS] window [SEP]`, starts `stride` tokens apart; default half a window)
    and its windows' probabilities are averaged. Texts that fit are predicted as by predict_probabilities."""
    predictor = run_predictor(run, batch_size, device, precision, chunk_long=True, stride=stride)
    return predictor.predict_proba(texts)


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
        with open_output(path, "w") as handle:
            yield handle


def predict_file(run: Run, input_path: str, output_path: Optional[str] = None, top_k: int = 1,
                 output_format: Optional[str] = None, input_format: Optional[str] = None, batch_size: int = 64,
                 chunk_size: int = 4096, device: torch.device = torch.device("cpu"), precision: str = "fp32",
                 window_stride: Optional[int] = None, encoding: Optional[str] = None, echo: Optional[str] = None,
                 stream: bool = False, quiet: bool = True, runtime: str = "torch") -> int:
    """Predict every input line/row; writes one output line per input in order. Returns the count.

    The input is read with the run's data options (columns, header, encoding), in `input_format`, else
    the format its suffix names; a file without a suffix (or a device such as /dev/stdin) is plain text.
    `window_stride` (tokens) turns on window averaging for long documents (see predict_windowed).
    `echo`: each output row also holds the input's `text` (and `text_pair`), its `line` number, or the
    value of that column of a CSV/TSV/JSONL input, first. `stream`: each input line is answered (and
    flushed) as soon as it is read, for stdin from a terminal or a pipe that stays open. `quiet=False` (and
    not `stream`): progress on stderr, in lines of a file (rows of stdin or a JSON array, with no total).
    `runtime="onnx"`: the transformers run in onnxruntime (textcls.export.runtime; CPU, fp32)."""
    check_output(output_path, "--output", (input_path,))
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
    keep = [] if echo in (None, "text", "line") else [int(echo) if echo.isdigit() else echo]
    records = iter_records(input_path, data_cfg, labelled=False, allow_empty=True, keep=keep)
    predictor = with_runtime(run_predictor(run, batch_size, device, precision, chunk_long=bool(window_stride),
                                           stride=window_stride), run, runtime)
    count = 0
    # No progress while answering line by line, nor while the predictions scroll past on the same terminal.
    shown = not (quiet or stream or (output_path in (None, "-") and sys.stdout.isatty()))
    lines = _line_count(input_path, data_cfg) if shown else None
    what = f"predict {'stdin' if input_path == '-' else input_path}"
    with _output(output_path) as out, WorkProgress(what, lines, enabled=shown,
                                                   unit="rows" if lines is None else "lines") as progress:
        with data_error_hint("predict reads the input with the run's data options; --input-format and --encoding "
                             "override them"):
            for chunk in _chunks(records, 1 if stream else chunk_size):
                texts = [r.text for r in chunk]
                pairs = [r.text_pair or "" for r in chunk] if len(data_cfg.text_columns) == 2 and \
                    chunk[0].text_pair is not None else None
                probs = predictor.predict_proba(texts, pairs)  # pairs are not windowed
                task, threshold = run.cfg.data.task, run.cfg.train.threshold
                for rec, row in zip(chunk, probs):
                    line = _format_row(row, run.labels, top_k, fmt, task, threshold)
                    out.write((_echoed(rec, echo, line, fmt) if echo else line) + "\n")
                if stream:
                    out.flush()
                count += len(chunk)
                if lines is None:
                    progress.advance(len(chunk))
                else:
                    progress.update(chunk[-1].line)
            if lines is not None and count:
                progress.update(lines)  # every line read: the header and blank lines too
        if count == 0:  # inside the `with`: the empty temp file is discarded, not renamed onto the output
            header = data_cfg.format in ("csv", "tsv") and has_header(data_cfg)
            raise DataError(f"input file {input_path} has no rows: nothing to predict" + (
                " (the first line of a CSV/TSV input is its header; --input-format txt reads one text per line)"
                if header else ""))
    return count


def _line_count(path: str, data_cfg: DataConfig) -> Optional[int]:
    """The lines of a regular input file (predict's progress total); None for stdin, a FIFO or device, a JSON
    array (its records are items, not lines) and UTF-16/32 text (where a byte 0x0A is not a line end)."""
    try:
        wide = codecs.lookup(data_cfg.encoding or "utf-8").name.startswith(("utf-16", "utf-32"))
    except LookupError:  # the reader names the unknown encoding
        return None
    if path == "-" or wide or not Path(path).is_file():
        return None
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        if data_cfg.format == "jsonl" and handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
            return None
        handle.seek(0)
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _echoed(rec: Record, echo: str, line: str, fmt: str) -> str:
    """An output line with the echoed input first: `{"text": ..., "label": ...}` or `text<TAB>label...`."""
    if echo == "text":
        values = {"text": rec.text, **({"text_pair": rec.text_pair} if rec.text_pair is not None else {})}
    else:
        values = {"line": rec.line} if echo == "line" else dict(rec.kept)
    if fmt == "tsv":
        cells = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values.values()]
        return "\t".join([*(" ".join(c.split()) for c in cells), line])  # tabs and line breaks become spaces
    return json.dumps(values, ensure_ascii=False)[:-1] + ", " + line[1:]


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
