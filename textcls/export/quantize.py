"""`textcls quantize RUN --output RUN_INT8`: a run directory whose Linear layers hold int8 weights (dynamic
quantization, textcls.model.quantize), which `predict`, `eval` and every other loader of runs use as is.

The new run holds config.yaml, tokenizer.json, labels.json (and the n-gram model's files), model.safetensors
with the int8 tensors, and run.json with `quantized: {method, from, from_sha256}`; it is built in a temp
folder and swapped into place. An adapter run's base is merged in, so the int8 run stands alone.
Then the float and int8 runs are compared on the validation rows (or --data FILE): accuracy, and the time
`predict` takes on those texts.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from textcls.errors import CheckpointError
from textcls.export.common import Samples, run_samples
from textcls.io import make_temp_dir, replace_dir
from textcls.model import TextClassifier
from textcls.model.quantize import METHOD, int8_state, quantize_linear
from textcls.predictor import Predictor, run_predictor
from textcls.run.info import read_run_info, save_run_files, write_run_info
from textcls.run.layout import (
    CONFIG,
    ENSEMBLE,
    LABELS,
    NBLR_INFO,
    NBLR_WEIGHTS,
    RUN_INFO,
    TOKENIZER,
    WEIGHTS,
    is_run_dir,
)
from textcls.run.load import Run, load_run, run_digest, weights_digest
from textcls.run.members import member_dirs
from textcls.run.weights import save_weights

TIMING_ROWS = 2000  # texts predict is timed on (the first of the validation rows)
REPEATS = 3  # timings alternate float / int8 this many times; the fastest of each counts


@dataclass
class QuantizeReport:
    output: Path
    float_bytes: int  # the float tensors of the model (all of them, an adapter run's base included)
    int8_bytes: int  # the int8 run's model.safetensors
    layers: int  # Linear layers quantized
    samples: int
    source: str
    accuracy: Optional[tuple[float, float]]  # (float, int8) when the samples are labelled
    agreement: float  # share of rows whose top label is the same
    seconds: tuple[float, float]  # predict time on the samples (float, int8)

    @property
    def speedup(self) -> float:
        return self.seconds[0] / self.seconds[1] if self.seconds[1] > 0 else float("inf")


def quantize_run(run_dir: Path | str, output: Path | str, data_file: Optional[str] = None,
                 overwrite: bool = False) -> QuantizeReport:
    """The int8 copy of a run of one model or of an ensemble (each member quantized in its own folder, the
    ensemble's own files copied), then the comparison of the two on the validation rows or `data_file`."""
    run_dir, output = Path(run_dir), Path(output)
    run = load_run(run_dir)
    if read_run_info(run_dir).get("quantized"):
        raise CheckpointError(f"{run_dir} is already quantized; quantize the float run it was made from")
    _check_output(run_dir, output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{output.name}.", output.parent)
    try:
        if isinstance(run.model, TextClassifier):
            layers = _write_int8(run, run_dir, tmp)
        else:  # an ensemble: its files as they are, each member as an int8 run of its own
            for name in (CONFIG, TOKENIZER, LABELS, ENSEMBLE, RUN_INFO, NBLR_INFO, NBLR_WEIGHTS):
                if (run_dir / name).is_file():
                    shutil.copy2(run_dir / name, tmp / name)
            info = {k: v for k, v in read_run_info(tmp).items() if k not in ("textcls_version", "format_version")}
            write_run_info(tmp, **{**info, "quantized": {"method": METHOD, "from": str(run_dir.resolve()),
                                                         "from_sha256": run_digest(run_dir)}})
            layers = 0
            for member in member_dirs(run_dir):
                target = tmp / member.relative_to(run_dir)
                target.mkdir(parents=True)
                layers += _write_int8(load_run(member), member, target)
        replace_dir(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    int8 = load_run(output)  # what predict and eval will load
    samples = run_samples(run, data_file)
    return _compare(run, int8, samples, output, layers)


def _write_int8(run: Run, run_dir: Path, folder: Path) -> int:
    """A run of one model as an int8 run in `folder`; returns the number of Linear layers quantized."""
    state = int8_state(run.model, quantize_linear(run.model))
    save_run_files(folder, run.cfg, run.tokenizer, run.labels)
    for name in (NBLR_INFO, NBLR_WEIGHTS):  # the n-gram model's files (nblr.json holds the weights' sha256)
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, folder / name)
    digest = save_weights(state, folder / WEIGHTS)
    write_run_info(folder, sha256={WEIGHTS: digest}, quantized={
        "method": METHOD, "from": str(run_dir.resolve()), "from_sha256": weights_digest(run_dir)})
    return sum(k.endswith(".weight_int8") for k in state)


def _check_output(run_dir: Path, output: Path, overwrite: bool) -> None:
    if output.resolve() == run_dir.resolve():
        raise CheckpointError("--output is the run directory itself; name a new folder for the int8 run")
    if output.exists() and not output.is_dir():
        raise CheckpointError(f"--output {output} is a file; name a folder for the int8 run")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise CheckpointError(f"--output {output} exists and is not empty; pick another folder or pass --overwrite")
        if not is_run_dir(output):
            raise CheckpointError(f"--output {output} is not a run directory; --overwrite replaces run directories "
                                  "only: pick another folder")


def _compare(run: Run, int8: Run, samples: Samples, output: Path, layers: int) -> QuantizeReport:
    before, after = run_predictor(run), run_predictor(int8)
    timed = Samples(samples.texts[:TIMING_ROWS], samples.pairs[:TIMING_ROWS] if samples.pairs else None,
                    None, samples.source)
    seconds = _timings(before, after, timed)
    p_before = before.predict_proba(samples.texts, samples.pairs)
    p_after = after.predict_proba(samples.texts, samples.pairs)
    accuracy = None
    if samples.targets is not None and run.cfg.data.task == "single":
        truth = samples.targets.argmax(1)
        accuracy = (float((p_before.argmax(1) == truth).mean()), float((p_after.argmax(1) == truth).mean()))
    float_bytes = sum(v.numel() * v.element_size() for v in run.model.state_dict().values())
    int8_bytes = sum(path.stat().st_size for path in output.rglob(WEIGHTS))  # every member's, in an ensemble
    return QuantizeReport(output, float_bytes, int8_bytes, layers, len(samples.texts),
                          samples.source, accuracy, float(np.mean(p_before.argmax(1) == p_after.argmax(1))),
                          seconds)


def _timings(before: Predictor, after: Predictor, samples: Samples) -> tuple[float, float]:
    """The fastest of REPEATS predict runs of each, alternating, after one warm-up each."""
    for p in (before, after):
        p.predict_proba(samples.texts[:8], samples.pairs[:8] if samples.pairs else None)
    best = [float("inf"), float("inf")]
    for _ in range(REPEATS):
        for i, p in enumerate((before, after)):
            start = time.perf_counter()
            p.predict_proba(samples.texts, samples.pairs)
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def describe(report: QuantizeReport) -> list[str]:
    """The command's lines."""
    mb = 1024 * 1024
    lines = [f"{report.layers} Linear layers to int8; weights {report.float_bytes / mb:.1f} MB (float) -> "
             f"{report.int8_bytes / mb:.1f} MB (in {report.output})"]
    on = f"on {report.samples} {report.source}"
    if report.accuracy:
        a, b = report.accuracy
        lines.append(f"accuracy {on}: {a:.4f} (float) -> {b:.4f} (int8), {100 * (b - a):+.2f} points")
    lines.append(f"same top label on {100 * report.agreement:.1f}% of the rows")
    n = min(report.samples, TIMING_ROWS)
    lines.append(f"predict on {n} texts, {torch.get_num_threads()} threads: {report.seconds[0]:.2f} s (float) -> "
                 f"{report.seconds[1]:.2f} s (int8), {report.speedup:.2f}x")
    return lines
