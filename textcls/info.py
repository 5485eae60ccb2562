"""`textcls info`: what a config or run directory builds: parameters, the sharing map, FLOPs per token.

Unique parameters are what the state dict stores (`model.parameters()` de-duplicates shared
tensors). Effective parameters are the unrolled count: a unique block that runs at k depths counts
k times, which is what an unshared model of the same depth would store.

FLOPs per token are forward-pass matmul FLOPs (2 per multiply-add) at sequence length T:
  embedding projection 2·E·H (when E != H)
  + per depth: every Linear in the depth's attention block, FFN block and adapters (2·in·out each;
    for a standard layer 2·3H² + 2·H² + 2·2·H·I) + attention scores and mixing 2·T·H + 2·T·H
  + (pooler + head Linears) / T, since they run once per sequence.
LayerNorm, softmax, activations and embedding look-ups are left out; training is about 3x forward.
Sharing changes none of this: a shared layer costs the same FLOPs at every depth it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import nn

from textcls.config import Config, load_config
from textcls.data.labels import load_labels, read_label_names
from textcls.data.tokenizer import load_tokenizer
from textcls.model import TextClassifier
from textcls.model.trainable import is_adapter_param
from textcls.run.bases import with_base
from textcls.run.info import load_run_config, read_run_info
from textcls.run.layout import LABELS, TOKENIZER
from textcls.run.members import is_ensemble_dir, read_ensemble

try:  # train.trainable freezing, when this textcls has it
    from textcls.model.trainable import apply_trainable
except ImportError:  # pragma: no cover
    apply_trainable = None

GROUPS = ("embeddings", "encoder", "pooler + head", "other")


def _group(name: str) -> str:
    if name.startswith("embeddings."):
        return "embeddings"
    if name.startswith("encoder."):
        return "encoder"
    if name.startswith(("pooler.", "head.")):
        return "pooler + head"
    return "other"  # e.g. a side network


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class ParameterCounts:
    unique: dict[str, int]  # per group
    effective: dict[str, int]  # per group, shared blocks counted at every depth they run
    trainable: int
    adapters: int

    @property
    def unique_total(self) -> int:
        return sum(self.unique.values())

    @property
    def effective_total(self) -> int:
        return sum(self.effective.values())


def parameter_counts(model: TextClassifier) -> ParameterCounts:
    unique = dict.fromkeys(GROUPS, 0)
    trainable = adapters = 0
    for name, p in model.named_parameters():
        unique[_group(name)] += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        adapters += p.numel() if is_adapter_param(name) else 0
    enc = model.encoder
    unrolled = sum(_numel(enc.attention[a]) + _numel(enc.ffn[f])
                   for a, f in zip(enc.attention_schedule, enc.ffn_schedule))
    once = _numel(enc.attention) + _numel(enc.ffn)
    effective = dict(unique, encoder=unique["encoder"] + unrolled - once)
    return ParameterCounts(unique, effective, trainable, adapters)


def _linear_flops(module: nn.Module) -> int:
    return sum(2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def flops_per_token(model: TextClassifier, seq_len: int) -> dict[str, float]:
    """Forward matmul FLOPs per token at `seq_len`, split into embeddings / encoder / pooler + head."""
    enc = model.encoder
    h = model.cfg.hidden_size
    encoder = 0
    for depth, (a, f) in enumerate(zip(enc.attention_schedule, enc.ffn_schedule)):
        encoder += _linear_flops(enc.attention[a]) + _linear_flops(enc.ffn[f])
        encoder += _linear_flops(enc.adapters.attention[depth]) + _linear_flops(enc.adapters.ffn[depth])
        encoder += 4 * seq_len * h  # Q K^T scores and probabilities @ V
    head = (_linear_flops(model.pooler) + _linear_flops(model.head)) / seq_len
    return {"embeddings": float(_linear_flops(model.embeddings)), "encoder": float(encoder), "pooler + head": head}


@dataclass
class ModelInfo:
    source: str
    cfg: Config
    vocab_size: int
    num_labels: int
    seq_len: int
    counts: ParameterCounts
    attention_schedule: list[int]
    ffn_schedule: list[int]
    flops: dict[str, float] = field(default_factory=dict)
    note: str = ""  # e.g. what is shown for a pretraining run
    vocab_bound: bool = False  # vocab_size is `tokenizer.vocab_size` (a config to train), the most it can be
    members: int = 1  # an ensemble run's members (ensemble.json, added ones included); a config's train.ensemble
    up_to: int = 0  # a config's train.ensemble_max: members added while its budget holds them

    @property
    def flops_total(self) -> float:
        return sum(self.flops.values())


def _load(path: Path, num_labels: Optional[int]) -> tuple[Config, int, int, bool]:
    """(config, vocab size, label count, whether the vocab size is only an upper bound) of a run directory (its
    tokenizer and labels) or a config file (`num_labels`, else the count in `data.label_names`, else 2)."""
    if path.is_dir():
        cfg = load_run_config(path)
        tok = load_tokenizer(path / TOKENIZER)
        labels = load_labels(path / LABELS) if (path / LABELS).exists() else []
        return cfg, tok.get_vocab_size(), len(labels) or num_labels or 2, False
    cfg = with_base(load_config(path))  # a HuggingFace base gives the architecture
    if num_labels is None:
        num_labels = len(read_label_names(cfg.data.label_names)) if cfg.data.label_names else 2
    # The vocabulary training will use: init_from's tokenizer, tokenizer.path, else tokenizer.vocab_size.
    tok_file = Path(cfg.model.init_from) / TOKENIZER if cfg.model.init_from else cfg.tokenizer.path
    vocab = load_tokenizer(tok_file).get_vocab_size() if tok_file else cfg.tokenizer.vocab_size
    return cfg, vocab, num_labels, not tok_file


def model_info(path: Path | str, num_labels: Optional[int] = None, seq_len: Optional[int] = None) -> ModelInfo:
    """Build the model a config or run directory describes (random weights) and measure it."""
    path = Path(path)
    cfg, vocab, labels, vocab_bound = _load(path, num_labels)
    with torch.device("meta"):  # counted, not allocated: a config too large for memory is measured too
        model = TextClassifier(cfg.model, vocab, labels, 0)
    if apply_trainable is not None:
        apply_trainable(model, cfg.train.trainable)
    t = seq_len or cfg.data.max_length
    note = ""
    if path.is_dir() and read_run_info(path).get("kind") == "pretrain":
        note = (f"a pretraining run: its encoder with the classifier head fine-tuning adds ({labels} labels "
                "assumed, --num-labels to change); the masked-LM head it trained is not counted")
    run_members = path.is_dir() and is_ensemble_dir(path)
    members = len(read_ensemble(path)["members"]) if run_members else cfg.train.ensemble
    up_to = 0 if path.is_dir() else cfg.train.ensemble_max
    return ModelInfo(str(path), cfg, vocab, labels, t, parameter_counts(model),
                     list(model.encoder.attention_schedule), list(model.encoder.ffn_schedule),
                     flops_per_token(model, t), note, vocab_bound, members, up_to)


def _fmt(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def print_info(info: ModelInfo, console: Console) -> None:
    m = info.cfg.model
    s = m.sharing
    vocab = f"up to {info.vocab_size}" if info.vocab_bound else str(info.vocab_size)
    console.print(f"[bold]{escape(info.source)}[/]: vocab {vocab}, {info.num_labels} labels, "
                  f"H={m.hidden_size} E={m.embedding_size or m.hidden_size} I={m.intermediate_size} "
                  f"L={m.num_layers} heads={m.num_heads}; sharing {s.strategy} (share {s.share})", highlight=False)
    if info.vocab_bound:
        console.print(f"vocab: `tokenizer.vocab_size` {info.vocab_size} is an upper bound; the tokenizer trainer may "
                      "learn fewer tokens on small data, and the embedding parameters are then fewer than counted "
                      "here (`textcls info RUN_DIR` counts a trained run's)", highlight=False, markup=False)
    if info.note:
        console.print(info.note, highlight=False, markup=False)
    c = info.counts
    table = Table(title="parameters")
    for col in ("part", "unique", "effective (unrolled)", "FLOPs/token"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for g in GROUPS:
        if c.unique[g] or g != "other":
            table.add_row(g, f"{c.unique[g]:,}", f"{c.effective[g]:,}", _fmt(info.flops.get(g, 0.0)))
    table.add_row("[bold]total[/]", f"[bold]{c.unique_total:,}[/]", f"[bold]{c.effective_total:,}[/]",
                  f"[bold]{_fmt(info.flops_total)}[/]")
    console.print(table)
    console.print(f"trainable {c.trainable:,} of {c.unique_total:,} (train.trainable: {info.cfg.train.trainable}); "
                  f"adapters {c.adapters:,}; FLOPs/token = forward matmul FLOPs at T={info.seq_len} "
                  f"(x3 for training)", highlight=False)
    n, t = info.members, info.cfg.train
    more = f" (more while the budget holds them, up to {info.up_to})" if info.up_to > n else ""
    planned, ensemble = f"{n} member{'s' if n > 1 else ''}{more}", n > 1 or bool(more)
    if ensemble and t.ensemble_variants:
        console.print(f"ensemble: {planned}; train.ensemble_variants change the members' settings "
                      f"(the figures above are for the config as written)", highlight=False)
    elif ensemble:
        console.print(f"ensemble: {planned} like this one: {n * c.unique_total:,} parameters and "
                      f"{_fmt(n * info.flops_total)} FLOPs/token in all at predict time", highlight=False)
    n_attn, n_ffn = len(set(info.attention_schedule)), len(set(info.ffn_schedule))
    layers = Table(title=f"depth -> unique layer ({n_attn} attention and {n_ffn} FFN blocks for "
                         f"{len(info.attention_schedule)} depths)")
    for col in ("depth", "attention block", "FFN block"):
        layers.add_column(col, justify="right")
    for d, (a, f) in enumerate(zip(info.attention_schedule, info.ffn_schedule)):
        layers.add_row(str(d), f"encoder.attention.{a}", f"encoder.ffn.{f}")
    console.print(layers)
