"""The config's schema: one dataclass per YAML section, and the strict builder from raw YAML.

The field names are the user-facing keys. `build_dataclass` type-checks a raw mapping against a
dataclass and collects every problem; `textcls.config.checks.validate` adds the cross-field checks and
`textcls.config.config_from_dict` ties them together. This module imports nothing from textcls.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union


@dataclass
class DataConfig:
    train: Optional[str] = None
    valid: Optional[str] = None
    valid_fraction: Optional[float] = None
    split_seed: Optional[int] = None  # valid_fraction split; None = train.seed
    valid_fold: int = 0  # valid_fraction split: which of the 1 / valid_fraction disjoint folds is held out
    # valid_fraction split: hold out whole texts (rows inside no other row) and leave the rows inside them out of
    # training; valid_fraction is then a share of the whole texts (textcls/data/overlap.py)
    valid_whole_texts: bool = False
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


def fold_count(valid_fraction: float) -> int:
    """How many disjoint `data.valid_fold`s a `data.valid_fraction` split has: 1 / fraction, rounded up (the last
    one smaller)."""
    return math.ceil(1 / valid_fraction - 1e-9)


@dataclass
class TokenizerConfig:
    type: Literal["wordpiece", "bpe", "unigram", "word", "char"] = "wordpiece"
    vocab_size: int = 8000
    min_frequency: int = 2
    lowercase: bool = True
    nfkc: bool = True
    strip_accents: bool = False
    split_cjk: bool = True  # each CJK character its own piece; false: the tokenizer learns multi-character words
    segment: Literal["none", "jieba"] = "none"  # jieba: cut Chinese into dictionary words first (data/segment.py)
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
    # The word table at low rank: (V, word_rank) vectors through a learned (word_rank -> E) projection, for
    # fewer parameters where the vocabulary is large (a distilled student of the teacher's layers).
    word_rank: Optional[int] = None


@dataclass
class ModelConfig:
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    embedding_size: Optional[int] = None  # None = hidden_size; otherwise factorized
    max_positions: int = 512
    position: Literal["learned", "sinusoidal", "none"] = "learned"
    position_offset: int = 0  # position t reads table row offset + t (2 for RoBERTa / XLM-R imports)
    scale_embeddings: bool = False
    type_vocab_size: int = 2
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    norm: Literal["post", "pre"] = "post"
    layer_norm_eps: float = 1.0e-12
    dropout: float = 0.1
    attention_dropout: Optional[float] = None  # None = dropout
    classifier_dropout: Optional[float] = None  # None = dropout
    causal: bool = False
    # Run each batch's real tokens packed, without padding rows (textcls/model/packing.py); same weights and results
    padding_free: bool = False
    sharing: SharingConfig = field(default_factory=SharingConfig)
    pooling: Literal["cls", "cls_tanh", "cls_relu", "cls_gelu", "mean", "max", "last"] = "cls"
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
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
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
    adversarial_eps: float = 0.0  # > 0: adversarial training on the embeddings, perturbation of this norm
    ema_decay: Optional[float] = None  # evaluate and save an exponential moving average of the weights
    threshold: Union[float, list[float]] = 0.5  # multilabel decision threshold(s)
    trainable: Literal["all", "adapters", "head"] = "all"
    ensemble: int = 1  # > 1: train that many members (seeds seed, seed+1, ...) and average their probabilities
    ensemble_workers: int = 1  # members trained at once, each in its own process with num_threads / workers
    # Per-member overrides, cycled over the members: member k applies ensemble_variants[k % len], e.g.
    # [{}, {tokenizer.type: bpe}] alternates the config as written with a BPE-tokenized member.
    ensemble_variants: list[dict[str, Any]] = field(default_factory=list)
    # Filling a time budget: once the `ensemble` members are under way, more members (seeds and variants
    # continuing) are started, up to `ensemble_max` in all, while one more is expected to finish within
    # `ensemble_fill_seconds` of the first member's start (expected: as long as the slowest finished member).
    # 0 / None: exactly `ensemble` members. The automatic recipe sets both.
    ensemble_max: int = 0
    ensemble_fill_seconds: Optional[float] = None
    # F >= 2 (cross-fitting): the members hold out F disjoint folds of the `data.valid_fraction` split in turn instead
    # of the same rows (member k: fold (k // variants) % F), so the ensemble learns from every row; its validation
    # report is out of fold (each fold's rows scored by the members that held it out). 0: the same rows.
    ensemble_folds: int = 0
    # true: torch.compile with dynamic shapes. "static": one graph per batch shape, the training batches padded to
    # multiples of `pad_to_multiple_of` (16 when unset), so a few shapes recur; on a GPU the graphs are replayed as
    # CUDA graphs (mode reduce-overhead), which removes the per-kernel launch cost small models are bound by.
    compile: Union[bool, Literal["static"]] = False
    # Seconds of one model's training loop: past them it stops at the next step and evaluates and saves as
    # at the end (each ensemble member counts its own). None = no limit. The automatic recipe sets it.
    time_budget_seconds: Optional[float] = None
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
class NblrConfig:
    """A bag-of-n-grams classifier (NB-weighted logistic regression) trained beside the transformer;
    `weight` > 0 mixes that share of its probabilities into the run's (see textcls/model/nblr.py)."""

    weight: float = 0.0  # 0 = no NB-LR model; 0.3 = 30% of the final probabilities
    max_order: int = 3  # n-grams of 1..max_order units (words; each CJK character is one)
    min_count: int = 2  # n-grams in fewer training texts are left out
    max_features: int = 1000000  # the most frequent n-grams kept
    c: float = 1.0  # inverse L2 strength, as scikit-learn's LogisticRegression(C)
    lowercase: bool = True
    normalize: bool = False  # true: each text's n-gram vector scaled to unit length (short and long texts weigh alike)
    # [lo, hi]: also the character n-grams of lo..hi characters of each word of letters, marked at its ends
    # (`<word>`), so words spelled alike share weight; [] = words only
    chars: list[int] = field(default_factory=list)
    # true: after training, the share is chosen on the validation rows among 0, 0.3, 0.5, 0.7 and 1; `weight`
    # (> 0 to fit the model at all) is the share where there are no validation rows. nblr.json records it.
    choose_weight: bool = False


