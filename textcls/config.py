"""YAML config -> typed dataclasses, strictly.

Each YAML section has one dataclass whose field names are the user-facing keys. `load_config`
reads a file with `yaml.safe_load`, applies dotted `--set` overrides, type-checks every value,
runs the cross-field checks and raises a single `ConfigError` that lists every problem found.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from textcls.errors import ConfigError

# The demo config (`textcls train` with no CONFIG): a source checkout's, else the copy an installed wheel
# puts under PREFIX/share/textcls with its data (pyproject's data-files), at the same relative paths.
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def demo_config() -> Optional[Path]:
    for path in (DEMO_CONFIG, Path(sys.prefix) / "share" / "textcls" / "configs" / "default.yaml"):
        if path.is_file():
            return path
    return None

# Keys holding file paths: relative ones in a config file are resolved against the file's folder,
# relative ones given with `--set` against the current directory.
PATH_KEYS = ("data.train", "data.valid", "data.label_names", "tokenizer.path", "model.init_from",
             "model.embeddings.pretrained", "pretrain.files")


@dataclass
class DataConfig:
    train: Optional[str] = None
    valid: Optional[str] = None
    valid_fraction: Optional[float] = None
    split_seed: Optional[int] = None  # valid_fraction split; None = train.seed
    format: Optional[Literal["csv", "tsv", "jsonl", "fasttext", "txt"]] = None
    header: Optional[bool] = None  # None: csv/tsv have a header unless columns are given as indexes
    delimiter: Optional[str] = None
    text_columns: list[Union[str, int]] = field(default_factory=lambda: ["text"])
    label_column: Union[str, int] = "label"
    label_names: Optional[str] = None  # file with one label name per line
    label_index_base: int = 0  # with label_names: the label value that names line 1
    task: Literal["single", "multilabel"] = "single"
    label_delimiter: str = ","  # multilabel: separator inside a label column
    max_length: int = 128
    truncation: Literal["head", "tail", "head+tail"] = "head"
    head_tokens: int = 128  # head+tail: tokens kept from the start; the rest come from the end
    encoding: str = "utf-8"
    on_bad_lines: Literal["error", "skip"] = "error"
    cache_dir: Optional[str] = None  # tokenized Arrow cache; default ~/.cache/textcls or $TEXTCLS_CACHE


@dataclass
class TokenizerConfig:
    type: Literal["wordpiece", "bpe", "unigram", "word", "char"] = "wordpiece"
    vocab_size: int = 8000
    min_frequency: int = 2
    lowercase: bool = True
    nfkc: bool = True
    strip_accents: bool = False
    split_cjk: bool = True  # each CJK character its own piece; false: the tokenizer learns multi-character words
    path: Optional[str] = None  # load an existing tokenizer.json instead of training one


@dataclass
class SharingConfig:
    strategy: Literal["none", "all", "sequence", "cycle"] = "none"
    group_size: Optional[int] = None  # sequence: depth i runs unique layer i // group_size
    num_unique: Optional[int] = None  # cycle: depth i runs unique layer i % num_unique
    share: Literal["all", "attention", "ffn"] = "all"


@dataclass
class AdapterConfig:
    enabled: bool = False
    style: Literal["houlsby", "pfeiffer", "side"] = "houlsby"
    size: Optional[int] = None
    reduction_factor: Optional[float] = None
    activation: Literal["gelu", "gelu_tanh", "relu", "silu", "tanh"] = "gelu"
    init_scale: float = 1.0e-3
    layers: Optional[list[int]] = None  # depths that get adapters; None = all
    shared: bool = False
    side_layers: int = 2  # side: transformer layers in the side network
    side_depths: Optional[list[int]] = None  # side: depths whose hidden states feed it


@dataclass
class EmbeddingsConfig:
    pretrained: Optional[str] = None  # GloVe-format word vectors
    freeze: bool = False
    ngram_orders: list[int] = field(default_factory=list)  # e.g. [2, 3]: hashed n-gram embeddings added
    ngram_buckets: int = 100000  # rows of the hashed n-gram table (fastText's bucket trick)


@dataclass
class ModelConfig:
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    embedding_size: Optional[int] = None  # None = hidden_size; otherwise factorized
    max_positions: int = 512
    position: Literal["learned", "sinusoidal", "none"] = "learned"
    scale_embeddings: bool = False
    type_vocab_size: int = 2
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    norm: Literal["post", "pre"] = "post"
    layer_norm_eps: float = 1.0e-12
    dropout: float = 0.1
    attention_dropout: Optional[float] = None  # None = dropout
    classifier_dropout: Optional[float] = None  # None = dropout
    causal: bool = False
    sharing: SharingConfig = field(default_factory=SharingConfig)
    pooling: Literal["cls", "cls_tanh", "mean", "max", "last"] = "cls"
    pool_layers: int = 1
    initializer_range: float = 0.02
    init_from: Optional[str] = None  # a run directory whose encoder weights start training
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)


@dataclass
class TrainConfig:
    epochs: float = 3
    max_steps: Optional[int] = None
    batch_size: int = 32
    batch_tokens: Optional[int] = None  # token budget per batch instead of a fixed count
    pad_to_multiple_of: Optional[int] = None
    eval_batch_size: int = 128
    grad_accum: int = 1
    lr: float = 5.0e-4
    schedule: Literal["constant", "linear", "polynomial", "cosine"] = "linear"
    warmup: float = 0.1  # ratio of all steps when < 1, a step count when >= 1
    warmup_lr: float = 0.0  # cosine: the rate warmup starts from
    hold_steps: int = 0  # cosine: steps held at the base rate after warmup
    min_lr: float = 0.0  # cosine: the floor
    power: float = 1.0  # polynomial
    end_lr: float = 0.0  # polynomial
    weight_decay: float = 0.01
    adapter_weight_decay: Optional[float] = None  # None = weight_decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-8
    max_grad_norm: Optional[float] = 1.0
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: Optional[int] = None
    eval_every: Optional[int] = None  # steps; None = only at epoch ends
    eval_each_epoch: bool = True
    metric: str = "accuracy"  # accuracy | macro_f1 | weighted_f1 | loss | micro_f1
    patience: Optional[int] = None  # evaluations without improvement before stopping
    save_total_limit: Optional[int] = None  # keep step checkpoints checkpoint-{step}/: the N newest + the best
    class_weights: Optional[Union[str, list[float]]] = None  # "auto" or one weight per label
    label_smoothing: float = 0.0
    token_dropout: float = 0.0  # word dropout: each training token becomes [UNK] with this probability
    ema_decay: Optional[float] = None  # evaluate and save an exponential moving average of the weights
    threshold: Union[float, list[float]] = 0.5  # multilabel decision threshold(s)
    trainable: Literal["all", "adapters", "head"] = "all"
    ensemble: int = 1  # > 1: train that many members (seeds seed, seed+1, ...) and average their probabilities
    ensemble_workers: int = 1  # members trained at once, each in its own process with num_threads / workers
    # Per-member overrides, cycled over the members: member k applies ensemble_variants[k % len], e.g.
    # [{}, {tokenizer.type: bpe}] alternates the config as written with a BPE-tokenized member.
    ensemble_variants: list[dict[str, Any]] = field(default_factory=list)
    compile: bool = False
    log_every: int = 50
    checkpoint_every: Optional[int] = None  # steps between resumable `last/` saves; None = each eval


@dataclass
class OutputConfig:
    dir: str = "runs/default"
    overwrite: bool = False
    tensorboard: bool = False


@dataclass
class PretrainConfig:
    """`textcls pretrain`: masked-LM (+ optional sentence-order) pretraining on unlabelled text."""

    files: list[str] = field(default_factory=list)  # plain text or labelled files' text columns; [] = data.train
    block_size: Optional[int] = None  # tokens per packed block with [CLS]/[SEP]; None = data.max_length
    valid_fraction: float = 0.05  # held-out blocks for MLM loss and masked-token accuracy
    mlm_probability: float = 0.15  # share of tokens chosen for prediction
    mask_fraction: float = 0.8  # of the chosen tokens: replaced by [MASK]
    random_fraction: float = 0.1  # ... replaced by a random token; the rest stay unchanged
    whole_word_mask: bool = False  # choose whole words: all their sub-word pieces together
    sop: bool = False  # ALBERT sentence-order prediction on documents with several sentences
    sop_weight: float = 1.0  # weight of the SOP loss next to the MLM loss


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    tune: Optional[dict[str, Any]] = None  # search space for `textcls tune`
    source: Optional[str] = field(default=None, metadata={"internal": True})


# --------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 60, 60, 3


def _short(value: Any) -> str:
    """A bounded repr for messages: a value from YAML may be huge, deeply nested or self-referencing."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__}>"


