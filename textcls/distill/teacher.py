"""The teacher of a distillation: a finished run directory (one model, an ensemble, a fine-tuned pretrained base,
with or without its NB-LR model), its weights' sha256, and its probabilities cached in the student's run.

The probabilities come from the run's predictor (textcls.predictor.run_predictor), as `eval` and `predict`
compute them, once: `teacher_probs.safetensors` in the student's run directory holds them (and the teacher's
pooled vectors with `distill.match_hidden`, the mean states of its matched layers with `distill.match_layers`)
with the sha256 of the texts they are for, the teacher's weights sha256 and the label order, and a run (or a
resumed run) whose texts and teacher are the same reads them back instead of running the teacher again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from textcls.data.pipeline import encode_texts
from textcls.data.tokenizer import MASK, PAD, UNK
from textcls.errors import CheckpointError, ConfigError
from textcls.io import atomic_write_bytes
from textcls.model import TextClassifier
from textcls.predictor import batched_outputs, run_predictor
from textcls.run.layout import TEACHER_PROBS, is_run_dir
from textcls.run.load import Run, load_run, run_digest

PROBS_TENSOR = "probabilities"
POOLED_TENSOR = "pooled"
LAYERS_TENSOR = "layers"


@dataclass
class Teacher:
    path: Path
    run: Run
    sha256: str  # of model.safetensors; of all the run's weights files together for an ensemble or an NB-LR mix

    @property
    def labels(self) -> list[str]:
        return self.run.labels

    def reference(self) -> dict:
        """What the student's run.json records: `teacher: {path, sha256}`."""
        return {"path": str(self.path.resolve()), "sha256": self.sha256}

    def mask_token(self) -> str:
        """The word that masks a word of an augmented text: the teacher tokenizer's mask token, else its unknown
        token (both read as one token by the tokenizer that has them)."""
        vocab = self.run.tokenizer.get_vocab()
        return next((t for t in (MASK, "<mask>", UNK, "<unk>") if t in vocab), MASK)

    def probabilities(self, texts: list[str], device: torch.device, batch_size: int = 64,
                      precision: str = "fp32") -> np.ndarray:
        """(N, C) float32 probabilities of `texts` in the teacher's label order, computed in `precision`."""
        self.run.model.to(device)
        return run_predictor(self.run, batch_size=batch_size, device=device, precision=precision).predict_proba(texts)

    def runs(self) -> list[Run]:
        """The teacher's loaded runs: one per tokenizer group of an ensemble, else the run itself."""
        return [group for group, _ in self.run.groups] if self.run.groups else [self.run]

    def models(self) -> list[TextClassifier]:
        """Every model of the teacher, each ensemble member's, in member order."""
        return [m for run in self.runs() for m in _models(run.model)]

    def single(self) -> tuple[TextClassifier, object, object]:
        """(the teacher's one model, its tokenizer, its data config): a single-model run's, or the first member's
        of an ensemble (of its first tokenizer group), the member a student of its layers or vectors starts from."""
        run = self.runs()[0]
        return _models(run.model)[0], run.tokenizer, run.cfg.data

    def pooled(self, texts: list[str], device: torch.device, batch_size: int = 64,
               precision: str = "fp32") -> np.ndarray:
        """(N, H) float32 pooled vectors of `texts` (the vector the head reads) by the teacher's one model (of an
        ensemble, its first member), computed in `precision`."""
        model, tokenizer, d = self.single()
        model.eval()
        return pooled_vectors(model, tokenizer, texts, d.max_length, d.truncation, d.head_tokens, device,
                              batch_size, precision)

    def layer_means(self, texts: list[str], depths: Sequence[int], device: torch.device, batch_size: int = 64,
                    precision: str = "fp32") -> np.ndarray:
        """(N, len(depths), H) float32: for each of `texts`, the mean over its tokens of the hidden states after each
        of the teacher's one model's layers `depths` (1-based), computed in `precision`."""
        model, tokenizer, d = self.single()
        model.eval()
        return pooled_vectors(model, tokenizer, texts, d.max_length, d.truncation, d.head_tokens, device,
                              batch_size, precision, depths)


def _models(model) -> list[TextClassifier]:
    """A model's TextClassifiers: itself, or an ensemble's members (nested ensembles flattened)."""
    return [m for member in model.members for m in _models(member)] if hasattr(model, "members") else [model]