@dataclass
class DistillConfig:
    """`textcls distill`: a student trained on a teacher run's probabilities (textcls/distill/). The section is
    absent from every other run's config."""

    teacher: Optional[str] = None  # the teacher's run directory (recorded; the command line gives it)
    alpha: float = 0.5  # a labelled row's loss: (1 - alpha) * CE(label) + alpha * T^2 * KL(teacher_T || student_T)
    temperature: float = 2.0  # T: both distributions softened by it
    augment_copies: int = 4  # augmented copies of each training text, learned from the teacher alone
    mask_probability: float = 0.15  # per word of a copy: masked, replaced by a training word, or deleted
    unlabelled: list[str] = field(default_factory=list)  # files whose texts are learned from the teacher alone
    # Start the student's word embedding from the teacher: each token of its vocabulary read alone by the
    # teacher, reduced by PCA to the embedding width (textcls/distill/vectors.py).
    teacher_vectors: bool = True
    # The automatic student (no CONFIG): the teacher's first K layers with its pruned tokenizer
    # (textcls/distill/layers.py). None: a third of the teacher's layers when its one model lends them, else a
    # student from scratch; 0: always from scratch.
    student_layers: Optional[int] = None
    # Also match the teacher's pooled vector (a single-model teacher): MSE between a learned projection of the
    # student's pooled vector and the teacher's, weighted by hidden_weight. The projection is not saved.
    match_hidden: bool = False
    hidden_weight: float = 1.0
    # Also match intermediate layers (Sun et al. 2019's patient distillation): the mean over a text's tokens of the
    # hidden states after student layer i against the teacher's one model's after layer match_layers[i] (0: layer
    # i unmatched), both L2-normalized, through a learned projection where the widths differ; "uniform": student
    # layer i of K against teacher layer round(i * L / K). The teacher's states are computed once and cached.
    match_layers: Optional[Union[str, list[int]]] = None
    layer_weight: float = 1.0  # the weight of that term: the squared distance, averaged over matched layers