def _convert(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check `value` against the annotation `tp`; return the converted value or record a problem."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"`{key}` must be a mapping of keys, got {_short(value)}")
            return tp()
        return _build(tp, value, key, problems)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(value, arg, key, trial)
            if not trial:
                return out
        problems.append(f"`{key}` must be {_type_name(tp)}, got {_short(value)}")
        return None
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        hint = difflib.get_close_matches(_short(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(f"`{key}` must be one of {_type_name(tp)}, got {_short(value)}{extra}")
        return choices[0]
    if origin is list:
        if not isinstance(value, list):
            value = [value]  # a single value where a list is expected is a list of one
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"`{key}` must be a mapping, got {_short(value)}")
            return None
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) < 1e308 else math.inf
        elif isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            problems.append(f"`{key}` must be a finite number, got {_short(value)}")
            return None
    elif tp is str:
        if isinstance(value, str):
            return value
    problems.append(f"`{key}` must be {_type_name(tp)}, got {_short(value)}")
    return None


def _build(cls: type, raw: dict, prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            where = f"section `{prefix}`" if prefix else "the top level"
            extra = f"; did you mean `{(prefix + '.') if prefix else ''}{hint[0]}`?" if hint else ""
            problems.append(
                f"unknown key `{dotted}` in {where}{extra} (valid keys: {', '.join(fields)})"
            )
            continue
        kwargs[key] = _convert(value, hints[key], dotted, problems)
    return cls(**kwargs)


# --------------------------------------------------------------------------- overrides


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `key.sub=value` assignment to the raw YAML mapping; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(
            f"override {assignment!r} is not of the form key=value; write for example "
            "`--set train.lr=3e-4`"
        )
    dotted, text = assignment.split("=", 1)
    dotted = dotted.strip()
    if not dotted or any(not p for p in dotted.split(".")):
        raise ConfigError(f"override {assignment!r} names no key; write for example `--set train.lr=3e-4`")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError):
        value = text
    if isinstance(value, dict) and not text.strip().startswith("{"):
        value = text  # `--set data.delimiter=::` means the text, not the YAML mapping {":": null}
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


# --------------------------------------------------------------------------- validation


def _validate(cfg: Config, problems: list[str]) -> None:
    m, t, d = cfg.model, cfg.train, cfg.data
    positive = {
        "model.hidden_size": m.hidden_size, "model.num_layers": m.num_layers,
        "model.num_heads": m.num_heads, "model.intermediate_size": m.intermediate_size,
        "model.max_positions": m.max_positions, "model.pool_layers": m.pool_layers,
        "data.max_length": d.max_length, "train.batch_size": t.batch_size,
        "train.grad_accum": t.grad_accum, "train.eval_batch_size": t.eval_batch_size,
        "tokenizer.vocab_size": cfg.tokenizer.vocab_size, "train.log_every": t.log_every,
    }
    for key, value in positive.items():
        if isinstance(value, int) and value < 1:
            problems.append(f"`{key}` must be at least 1, got {value}")
    for key, value in {"model.embedding_size": m.embedding_size, "train.max_steps": t.max_steps,
                       "train.batch_tokens": t.batch_tokens, "train.eval_every": t.eval_every,
                       "train.patience": t.patience, "train.save_total_limit": t.save_total_limit,
                       "train.checkpoint_every": t.checkpoint_every, "train.num_threads": t.num_threads,
                       "train.pad_to_multiple_of": t.pad_to_multiple_of,
                       "model.adapters.size": m.adapters.size}.items():
        if value is not None and value < 1:
            problems.append(f"`{key}` must be at least 1 when set, got {value}")
    if m.hidden_size > 0 and m.num_heads > 0 and m.hidden_size % m.num_heads:
        problems.append(
            f"`model.hidden_size` ({m.hidden_size}) must be divisible by `model.num_heads` "
            f"({m.num_heads}); pick e.g. num_heads {max(1, m.hidden_size // 64)}"
        )
    for key, value in {"model.dropout": m.dropout, "model.attention_dropout": m.attention_dropout,
                       "model.classifier_dropout": m.classifier_dropout,
                       "train.label_smoothing": t.label_smoothing}.items():
        if value is not None and not 0.0 <= value < 1.0:
            problems.append(f"`{key}` must be in [0, 1), got {value}")
    if t.lr is not None and t.lr <= 0:
        problems.append(f"`train.lr` must be positive, got {t.lr}")
    if t.epochs is not None and t.epochs <= 0 and t.max_steps is None:
        problems.append(f"`train.epochs` must be positive, got {t.epochs}")
    if t.warmup is not None and t.warmup < 0:
        problems.append(f"`train.warmup` must be >= 0 (a ratio below 1 or a step count), got {t.warmup}")
    if t.weight_decay < 0:
        problems.append(f"`train.weight_decay` must be >= 0, got {t.weight_decay}")
    for key, value in {"train.seed": t.seed, "data.split_seed": d.split_seed, "data.head_tokens": d.head_tokens,
                       "tokenizer.min_frequency": cfg.tokenizer.min_frequency,
                       "model.type_vocab_size": m.type_vocab_size}.items():  # 0 type vocab: no segment embeddings
        if value is not None and value < 0:
            problems.append(f"`{key}` must be >= 0, got {value}")
    for key, value in {"train.eps": t.eps, "model.layer_norm_eps": m.layer_norm_eps,
                       "model.initializer_range": m.initializer_range}.items():
        if value <= 0:
            problems.append(f"`{key}` must be positive, got {value}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        problems.append(f"`train.betas` must be two numbers in [0, 1), got {t.betas}")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        problems.append(f"`train.max_grad_norm` must be positive or null, got {t.max_grad_norm}")
    if isinstance(t.class_weights, str) and t.class_weights != "auto":
        problems.append(f"`train.class_weights` must be 'auto' or a list of numbers, got {_short(t.class_weights)}")
    if d.valid_fraction is not None and not 0 < d.valid_fraction < 1:
        problems.append(f"`data.valid_fraction` must be between 0 and 1, got {d.valid_fraction}")
    if d.valid_fraction is not None and d.valid:
        problems.append("`data.valid` and `data.valid_fraction` are both set; validate on the file or on a held-out "
                        "fraction of the training rows, not both (remove one)")
    negative = [c for c in [*d.text_columns, d.label_column] if isinstance(c, int) and c < 0]
    if negative:
        problems.append(f"`data.text_columns` / `data.label_column` indexes count from 0, got {negative}")
    if d.delimiter is not None and len(d.delimiter) != 1:
        problems.append(f"`data.delimiter` must be one character, got {d.delimiter!r}")
    if not d.label_delimiter:
        problems.append("`data.label_delimiter` must not be empty")
    if not 1 <= len(d.text_columns) <= 2:
        problems.append(f"`data.text_columns` must name one or two columns, got {d.text_columns}")
    if len(d.text_columns) == 2 and 1 <= d.max_length < 5:
        problems.append(f"`data.max_length` must leave room for [CLS] a [SEP] b [SEP] with a text pair, got "
                        f"{d.max_length}")
    if len(d.text_columns) == 2 and d.text_columns[0] == d.text_columns[1]:
        problems.append(f"`data.text_columns` names {d.text_columns[0]!r} twice; a pair needs two columns")
    if d.label_column in d.text_columns:
        problems.append(f"`data.label_column` ({d.label_column!r}) is also in `data.text_columns`; the model would "
                        "read the answer from its input. Name the text and the label columns apart")
    if d.max_length > m.max_positions and m.position in ("learned", "sinusoidal"):
        problems.append(
            f"`data.max_length` ({d.max_length}) asks for more positions than the model has "
            f"(`model.max_positions` = {m.max_positions}); lower max_length or raise max_positions"
        )
    if d.max_length < 3 and d.max_length >= 1:
        problems.append(f"`data.max_length` must leave room for [CLS] and [SEP], got {d.max_length}")
    s = m.sharing
    if s.strategy == "sequence":
        if s.group_size is None:
            problems.append("`model.sharing.group_size` is required with strategy `sequence`")
        elif not 1 <= s.group_size <= m.num_layers:
            problems.append(
                f"`model.sharing.group_size` must be between 1 and num_layers ({m.num_layers}), got {s.group_size}"
            )
    if s.strategy == "cycle":
        if s.num_unique is None:
            problems.append("`model.sharing.num_unique` is required with strategy `cycle`")
        elif not 1 <= s.num_unique <= m.num_layers:
            problems.append(
                f"`model.sharing.num_unique` must be between 1 and num_layers ({m.num_layers}), got {s.num_unique}"
            )
    e = m.embeddings
    if any(n < 2 or n > 8 for n in e.ngram_orders) or len(set(e.ngram_orders)) != len(e.ngram_orders):
        problems.append(f"`model.embeddings.ngram_orders` must list distinct n-gram sizes from 2 to 8, got {e.ngram_orders}")
    if e.ngram_orders and e.ngram_buckets < 1:
        problems.append(f"`model.embeddings.ngram_buckets` must be at least 1, got {e.ngram_buckets}")
    if m.pool_layers > m.num_layers:
        problems.append(f"`model.pool_layers` ({m.pool_layers}) exceeds `model.num_layers` ({m.num_layers})")
    if m.adapters.layers is not None:
        bad = [i for i in m.adapters.layers if not 0 <= i < m.num_layers]
        if bad:
            problems.append(f"`model.adapters.layers` has depths outside 0..{m.num_layers - 1}: {bad}")
    _validate_train_extras(t, problems)
    if not 0.0 <= t.token_dropout < 1.0:
        problems.append(f"`train.token_dropout` must be in [0, 1), got {t.token_dropout}")
    if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
        problems.append(f"`train.ema_decay` must be in (0, 1), e.g. 0.999, got {t.ema_decay}")
    if t.ensemble < 1:
        problems.append(f"`train.ensemble` must be at least 1 (the number of members), got {t.ensemble}")
    _validate_variants(cfg, problems)
    if t.ensemble_workers < 1:
        problems.append(f"`train.ensemble_workers` must be at least 1, got {t.ensemble_workers}")
    if t.trainable == "adapters" and not m.adapters.enabled:
        problems.append("`train.trainable: adapters` needs `model.adapters.enabled: true`")
    _validate_adapters(m, problems)
    _validate_pretrain(cfg, problems)


VARIANT_SECTIONS = ("tokenizer.", "model.", "train.")
VARIANT_FIXED = ("train.ensemble", "train.ensemble_workers", "train.ensemble_variants", "train.device",
                 "train.num_threads", "train.metric", "train.seed")


def member_raw(cfg: Config, variant: dict[str, Any]) -> dict:
    """The raw config of an ensemble member with `variant` (dotted key -> value) applied."""
    raw = config_to_dict(cfg)
    raw["train"].update(ensemble=1, ensemble_variants=[])
    for key, value in variant.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:  # a non-mapping on the way is replaced, so the type check reports the key
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return raw


def _validate_variants(cfg: Config, problems: list[str]) -> None:
    """Each variant names allowed keys, and the member config it gives is valid."""
    for i, variant in enumerate(cfg.train.ensemble_variants):
        where = f"`train.ensemble_variants[{i}]`"
        if not isinstance(variant, dict):
            continue  # reported by the type check
        bad = [k for k in variant if not isinstance(k, str) or not k.startswith(VARIANT_SECTIONS)
               or k in VARIANT_FIXED or k.startswith(tuple(f + "." for f in VARIANT_FIXED))]
        if bad:
            problems.append(f"{where} may set tokenizer.*, model.* and train.* keys other than the ensemble's own, "
                            f"device, num_threads, metric and seed; not {', '.join(map(str, bad))}")
            continue
        trial: list[str] = []
        member = _build(Config, member_raw(cfg, variant), "", trial)
        if not trial:
            try:
                _validate(member, trial)
            except (TypeError, AttributeError):
                pass
        problems.extend(f"{where}: {p}" for p in trial)


def _validate_adapters(m: ModelConfig, problems: list[str]) -> None:
    a = m.adapters
    if a.reduction_factor is not None and a.reduction_factor <= 0:
        problems.append(f"`model.adapters.reduction_factor` must be positive, got {a.reduction_factor}")
    if a.init_scale <= 0:
        problems.append(f"`model.adapters.init_scale` must be positive (e.g. 1e-3), got {a.init_scale}")
    if a.side_layers < 1:
        problems.append(f"`model.adapters.side_layers` must be at least 1, got {a.side_layers}")
    if a.side_depths is not None:
        bad = [i for i in a.side_depths if not 0 <= i < m.num_layers]
        if bad or not a.side_depths:
            problems.append(
                f"`model.adapters.side_depths` must list depths in 0..{m.num_layers - 1}, got {a.side_depths}")
    if a.layers is not None and not a.layers and a.enabled and a.style != "side":
        problems.append("`model.adapters.layers` is empty: no depth would get an adapter; omit it for all depths")


def _validate_pretrain(cfg: Config, problems: list[str]) -> None:
    p, m = cfg.pretrain, cfg.model
    if not 0 < p.mlm_probability < 1:
        problems.append(f"`pretrain.mlm_probability` must be between 0 and 1, got {p.mlm_probability}")
    if not 0 <= p.valid_fraction < 1:
        problems.append(f"`pretrain.valid_fraction` must be in [0, 1), got {p.valid_fraction}")
    if p.mask_fraction < 0 or p.random_fraction < 0 or p.mask_fraction + p.random_fraction > 1:
        problems.append(
            f"`pretrain.mask_fraction` ({p.mask_fraction}) and `pretrain.random_fraction` ({p.random_fraction}) "
            "must be >= 0 and sum to at most 1 (the rest of the chosen tokens stay unchanged)"
        )
    if p.sop_weight < 0:
        problems.append(f"`pretrain.sop_weight` must be >= 0, got {p.sop_weight}")
    if p.block_size is not None:
        if p.block_size < 8:
            problems.append(f"`pretrain.block_size` must be at least 8, got {p.block_size}")
        elif p.block_size > m.max_positions and m.position == "learned":
            problems.append(
                f"`pretrain.block_size` ({p.block_size}) asks for more positions than the model has "
                f"(`model.max_positions` = {m.max_positions}); lower block_size or raise max_positions"
            )


def _validate_train_extras(t: TrainConfig, problems: list[str]) -> None:
    """Selection metric, decision thresholds and schedule shape."""
    metrics = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")  # train/metrics.py HIGHER_IS_BETTER
    if t.metric not in metrics:
        hint = difflib.get_close_matches(t.metric, metrics, n=1)
        problems.append(f"`train.metric` must be one of {', '.join(metrics)}, got {t.metric!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    thresholds = t.threshold if isinstance(t.threshold, list) else [t.threshold]
    if not all(0.0 < x < 1.0 for x in thresholds):
        problems.append(f"`train.threshold` must be in (0, 1) (one number or one per label), got {t.threshold}")
    if t.power <= 0:
        problems.append(f"`train.power` must be positive, got {t.power}")
    for key in ("warmup_lr", "min_lr", "end_lr", "hold_steps"):
        if getattr(t, key) < 0:
            problems.append(f"`train.{key}` must be >= 0, got {getattr(t, key)}")
        elif key != "hold_steps" and t.lr > 0 and getattr(t, key) > t.lr:
            problems.append(f"`train.{key}` ({getattr(t, key):g}) is above `train.lr` ({t.lr:g}); the schedule moves "
                            "between them and lr is its peak, so lower it")


# --------------------------------------------------------------------------- public API


def config_from_dict(raw: Any, source: str = "<config>", overrides: tuple[str, ...] = (),
                     base_dir: Optional[Path] = None) -> Config:
    """Build and validate a Config from a raw mapping (e.g. parsed YAML). Raises ConfigError.

    Relative paths in `raw` are resolved against `base_dir` (the config file's folder);
    relative paths in `overrides` against the current directory.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping of sections, got {type(raw).__name__}")
    raw = _deep_copy(raw, source)
    if base_dir is not None:
        _resolve_paths(raw, base_dir)
    for assignment in overrides:
        apply_override(raw, assignment)
    _resolve_paths(raw, Path.cwd())
    problems: list[str] = []
    _pooling_mapping(raw, problems)
    cfg = _build(Config, raw, "", problems)
    given = {a.split("=", 1)[0].strip() for a in overrides}  # name the command line for its unknown keys
    from_set = lambda p: p.startswith("unknown key `") and p.split("`")[1] in given  # noqa: E731
    problems = [p.replace("` in ", "` (from --set) in ", 1) if from_set(p) else p for p in problems]
    try:
        _validate(cfg, problems)
    except (TypeError, AttributeError):
        pass  # a value of the wrong type was already reported; cross-field checks need the right types
    if problems:
        listing = "; ".join(problems)
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the config: {listing}.")
    cfg.source = source
    return cfg


def _pooling_mapping(raw: dict, problems: list[str]) -> None:
    """`model.pooling: {type: mean, layers: k}` is the same as `pooling: mean` + `pool_layers: k`."""
    model = raw.get("model")
    pooling = model.get("pooling") if isinstance(model, dict) else None
    if not isinstance(pooling, dict):
        return
    extra = sorted(set(pooling) - {"type", "layers"})
    if extra or "type" not in pooling:
        problems.append(f"`model.pooling` as a mapping takes `type` (cls, cls_tanh, mean, max, last) and optionally "
                        f"`layers`, got keys {', '.join(map(str, pooling))}")
        model.pop("pooling")
        return
    if "layers" in pooling and "pool_layers" in model:
        problems.append("`model.pooling.layers` and `model.pool_layers` are both set; keep one")
    model["pooling"] = pooling["type"]
    if "layers" in pooling:
        model["pool_layers"] = pooling["layers"]


def _resolve_paths(raw: dict, base: Path) -> None:
    for dotted in PATH_KEYS:
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            continue
        value = node[last]
        if isinstance(value, str) and value and value != "-":
            try:
                path = Path(value).expanduser()
            except RuntimeError:  # ~user that does not exist
                raise ConfigError(f"`{dotted}`: cannot expand {value!r} (no such user's home folder)") from None
            node[last] = str(path if path.is_absolute() else base / path)
        elif isinstance(value, list):
            node[last] = [str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in value]


MAX_DEPTH, MAX_NODES = 64, 100_000


def _deep_copy(raw: Any, source: str = "<config>") -> Any:
    """Copy the YAML tree; a self-referencing or alias-bomb document is refused, not expanded."""
    budget = [MAX_NODES]

    def copy(node: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise ConfigError(
                f"{source}: the config is nested too deeply or is too large (more than {MAX_DEPTH} levels or "
                f"{MAX_NODES:,} values; self-referencing YAML aliases?)"
            )
        if isinstance(node, dict):
            return {k: copy(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [copy(v, depth + 1) for v in node]
        return node
    return copy(raw, 0)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key repeated in one mapping (two `train:` sections) is an error
    instead of the later one silently replacing the earlier."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice (first at line {seen[key]}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Read a YAML file safely; a syntax error names the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; pass a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); it must be UTF-8 YAML") from None
    loader = None
    try:
        loader = _UniqueKeyLoader(text)  # safe_load's SafeLoader, plus the repeated-key check
        return loader.get_single_data()
    except (ValueError, RecursionError) as exc:  # e.g. a date like 2024-02-30, an int of 5000 digits
        raise ConfigError(f"config file {path} has a value YAML cannot read: {str(exc)[:120]}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_config(path: Optional[Path | str] = None, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Load a YAML config (the demo config of a source checkout when `path` is None), apply overrides."""
    if path is None:
        path = demo_config()
        if path is None:
            raise ConfigError(
                "no CONFIG was given and the demo config (configs/default.yaml) is not part of this "
                "installation; pass a config file, e.g. `textcls train my.yaml`"
            )
    path = Path(path)
    raw = read_yaml(path)
    return config_from_dict(raw, source=str(path), overrides=tuple(overrides), base_dir=path.resolve().parent)


def config_to_dict(cfg: Config) -> dict:
    out = dataclasses.asdict(cfg)
    out.pop("source", None)
    if out.get("tune") is None:
        out.pop("tune", None)
    return out


def save_config(cfg: Config, path: Path) -> None:
    from textcls.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))
