"""`textcls export RUN --format onnx`: the model as ONNX (token ids -> probabilities, dynamic batch and sequence
axes), with tokenizer.json, labels.json and textcls_onnx.json written beside it, checked with onnxruntime
against PyTorch before it is put in place.

Graph inputs (int64, (batch, sequence)): input_ids, attention_mask (1 on real tokens) and token_type_ids
(when the graph keeps it: the exporter drops an input the model does not read; textcls_onnx.json lists the
inputs); output `probabilities` (batch, labels), softmax or a sigmoid per label (multilabel). The tokenizer
file beside it has textcls's `[CLS] a [SEP]` post-processor, so `Tokenizer.encode(text).ids` (truncated to
max_length) is the input.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from textcls import __version__
from textcls.data.batching import pad_batch
from textcls.data.pipeline import encode_texts
from textcls.data.tokenizer import PAD
from textcls.errors import CheckpointError, ConfigError
from textcls.export.common import Samples, run_samples, single_model, standalone_tokenizer
from textcls.io import atomic_write_json, atomic_write_text, sha256_file
from textcls.predictor import activation
from textcls.run.layout import LABELS, TOKENIZER
from textcls.run.load import Run

ONNX_INFO = "textcls_onnx.json"
TOLERANCE = 1e-4  # the largest difference in probability the check accepts
CHECK_ROWS, CHECK_BATCH = 64, 16
OPSET = 18


@dataclass
class OnnxExport:
    path: Path
    inputs: list[str]
    max_difference: float  # the largest |onnxruntime - PyTorch| probability on the samples
    samples: int
    source: str  # where the sample texts came from


class Probabilities(torch.nn.Module):
    """The run's classifier from token ids to probabilities, as textcls's predictor computes them."""

    def __init__(self, model: torch.nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task
        # The graph is the padded forward (`model.padding_free` off): packing has data-dependent shapes.
        for module in model.modules():
            if hasattr(module, "padding_free"):
                module.padding_free = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return activation(self.model(input_ids, attention_mask.bool(), token_type_ids), self.task)  # (B, C)


def onnx_runtime(what: str = "--format onnx"):
    """The onnxruntime module, after checking that the exporter's packages are there (ConfigError naming the
    extra to install when one is missing)."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError as exc:
        raise ConfigError(f"{what} needs the export extra ({exc.name} is missing): "
                          "pip install 'textcls[export]'") from None
    return onnxruntime


def export_onnx(run: Run, output: Path | str, overwrite: bool = False) -> OnnxExport:
    """Export, check against PyTorch on the run's validation texts (or built ones), then write the files."""
    ort = onnx_runtime()
    output = Path(output)
    if output.suffix != ".onnx":
        raise ConfigError(f"--output {output} must name an .onnx file (e.g. model.onnx); the tokenizer and labels "
                          "are written beside it")
    if output.is_dir() or (output.exists() and not overwrite):
        raise CheckpointError(f"--output {output} exists; pick another name or pass --overwrite")
    if is_quantized(run.model):
        raise CheckpointError(f"{run.path} is an int8 (quantized) run, whose PyTorch int8 layers ONNX cannot hold; "
                              "export the float run it was made from")
    model = single_model(run, "an ONNX export", ensembles=True).cpu().eval()
    tok = standalone_tokenizer(run, "an ONNX export")
    wrapper = Probabilities(model, run.cfg.data.task).eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        export_graph(wrapper, tmp, run.cfg.data.max_length)
        samples = run_samples(run, limit=CHECK_ROWS)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        graph_inputs = [i.name for i in session.get_inputs()]
        difference = max_difference(SessionProbabilities(session), wrapper, _sample_batches(run, samples))
        if not difference <= TOLERANCE:
            raise CheckpointError(
                f"the ONNX model's probabilities differ from PyTorch's by up to {difference:.2e} on "
                f"{len(samples.texts)} {samples.source} (the check allows {TOLERANCE:g}); nothing was written. "
                "Report it with the run's config.yaml")
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    folder = output.parent
    atomic_write_text(folder / TOKENIZER, tok.to_str())
    atomic_write_json(folder / LABELS, run.labels)
    atomic_write_json(folder / ONNX_INFO, {
        "model": output.name, "sha256": sha256_file(output), "inputs": graph_inputs, "output": "probabilities",
        "task": run.cfg.data.task, "labels": run.labels, "max_length": run.cfg.data.max_length,
        "truncation": run.cfg.data.truncation, "pad_id": run.tokenizer.token_to_id(PAD),
        "threshold": run.cfg.train.threshold, "textcls_version": __version__, "run": str(run.path.resolve()),
        "check": {"max_difference": difference, "rows": len(samples.texts), "source": samples.source}})
    return OnnxExport(output, graph_inputs, difference, len(samples.texts), samples.source)


def is_quantized(model: torch.nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def export_graph(wrapper: Probabilities, path: Path, max_length: int) -> None:
    t = min(8, max_length)
    example = (torch.full((2, t), 5, dtype=torch.long), torch.ones(2, t, dtype=torch.long),
               torch.zeros(2, t, dtype=torch.long))
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_length)
    axes = {0: batch, 1: sequence}
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(wrapper, example, dynamo=True, opset_version=OPSET, verbose=False,
                                        input_names=["input_ids", "attention_mask", "token_type_ids"],
                                        output_names=["probabilities"], dynamic_shapes=(axes, axes, axes))
            program.save(str(path), external_data=False)
    except Exception as exc:  # the exporter raises its own error types
        raise CheckpointError(f"torch.onnx.export could not export this model ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''})") from None
    finally:
        quiet.setLevel(level)


class SessionProbabilities:
    """An onnxruntime session of the exported graph as a predictor's batch function: (input_ids, mask,
    type_ids) tensors -> (B, C) float32 probabilities, feeding the inputs the graph kept."""

    def __init__(self, session):
        self.session = session
        self.inputs = {i.name for i in session.get_inputs()}

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor, type_ids: Optional[torch.Tensor]) -> torch.Tensor:
        feed = {"input_ids": input_ids, "attention_mask": mask.long()}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = torch.zeros_like(input_ids) if type_ids is None else type_ids
        out = self.session.run(["probabilities"], {k: v.cpu().numpy() for k, v in feed.items() if k in self.inputs})
        return torch.from_numpy(out[0])


def max_difference(graph: SessionProbabilities, wrapper: Probabilities, batches) -> float:
    """The largest |onnxruntime - PyTorch| probability over `batches` of (input_ids, mask, type_ids)."""
    worst = 0.0
    for input_ids, mask, type_ids in batches:
        with torch.inference_mode():
            want = wrapper(input_ids, mask.long(), type_ids)
        worst = max(worst, float((graph(input_ids, mask, type_ids) - want).abs().max()))
    return worst


def _sample_batches(run: Run, samples: Samples):
    """The samples' padded batches: the first holds one row (so batch 1 is checked too), then CHECK_BATCH."""
    d = run.cfg.data
    ids, types = encode_texts(run.tokenizer, samples.texts, samples.pairs, d.max_length, d.truncation, d.head_tokens)
    start, size = 0, 1
    while start < len(ids):
        rows = slice(start, start + size)
        yield pad_batch(ids[rows], types[rows], run.tokenizer.token_to_id(PAD))
        start, size = start + size, CHECK_BATCH