@dataclass
class RecipeConfig:
    """What the automatic recipe (`textcls train DATA_FILE`, `textcls init`) saw and chose, as a record:
    training reads none of it. Each choice is {key, value, reason}."""

    name: Optional[Literal["auto"]] = None  # auto: the settings came from textcls/recipe
    budget_seconds: Optional[float] = None
    stats: dict[str, Any] = field(default_factory=dict)
    choices: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    nblr: NblrConfig = field(default_factory=NblrConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    distill: Optional[DistillConfig] = None  # only a distilled student's run has it
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


def short_repr(value: Any) -> str:
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
            problems.append(f"`{key}` must be a mapping of keys, got {short_repr(value)}")
            return tp()
        return build_dataclass(tp, value, key, problems)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        sections = [a for a in args if dataclasses.is_dataclass(a)]
        if sections and isinstance(value, dict):  # an optional section: its own keys are checked, one by one
            return build_dataclass(sections[0], value, key, problems)
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(value, arg, key, trial)
            if not trial:
                return out
        problems.append(f"`{key}` must be {_type_name(tp)}, got {short_repr(value)}")
        return None
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        hint = difflib.get_close_matches(short_repr(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(f"`{key}` must be one of {_type_name(tp)}, got {short_repr(value)}{extra}")
        return choices[0]
    if origin is list:
        if not isinstance(value, list):
            value = [value]  # a single value where a list is expected is a list of one
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"`{key}` must be a mapping, got {short_repr(value)}")
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
            problems.append(f"`{key}` must be a finite number, got {short_repr(value)}")
            return None
    elif tp is str:
        if isinstance(value, str):
            return value
    problems.append(f"`{key}` must be {_type_name(tp)}, got {short_repr(value)}")
    return None


def build_dataclass(cls: type, raw: dict, prefix: str, problems: list[str]) -> Any:
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


# --------------------------------------------------------------------------- raw mappings


def set_dotted(raw: dict, dotted: str, value: Any) -> None:
    """raw[a][b][c] = value for "a.b.c"; a non-mapping on the way is replaced, so the type check that
    follows names the key instead of the value being dropped."""
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value



def config_to_dict(cfg: Config) -> dict:
    out = dataclasses.asdict(cfg)
    out.pop("source", None)
    if out.get("tune") is None:
        out.pop("tune", None)
    if out.get("distill") is None:
        out.pop("distill", None)
    if out.get("recipe", {}).get("name") is None:
        out.pop("recipe", None)  # no record: configs written by hand stay as they were
    return out


# --------------------------------------------------------------------------- ensemble members


VARIANT_SECTIONS = ("tokenizer.", "model.", "train.")
VARIANT_FIXED = ("train.ensemble", "train.ensemble_workers", "train.ensemble_variants", "train.ensemble_max",
                 "train.ensemble_fill_seconds", "train.ensemble_folds", "train.device", "train.num_threads",
                 "train.metric", "train.seed")


def member_raw(cfg: Config, variant: dict[str, Any]) -> dict:
    """The raw config of an ensemble member with `variant` (dotted key -> value) applied."""
    raw = config_to_dict(cfg)
    raw["train"].update(ensemble=1, ensemble_variants=[], ensemble_max=0, ensemble_fill_seconds=None,
                        ensemble_folds=0)
    for key, value in variant.items():
        set_dotted(raw, key, value)
    return raw
