"""`textcls eval`: metrics of a run directory on a labelled file, as rich tables and JSON."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from textcls.config import DataConfig
from textcls.data.pipeline import labelled_rows
from textcls.errors import ConfigError, DataError, data_error_hint, printable
from textcls.export.runtime import with_runtime
from textcls.io import open_output
from textcls.mistakes import computed_once, errors_format, mistakes, write_mistakes
from textcls.predictor import predictor_report, run_predictor
from textcls.progress import WorkProgress
from textcls.run.load import Run
from textcls.run.outputs import check_output


def evaluate_file(run: Run, data_file: str, report_path: Optional[str] = None, batch_size: int = 128,
                  device: torch.device = torch.device("cpu"), precision: str = "fp32",
                  reading: Optional[dict] = None, errors_path: Optional[str] = None, quiet: bool = True,
                  runtime: str = "torch") -> dict:
    """The report of the run on a labelled file read with the run's data options, or with `reading`'s
    (format, text_columns, label_column, header, encoding) in their place: the metrics of the run's
    predictor's probabilities (with the NB-LR model's share mixed in, and its metrics alone, when the
    run has one). `errors_path`: also write the misclassified rows there (textcls.mistakes). `quiet=False`:
    progress on stderr while the rows are predicted. `runtime="onnx"`: the transformers run in onnxruntime
    (textcls.export.runtime)."""
    if errors_path:
        errors_format(errors_path)
        check_output(errors_path, "--errors", (data_file,))
    check_output(report_path, "--report", (data_file,))
    if not Path(data_file).is_file():
        what = "is a directory; pass a file" if Path(data_file).is_dir() else "does not exist; check the path"
        raise DataError(f"data file {data_file} {what}")
    with data_error_hint("the file is read with the run's data options; for a file laid out otherwise pass "
                         "--input-format, --text-column, --label-column, --header or --encoding"):
        rows, skipped = labelled_rows(data_file, dataclasses.replace(run.cfg.data, **(reading or {})), run.labels)
    # each tokenizer group tokenizes the rows itself
    predictor = with_runtime(run_predictor(run, batch_size, device, precision), run, runtime)
    with WorkProgress(f"eval {data_file}", len(rows.texts), enabled=not quiet, unit="rows") as progress:
        probs, predictor = computed_once(predictor, rows.texts, rows.pairs, progress.advance)
    if errors_path:
        write_mistakes(errors_path, mistakes(rows.texts, rows.pairs, rows.targets, probs, run.labels,
                                             run.cfg.data.task, run.cfg.train.threshold))
    report = predictor_report(predictor, rows.texts, rows.pairs, rows.targets, run.cfg.train.threshold)
    report["file"] = str(data_file)
    if skipped:
        report["skipped_lines"] = skipped
    if report_path == "-":
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    elif report_path:
        with open_output(report_path) as handle:  # a device or FIFO is written through, a symlink's target kept
            handle.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def reading_options(data: DataConfig, input_format: Optional[str] = None, text_columns: Optional[list[str]] = None,
                    label_column: Optional[str] = None, header: Optional[bool] = None,
                    encoding: Optional[str] = None) -> dict:
    """`evaluate_file`'s `reading` from eval's options: the data keys that differ from the run's `data`.
    Column names that are digits are 0-based indexes."""
    if input_format not in (None, "csv", "tsv", "jsonl", "fasttext"):
        raise ConfigError(f"--input-format must be one of csv, tsv, jsonl, fasttext; got {input_format!r}")
    column = lambda c: int(c) if c.isdigit() else c  # noqa: E731
    reading: dict = {"format": input_format, "delimiter": None} if input_format else {}
    if text_columns:
        if len(text_columns) != len(data.text_columns):
            raise ConfigError(f"--text-column is given {len(text_columns)} time(s) but the run reads "
                              f"{len(data.text_columns)} text column(s)")
        reading["text_columns"] = [column(c) for c in text_columns]
    if label_column is not None:
        reading["label_column"] = column(label_column)
    if header is not None:
        reading["header"] = header
    if encoding:
        reading["encoding"] = encoding
    label = reading.get("label_column", data.label_column)
    if label in reading.get("text_columns", data.text_columns):
        raise ConfigError(f"the label column {label!r} is also a text column; name the label column with "
                          "--label-column (and the text with --text-column)")
    return reading


def print_report(report: dict, console: Optional[Console] = None) -> None:
    console = console or Console()
    source = escape(printable(report.get("file", "")))
    console.print(f"[bold]{source}[/] ({report['examples']} examples)", highlight=False)
    summary = Table(show_header=True)
    for key in ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss"):
        if key in report:
            summary.add_column(key)
    summary.add_row(*[f"{report[k]:.4f}" for k in ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")
                      if k in report])
    console.print(summary)
    if "nblr" in report:  # the figures above mix in the NB-LR model's share
        key = "accuracy" if "accuracy" in report else "micro_f1"
        console.print(f"with the NB-LR model, {report['nblr']['weight']:g} of the probabilities; {key} without "
                      f"it {report['without_nblr'][key]:.4f}, the NB-LR model alone {report['nblr'][key]:.4f}",
                      highlight=False)
    console.print("per class")
    per = Table()
    for col in ("label", "precision", "recall", "f1", "support"):
        per.add_column(col, justify="left" if col == "label" else "right")
    for name, m in report["per_class"].items():
        per.add_row(escape(printable(name)), f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
                    str(m["support"]))
    console.print(per)
    if "confusion_matrix" in report and len(report["labels"]) <= 30:
        console.print("confusion matrix (rows: true label, columns: predicted label)")
        cm = Table()
        cm.add_column("")
        for name in report["labels"]:
            cm.add_column(escape(printable(name[:12])), justify="right")
        for name, row in zip(report["labels"], report["confusion_matrix"]):
            cm.add_row(escape(printable(name[:12])), *map(str, row))
        console.print(cm)