def pooled_vectors(model: TextClassifier, tokenizer, texts: list[str], max_length: int, truncation: str,
                   head_tokens: Optional[int], device: torch.device, batch_size: int = 64,
                   precision: str = "fp32", depths: Sequence[int] = ()) -> np.ndarray:
    """(N, H) float32: the pooled vector `model`'s head reads for each of `texts`, computed in `precision`; with
    `depths`, (N, len(depths), H): the mean over each text's tokens of the hidden states after those layers."""
    model.to(device)
    ids, _ = encode_texts(tokenizer, texts, None, max_length, truncation, head_tokens)
    h, pad = model.cfg.hidden_size, tokenizer.token_to_id(PAD) or 0
    if not depths:
        return batched_outputs(model.features, ids, None, h, batch_size, pad, device, precision)

    def means(input_ids, mask, type_ids):  # (B, P * H)
        return model.features_and_means(input_ids, mask, type_ids, depths)[1].flatten(1)

    flat = batched_outputs(means, ids, None, h * len(depths), batch_size, pad, device, precision)
    return flat.reshape(len(texts), len(depths), h)


def load_teacher(path: Path | str) -> Teacher:
    """The teacher run at `path`, loaded on the CPU; ConfigError/CheckpointError say what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"teacher run {path} does not exist; pass the run directory of a `textcls train` run")
    if not path.is_dir():
        raise ConfigError(f"teacher run {path} is a file; pass the run's folder (the one with config.yaml)")
    if not is_run_dir(path):
        raise ConfigError(f"teacher run {path} is not a textcls run directory (no config.yaml and tokenizer.json); "
                          "pass the --output folder of a `textcls train` run")
    run = load_run(path)  # refuses a pretraining run, an unfinished one, weights that fail their checksum
    data = run.cfg.data
    if data.task != "single":
        raise ConfigError(f"teacher run {path} is multilabel; `textcls distill` trains single-label students")
    if len(data.text_columns) != 1:
        raise ConfigError(f"teacher run {path} classifies text pairs; `textcls distill` takes single-text teachers")
    return Teacher(path, run, run_digest(path))


def texts_digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def cache_key(texts: Sequence[str], teacher: Teacher, pooled: bool = False,
              depths: Sequence[int] = ()) -> dict[str, str]:
    """What a cache is for: the texts, the teacher, its label order, whether it holds the pooled vectors, and
    which of the teacher's layers' mean states it holds (`depths`)."""
    return {"rows": str(len(texts)), "texts_sha256": texts_digest(texts), "teacher_sha256": teacher.sha256,
            "labels": json.dumps(teacher.labels, ensure_ascii=False), "pooled": "yes" if pooled else "no",
            "layers": json.dumps(list(depths))}


def read_cache(run_dir: Path, key: dict[str, str]) -> tuple[Optional[dict[str, np.ndarray]], Optional[str]]:
    """({"probabilities": (N, C)[, "pooled": (N, H)][, "layers": (N, P, H)]}, None) when the cache holds this
    key's; (None, why) otherwise: no file, a damaged file, or one for other texts or another teacher. Layer states
    for other layers than the key's are left out (the caller computes the key's)."""
    path = run_dir / TEACHER_PROBS
    if not path.exists():
        return None, "no cache"
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name).numpy() for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, KeyError):
        return None, "damaged"
    if meta.get("teacher_sha256") != key["teacher_sha256"]:
        return None, "another teacher"
    if any(meta.get(k) != v for k, v in key.items() if k not in ("pooled", "layers")):
        return None, "other texts"
    if meta.get("pooled") != key["pooled"]:
        return None, "no pooled vectors" if key["pooled"] == "yes" else "pooled vectors not needed"
    n, c = int(key["rows"]), len(json.loads(key["labels"]))
    probs, pooled = arrays.get(PROBS_TENSOR), arrays.get(POOLED_TENSOR)
    if probs is None or probs.shape != (n, c) or (key["pooled"] == "yes" and (pooled is None or len(pooled) != n)):
        return None, "damaged"
    if meta.get("layers", "[]") != key["layers"] or key["layers"] == "[]":
        arrays.pop(LAYERS_TENSOR, None)
    elif LAYERS_TENSOR not in arrays or arrays[LAYERS_TENSOR].shape[:2] != (n, len(json.loads(key["layers"]))):
        return None, "damaged"
    if any(a.dtype != np.float32 or not np.isfinite(a).all() for a in arrays.values()):
        return None, "damaged"
    return arrays, None


def write_cache(run_dir: Path, arrays: dict[str, np.ndarray], key: dict[str, str]) -> None:
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for name, a in arrays.items()}
    blob = save(tensors, metadata={"format": "pt", **key})
    try:
        atomic_write_bytes(run_dir / TEACHER_PROBS, blob)
    except OSError as exc:
        raise CheckpointError(f"cannot write {run_dir / TEACHER_PROBS} ({exc.strerror or exc}); free disk space or "
                              "fix the folder's permissions and run again") from None
