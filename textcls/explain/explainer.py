"""`textcls explain`: per text, the predicted label and a score per word for how much it pushed toward it.

The label and its probability are the run's predictor's (what `predict` says, the NB-LR share
included); the scores explain the transformer(s): integrated gradients or attention rollout
(attribution.py) on each member, averaged over an ensemble's members (the gradient of the members'
mean probability is the mean of their gradients), then averaged from sub-tokens into words (words.py).
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from textcls.data.readers import SUFFIXES, detect_format, iter_records
from textcls.data.tokenizer import CLS, SEP
from textcls.errors import ConfigError, DataError
from textcls.explain.attribution import attention_maps, attention_rollout, integrated_gradients
from textcls.explain.words import Word, encoding_words, word_scores
from textcls.io import atomic_write_bytes, atomic_write_text
from textcls.model.ensemble import EnsembleClassifier
from textcls.predictor import run_predictor
from textcls.progress import WorkProgress

METHODS = {"ig": "integrated gradients", "attention": "attention rollout"}


@dataclass
class Explanation:
    text: str  # the text the words are spans of
    label: str  # the predicted label
    probability: float  # its probability
    target: str  # the label the scores are for (the predicted one unless --label)
    words: list[Word]
    scores: np.ndarray  # (W,) one per word
    truncated: bool  # the text was longer than data.max_length: the scores cover its start


@dataclass
class _Part:
    """Members sharing one tokenizer: the whole run, or one tokenizer group of an ensemble."""

    tokenizer: object
    members: list[torch.nn.Module]
    max_length: int
    weight: float


def _parts(run) -> list[_Part]:
    sources = run.groups or [(run, 1)]
    parts = []
    for source, weight in sources:
        model = source.model
        members = list(model.members) if isinstance(model, EnsembleClassifier) else [model]
        parts.append(_Part(source.tokenizer, members, source.cfg.data.max_length, weight))
    return parts


def _tokens(part: _Part, text: str):
    """(shown text, token strings, offsets, ids with [CLS]/[SEP], truncated) of one text."""
    tok = part.tokenizer
    enc = tok.encode(text, add_special_tokens=False)
    n = min(len(enc.ids), part.max_length - 2)
    ids = [tok.token_to_id(CLS), *enc.ids[:n], tok.token_to_id(SEP)]
    offsets = enc.offsets[:n]
    if hasattr(tok, "cut"):  # a segmenting tokenizer encodes the cut text: its offsets are moved back
        offsets = uncut_offsets(text, tok.cut(text), offsets)
    return text, enc.tokens[:n], offsets, ids, len(enc.ids) > n


def uncut_offsets(text: str, cut: str, offsets) -> list[tuple[int, int]]:
    """Offsets into `cut` (the text's words joined by spaces: every character of `text` in order, with
    spaces put between) as offsets into `text`."""
    position = np.zeros(len(cut) + 1, dtype=np.int64)  # position[i]: where cut[i] is (or would be) in text
    j = 0
    for i, char in enumerate(cut):
        position[i] = j
        if j < len(text) and char == text[j]:
            j += 1
    position[len(cut)] = j
    return [(int(position[a]), int(position[b - 1]) + 1 if b > a else int(position[a])) for a, b in offsets]


def _check(run, method: str, label: Optional[str], steps: int) -> None:
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {steps}")
    if label is not None and label not in run.labels:
        raise ConfigError(f"--label {label!r} is not one of the run's labels: {', '.join(run.labels)}")
    if len(run.cfg.data.text_columns) == 2:
        raise ConfigError("this run classifies text pairs, and explain reads single texts")


def explain_texts(run, texts: list[str], method: str = "ig", label: Optional[str] = None, steps: int = 32,
                  batch_size: int = 64, quiet: bool = True) -> list[Explanation]:
    """An Explanation per text of a loaded run (textcls.run.load.Run); `quiet=False`: progress on stderr
    (a bar on a terminal, a line every 10 seconds in a log)."""
    _check(run, method, label, steps)
    parts = _parts(run)
    device = next(parts[0].members[0].parameters()).device
    probs = run_predictor(run, batch_size, device).predict_proba(texts)  # (N, C)
    results = []
    with WorkProgress("explain", len(texts), enabled=not quiet and len(texts) > 1) as progress:
        for text, p in zip(texts, probs):
            results.append(_explain_text(run, parts, text, p, method, label, steps))
            progress.advance()
    return results


def _explain_text(run, parts: list[_Part], text: str, p: np.ndarray, method: str, label: Optional[str],
                  steps: int) -> Explanation:
    top = int(np.argmax(p))
    target = run.labels.index(label) if label is not None else top
    per_part = [_explain_part(part, text, method, target, steps, run.cfg.data.task) for part in parts]
    shown, words, _, truncated = per_part[0]
    if any([w.text for w in other[1]] != [w.text for w in words] for other in per_part[1:]):
        raise ConfigError("this ensemble's members use tokenizers that read the text as different words, so "
                          "their scores cannot be averaged; explain a member's run directory instead")
    total = sum(part.weight for part in parts)
    scores = sum(part.weight * s for part, (_, _, s, _) in zip(parts, per_part)) / total
    return Explanation(shown, run.labels[top], float(p[top]), run.labels[target], words,
                       np.asarray(scores, dtype=np.float64), truncated)


def _explain_part(part: _Part, text: str, method: str, target: int, steps: int, task: str):
    shown, tokens, offsets, ids, truncated = _tokens(part, text)
    shown, words = encoding_words(shown, tokens, offsets)
    if not words:
        return shown, words, np.zeros(0), truncated
    keep = [True] + [False] * (len(ids) - 2) + [True]
    if method == "ig":
        token_scores = [integrated_gradients(m, ids, target, task, steps, keep) for m in part.members]
    else:
        token_scores = [attention_rollout(m, ids) for m in part.members]
    return shown, words, word_scores(np.mean(token_scores, 0)[1:-1], words), truncated


# --------------------------------------------------------------------------- inputs


def read_texts(text_or_file: str, data) -> list[str]:
    """The texts of TEXT_OR_FILE: an existing file's rows (one text a line, or a data file's text column
    read with the run's data options `data`), stdin's lines for `-`, else the argument itself."""
    path = Path(text_or_file)
    if text_or_file != "-" and not path.is_file():
        if not text_or_file.strip():
            raise DataError("the text to explain is empty")
        return [text_or_file]
    fmt = None if path.suffix.lower() in SUFFIXES else "txt"  # "-": stdin, one text a line
    cfg = dataclasses.replace(data, format=fmt, on_bad_lines="error")
    cfg.format = detect_format(str(path), cfg)
    texts = [r.text for r in iter_records(str(path), cfg, labelled=False, allow_empty=True) if r.text.strip()]
    if not texts:
        raise DataError(f"{'stdin' if text_or_file == '-' else path} holds no texts to explain")
    return texts


# --------------------------------------------------------------------------- attention dump


def attention_records(run, texts: list[str]) -> list[dict]:
    """Per text: its tokens (with [CLS]/[SEP]) and the attention of every member, (members, layers,
    heads, T, T)."""
    if run.groups:
        raise ConfigError("this ensemble's members use several tokenizers, so their attention matrices have no "
                          "common tokens; dump a member's run directory instead")
    part = _parts(run)[0]
    records = []
    for text in texts:
        _, tokens, _, ids, _ = _tokens(part, text)
        maps = np.stack([attention_maps(m, ids) for m in part.members])
        records.append({"text": text, "tokens": [CLS, *tokens, SEP], "attention": maps})
    return records


def write_attention(path: Path | str, records: list[dict]) -> None:
    """.npz (np.savez: `text_i`, `tokens_i`, `attention_i` per text) or .json (a list of {text, tokens,
    attention}), written atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = {}
        for i, r in enumerate(records):
            arrays[f"text_{i}"] = np.array(r["text"])
            arrays[f"tokens_{i}"] = np.array(r["tokens"])
            arrays[f"attention_{i}"] = r["attention"].astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix == ".json":
        rows = [{"text": r["text"], "tokens": r["tokens"], "shape": list(r["attention"].shape),
                 "attention": np.round(r["attention"].astype(np.float64), 6).tolist()} for r in records]
        atomic_write_text(path, json.dumps(rows, ensure_ascii=False) + "\n")
    else:
        raise ConfigError(f"--attention {path}: name the file .npz or .json")


def explain_note(run) -> str:
    """What the scores leave out: the NB-LR model's share of the probabilities, when the run has one."""
    if run.nblr is None:
        return ""
    share = run.nblr[1]
    if share >= 1:
        return ("the NB-LR model makes all of this run's predictions (its share is 1), so these scores explain a "
                "transformer that does not decide the label")
    return f"the probabilities include the NB-LR model's share ({share:g}); the scores explain the transformer part"
