"""`textcls predict --runtime onnx`: the run's transformers run in onnxruntime instead of PyTorch, on the CPU in
fp32, with the same weights and the same probabilities within 1e-4.

Why: a deployment may want onnxruntime's kernels. It ran MiniLM 1.6-1.8x faster than PyTorch when textcls's
fp32 Linear layers went through MKL; with oneDNN's kernel (textcls.model.linear) PyTorch is now the faster of the
two on the project machine (docs/speed.md). Everything around the model is unchanged: tokenizing, length-sorted
batches, long-text windows, ensembles (one graph for members that share a tokenizer), tokenizer-variant groups
and the n-gram model's share, which stays in Python.

Each model is exported once (`torch.onnx.export`, as `textcls export --format onnx` does), checked against
PyTorch on token ids of several batch sizes and lengths, and kept in the run directory's `onnx_cache/` under
the digest of its weights, textcls's version and torch's, so a later predict loads it straight away and a
resumed run gets a new one (the graphs of weights the run no longer holds are deleted then). A run directory
that cannot be written to exports into a temporary folder each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import torch

from textcls import __version__
from textcls.errors import CheckpointError, ConfigError
from textcls.export.onnx import (
    TOLERANCE,
    Probabilities,
    SessionProbabilities,
    export_graph,
    is_quantized,
    max_difference,
    onnx_runtime,
)
from textcls.predictor import ModelPredictor, Predictor, WeightedMean
from textcls.run.layout import ONNX_CACHE

log = logging.getLogger("textcls")

RUNTIMES = ("torch", "onnx")
CHECK_SHAPES = ((1, 1), (1, 9), (16, 3), (16, 40))  # (batch, tokens) the export is checked on, max_length capped


def check_runtime(runtime: str, device: torch.device, precision: str) -> None:
    """ConfigError for a runtime this predict cannot use, naming the option to change."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be torch or onnx, got {runtime!r}")
    if runtime == "onnx" and (device.type != "cpu" or precision != "fp32"):
        change = [f"--device cpu (not {device.type})"] if device.type != "cpu" else []
        change += [f"--precision fp32 (not {precision})"] if precision != "fp32" else []
        raise ConfigError(f"--runtime onnx runs fp32 on the CPU: pass {' and '.join(change)}, or use --runtime torch")


def with_runtime(predictor: Predictor, run, runtime: str) -> Predictor:
    """A loaded run's predictor (run_predictor's) for `runtime`: as it is for torch; for onnx, with its
    transformers run by onnxruntime."""
    return use_onnx(predictor, run.path, run.cfg.data.max_length) if runtime == "onnx" else predictor


def use_onnx(predictor: Predictor, run_dir: Path, max_length: int) -> Predictor:
    """`predictor` (run_predictor's, on the CPU in fp32) with each of its transformers run by onnxruntime."""
    ort = onnx_runtime("--runtime onnx")
    cache, used = run_dir / ONNX_CACHE, set()
    for model_predictor in _model_predictors(predictor):
        path = _graph(model_predictor, cache, max_length)
        used.add(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # what PyTorch would have used
        options.inter_op_num_threads = 1
        model_predictor.runtime = SessionProbabilities(
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
    for stale in cache.glob("*.onnx") if cache.is_dir() else ():  # graphs of weights the run no longer has
        if stale not in used:
            with contextlib.suppress(OSError):
                stale.unlink()
    return predictor


def _model_predictors(predictor: Predictor) -> list[ModelPredictor]:
    if isinstance(predictor, ModelPredictor):  # EnsemblePredictor too
        return [predictor]
    if isinstance(predictor, WeightedMean):  # groups, and the n-gram mix (its NB-LR part has no transformer)
        return [m for p in predictor.predictors for m in _model_predictors(p)]
    return []


def weights_digest(model: torch.nn.Module, task: str) -> str:
    """sha256 of the weights (names, dtypes, shapes, bytes) with the task and the exporting versions."""
    digest = hashlib.sha256(f"textcls {__version__} torch {torch.__version__} {task}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _graph(predictor: ModelPredictor, cache: Path, max_length: int) -> Path:
    """The cached graph of the predictor's model, exported and checked first when there is none."""
    model = predictor.model
    if is_quantized(model):
        raise CheckpointError("an int8 (quantized) run's layers have no ONNX form: predict it with --runtime torch")
    path = cache / f"{weights_digest(model, predictor.task)[:32]}.onnx"
    if path.is_file():
        return path
    with contextlib.suppress(OSError):
        cache.mkdir(exist_ok=True)
    if not (cache.is_dir() and os.access(cache, os.W_OK)):  # a read-only run directory: this process alone
        log.info("%s cannot be written; exporting into a temporary folder", cache)
        path = Path(tempfile.mkdtemp(prefix="textcls-onnx-")) / path.name
    log.info("exporting the model to ONNX for onnxruntime (once; kept in %s)", path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    wrapper = Probabilities(model, predictor.task).eval()
    try:
        export_graph(wrapper, tmp, max_length)
        _check(wrapper, tmp, max_length, predictor.tokenizer.get_vocab_size())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def _check(wrapper: Probabilities, path: Path, max_length: int, vocab_size: int) -> None:
    """CheckpointError unless onnxruntime's probabilities match PyTorch's on seeded token ids."""
    ort = onnx_runtime("--runtime onnx")
    graph = SessionProbabilities(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    worst = max_difference(graph, wrapper, _check_batches(max_length, vocab_size))
    if not worst <= TOLERANCE:
        raise CheckpointError(f"onnxruntime's probabilities differ from PyTorch's by up to {worst:.2e} on this run "
                              f"(the check allows {TOLERANCE:g}); predict with --runtime torch")


def _check_batches(max_length: int, vocab_size: int):
    """Seeded (input_ids, mask, type_ids) batches of CHECK_SHAPES, rows after the first shorter (padded)."""
    generator = torch.Generator().manual_seed(0)
    for batch, tokens in CHECK_SHAPES:
        tokens = min(tokens, max_length)
        ids = torch.randint(min(5, vocab_size - 1), vocab_size, (batch, tokens), generator=generator)
        mask = torch.ones_like(ids, dtype=torch.bool)
        mask[1:, max(1, tokens // 2):] = False
        yield ids.masked_fill(~mask, 0), mask, torch.zeros_like(ids)
