"""Config validation: every cross-field and range check, each problem collected, none raised here.

`config_from_dict` builds the dataclasses (type errors are collected there), then calls `validate`;
the whole list becomes one ConfigError naming every key at once.
"""

from __future__ import annotations

import difflib

from textcls.config import optional
from textcls.config.schema import (
    VARIANT_FIXED,
    VARIANT_SECTIONS,
    Config,
    ModelConfig,
    TrainConfig,
    build_dataclass,
    fold_count,
    member_raw,
    short_repr,
)

MAX_SEED = 2**63 - 1  # the largest seed torch.manual_seed accepts on every platform


def _check_nblr(cfg: Config, problems: list[str]) -> None:
    n = cfg.nblr
    if not 0.0 <= n.weight <= 1.0:
        problems.append(f"`nblr.weight` is the NB-LR model's share of the probabilities, in [0, 1]; got {n.weight}")
    for key, value in {"nblr.max_order": n.max_order, "nblr.min_count": n.min_count,
                       "nblr.max_features": n.max_features}.items():
        if value < 1:
            problems.append(f"`{key}` must be at least 1, got {value}")
    if n.max_order > 5:
        problems.append(f"`nblr.max_order` {n.max_order} makes most n-grams unique to one text; use at most 5")
    if n.c <= 0:
        problems.append(f"`nblr.c` (inverse L2 strength) must be positive, got {n.c}")
    if n.chars and (len(n.chars) != 2 or not 1 <= n.chars[0] <= n.chars[1] <= 10):
        problems.append(f"`nblr.chars` is [lo, hi], the lengths of the character n-grams with 1 <= lo <= hi <= 10 "
                        f"(e.g. [3, 5]), or [] for none; got {n.chars}")
    if n.weight == 1.0 and cfg.train.ensemble > 1:
        problems.append("`nblr.weight: 1` ignores the transformers; lower it (e.g. 0.3) or drop `train.ensemble`")


def validate(cfg: Config, problems: list[str]) -> None:
    """Append every problem of `cfg` (ranges, cross-field rules, variants, adapters, pretraining) to `problems`."""
    _check_ranges(cfg, problems)
    _check_segmenter(cfg, problems)
    _check_nblr(cfg, problems)
    _check_numbers(cfg, problems)
    _check_data(cfg, problems)
    _check_encoder(cfg, problems)
    _validate_train_extras(cfg.train, problems)
    _check_training(cfg, problems)
    _validate_adapters(cfg.model, problems)
    _validate_pretrain(cfg, problems)
    _validate_distill(cfg, problems)
    _validate_variants(cfg, problems)  # last: a problem of the config itself is not repeated per variant


def _check_ranges(cfg: Config, problems: list[str]) -> None:
    """Sizes and counts that must be at least 1."""
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


def _check_numbers(cfg: Config, problems: list[str]) -> None:
    """Heads that divide the width, and the ranges of rates, seeds and optimizer settings."""
    m, t, d = cfg.model, cfg.train, cfg.data
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
    if t.time_budget_seconds is not None and t.time_budget_seconds <= 0:
        problems.append(f"`train.time_budget_seconds` must be positive when set, got {t.time_budget_seconds}")
    if t.weight_decay < 0:
        problems.append(f"`train.weight_decay` must be >= 0, got {t.weight_decay}")
    for key, value in {"train.seed": t.seed, "data.split_seed": d.split_seed, "data.head_tokens": d.head_tokens,
                       "tokenizer.min_frequency": cfg.tokenizer.min_frequency,
                       "model.type_vocab_size": m.type_vocab_size}.items():  # 0 type vocab: no segment embeddings
        if value is not None and value < 0:
            problems.append(f"`{key}` must be >= 0, got {value}")
    for key, value in {"train.seed": t.seed, "data.split_seed": d.split_seed}.items():
        members = t.ensemble if key == "train.seed" and isinstance(t.ensemble, int) and t.ensemble > 0 else 1
        if value is not None and value + members - 1 > MAX_SEED:  # torch takes seeds up to 2**64 - 1
            problems.append(f"`{key}` must be at most {MAX_SEED - members + 1} (2**63 - 1, less one per extra "
                            f"ensemble member), got {str(value)[:30]}")
    for key, value in {"train.eps": t.eps, "model.layer_norm_eps": m.layer_norm_eps,
                       "model.initializer_range": m.initializer_range}.items():
        if value <= 0:
            problems.append(f"`{key}` must be positive, got {value}")
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        problems.append(f"`train.betas` must be two numbers in [0, 1), got {t.betas}")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        problems.append(f"`train.max_grad_norm` must be positive or null, got {t.max_grad_norm}")
    if isinstance(t.class_weights, str) and t.class_weights != "auto":
        problems.append(f"`train.class_weights` must be 'auto' or a list of numbers, got {short_repr(t.class_weights)}")


def _check_data(cfg: Config, problems: list[str]) -> None:
    """The validation split, the columns, and the length against the positions."""
    m, d = cfg.model, cfg.data
    if d.valid_fraction is not None and not 0 < d.valid_fraction < 1:
        problems.append(f"`data.valid_fraction` must be between 0 and 1, got {d.valid_fraction}")
    if d.valid_fraction is not None and d.valid:
        problems.append("`data.valid` and `data.valid_fraction` are both set; validate on the file or on a held-out "
                        "fraction of the training rows, not both (remove one)")
    if d.valid_whole_texts and not d.valid_fraction:
        problems.append("`data.valid_whole_texts` says how a `data.valid_fraction` split holds rows out; set "
                        "`data.valid_fraction` (e.g. 0.1) or remove it")
    if d.valid_fold and not (d.valid_fraction and 0 < d.valid_fraction < 1):
        problems.append("`data.valid_fold` picks one of the folds of a `data.valid_fraction` split; set "
                        "`data.valid_fraction` (e.g. 0.1) or remove it")
    elif d.valid_fold and not 0 <= d.valid_fold < fold_count(d.valid_fraction):
        problems.append(f"`data.valid_fold` must be in 0..{fold_count(d.valid_fraction) - 1} (`data.valid_fraction` "
                        f"{d.valid_fraction:g} makes {fold_count(d.valid_fraction)} folds), got {d.valid_fold}")
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
    usable = m.max_positions - max(m.position_offset, 0)  # RoBERTa imports start at row 2 of the table
    offset = f" minus `model.position_offset` {m.position_offset}" if m.position_offset else ""
    if m.position_offset < 0 or (m.position_offset and m.position_offset >= m.max_positions):
        problems.append(f"`model.position_offset` must be >= 0 and below `model.max_positions` ({m.max_positions}), "
                        f"got {m.position_offset}")
    elif d.max_length > usable and m.position in ("learned", "sinusoidal"):
        problems.append(
            f"`data.max_length` ({d.max_length}) asks for more positions than the model has "
            f"(`model.max_positions` = {m.max_positions}{offset}); lower max_length or raise max_positions"
        )
    if d.max_length < 3 and d.max_length >= 1:
        problems.append(f"`data.max_length` must leave room for [CLS] and [SEP], got {d.max_length}")


def _check_encoder(cfg: Config, problems: list[str]) -> None:
    """Layer sharing, n-gram embeddings, the word table's rank, pooled and adapted layers."""
    m = cfg.model
    s = m.sharing
    for strategy, key in (("sequence", "group_size"), ("cycle", "num_unique")):
        value = getattr(s, key)
        if s.strategy != strategy:
            continue
        if value is None:
            problems.append(f"`model.sharing.{key}` is required with strategy `{strategy}`")
        elif not 1 <= value <= m.num_layers:
            problems.append(f"`model.sharing.{key}` must be between 1 and num_layers ({m.num_layers}), got {value}")
    e = m.embeddings
    if any(n < 2 or n > 8 for n in e.ngram_orders) or len(set(e.ngram_orders)) != len(e.ngram_orders):
        problems.append(f"`model.embeddings.ngram_orders` must list distinct n-gram sizes from 2 to 8, "
                        f"got {e.ngram_orders}")
    if e.ngram_orders and e.ngram_buckets < 1:
        problems.append(f"`model.embeddings.ngram_buckets` must be at least 1, got {e.ngram_buckets}")
    width = m.embedding_size or m.hidden_size
    if e.word_rank is not None and not 1 <= e.word_rank < width:
        problems.append(f"`model.embeddings.word_rank` must be between 1 and the embedding width less one "
                        f"({width - 1}), got {e.word_rank}; remove it for a full-rank word table")
    elif e.word_rank is not None and e.pretrained:
        problems.append("`model.embeddings.word_rank` and `model.embeddings.pretrained` cannot be combined: word "
                        "vectors fill a full-width table; remove one of them")
    if m.pool_layers > m.num_layers:
        problems.append(f"`model.pool_layers` ({m.pool_layers}) exceeds `model.num_layers` ({m.num_layers})")
    if m.adapters.layers is not None:
        bad = [i for i in m.adapters.layers if not 0 <= i < m.num_layers]
        if bad:
            problems.append(f"`model.adapters.layers` has depths outside 0..{m.num_layers - 1}: {bad}")


def _check_training(cfg: Config, problems: list[str]) -> None:
    """Adversarial training, compiling, dropouts, the moving average and the ensemble keys."""
    m, t, d = cfg.model, cfg.train, cfg.data
    if t.adversarial_eps < 0:
        problems.append(f"`train.adversarial_eps` must be >= 0 (0 turns adversarial training off), "
                        f"got {t.adversarial_eps}")
    if t.adversarial_eps > 0 and t.compile:
        problems.append("`train.adversarial_eps` needs the embeddings' gradient, which a compiled model does not "
                        "expose; set `train.compile: false` or `train.adversarial_eps: 0`")
    if t.compile == "static" and t.batch_tokens:
        problems.append("`train.compile: static` compiles one graph per batch shape and needs a fixed batch size, "
                        "and `train.batch_tokens` varies it; unset `train.batch_tokens` or set `train.compile: true`")
    if t.compile == "static" and m.padding_free:
        problems.append("`train.compile: static` pads batches to a few fixed shapes, and `model.padding_free: true` "
                        "packs the tokens of each batch into a new shape; set one of them to false")
    if t.adversarial_eps > 0 and m.padding_free:
        problems.append("`train.adversarial_eps` scales its perturbation by each example's norm over the padded "
                        "(B, T) embeddings, and `model.padding_free: true` packs them into rows without that shape; "
                        "set `model.padding_free: false` or `train.adversarial_eps: 0`")
    if not 0.0 <= t.token_dropout < 1.0:
        problems.append(f"`train.token_dropout` must be in [0, 1), got {t.token_dropout}")
    if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
        problems.append(f"`train.ema_decay` must be in (0, 1), e.g. 0.999, got {t.ema_decay}")
    if t.ensemble < 1:
        problems.append(f"`train.ensemble` must be at least 1 (the number of members), got {t.ensemble}")
    if t.ensemble_workers < 1:
        problems.append(f"`train.ensemble_workers` must be at least 1, got {t.ensemble_workers}")
    if t.ensemble_max and t.ensemble_max < max(2, t.ensemble):
        problems.append(f"`train.ensemble_max` ({t.ensemble_max}) is the most members a budget may fill to: at least "
                        f"`train.ensemble` ({t.ensemble}) and 2, or 0 for exactly `train.ensemble` members")
    # (a single model ignores it: `--set train.ensemble=1` on a recipe that cross-fits its members trains one model)
    if t.ensemble > 1 and t.ensemble_folds and not (
            t.ensemble_folds >= 2 and t.ensemble >= t.ensemble_folds and d.valid_fraction and not d.valid
            and t.ensemble_folds <= fold_count(d.valid_fraction)):
        problems.append(f"`train.ensemble_folds` ({t.ensemble_folds}) is how many disjoint folds of the training rows "
                        "the members of an ensemble hold out in turn: at least 2, at most `train.ensemble` and the "
                        "folds of `data.valid_fraction` (1 / fraction), with `data.valid_fraction` set (not "
                        "`data.valid`); or 0 for the same held-out rows for every member")
    if t.ensemble_fill_seconds is not None and not t.ensemble_fill_seconds > 0:
        problems.append(f"`train.ensemble_fill_seconds` must be positive seconds, got {t.ensemble_fill_seconds}")
    if t.ensemble_max and t.ensemble_fill_seconds is None:
        problems.append("`train.ensemble_max` needs `train.ensemble_fill_seconds`: the seconds within which the added "
                        "members must finish")
    if t.trainable == "adapters" and not m.adapters.enabled:
        problems.append("`train.trainable: adapters` needs `model.adapters.enabled: true`")


def _validate_variants(cfg: Config, problems: list[str]) -> None:
    """Each variant names allowed keys, and the member config it gives is valid."""
    base = set(problems)
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
        member = build_dataclass(Config, member_raw(cfg, variant), "", trial)
        if not trial and member.model.init_from and any(str(k).startswith("tokenizer.") for k in variant):
            trial.append(f"it sets tokenizer keys, but `model.init_from` ({member.model.init_from}) fixes the "
                         "tokenizer to that run's; drop the tokenizer keys, or start this member from scratch "
                         "(`model.init_from: null` in the variant)")
        if not trial:
            try:
                validate(member, trial)
            except (TypeError, AttributeError):
                pass
        problems.extend(f"{where}: {p}" for p in trial if p not in base)  # the config's own are said once


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
        elif p.block_size > m.max_positions - max(m.position_offset, 0) and m.position == "learned":
            offset = f" minus `model.position_offset` {m.position_offset}" if m.position_offset else ""
            problems.append(
                f"`pretrain.block_size` ({p.block_size}) asks for more positions than the model has "
                f"(`model.max_positions` = {m.max_positions}{offset}); lower block_size or raise max_positions"
            )


def _validate_distill(cfg: Config, problems: list[str]) -> None:
    k = cfg.distill
    if k is None:
        return
    if not 0.0 <= k.alpha <= 1.0:
        problems.append(f"`distill.alpha` is the teacher's share of a labelled row's loss, in [0, 1]; got {k.alpha}")
    if k.temperature <= 0:
        problems.append(f"`distill.temperature` must be positive (e.g. 2), got {k.temperature}")
    if k.augment_copies < 0:
        problems.append(f"`distill.augment_copies` must be >= 0 (0: no augmented copies), got {k.augment_copies}")
    if k.hidden_weight < 0:
        problems.append(f"`distill.hidden_weight` must be >= 0, got {k.hidden_weight}")
    if k.layer_weight < 0:
        problems.append(f"`distill.layer_weight` must be >= 0, got {k.layer_weight}")
    layers = k.match_layers
    if isinstance(layers, str) and layers != "uniform" or isinstance(layers, list) and (
            not layers or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in layers)):
        problems.append("`distill.match_layers` is `uniform` or one teacher layer per student layer (1-based; 0 "
                        f"leaves that student layer unmatched), e.g. [2, 4, 6]; got {short_repr(layers)}")
    if k.student_layers is not None and (isinstance(k.student_layers, bool) or k.student_layers < 0):
        problems.append("`distill.student_layers` is how many of the teacher's layers the student keeps (0: a "
                        f"student from scratch; null: chosen), got {k.student_layers}")
    if not 0.0 <= k.mask_probability < 1.0:
        problems.append(f"`distill.mask_probability` must be in [0, 1), got {k.mask_probability}")
    if k.augment_copies > 0 and k.mask_probability == 0:
        problems.append("`distill.augment_copies` > 0 with `distill.mask_probability: 0` makes exact copies of the "
                        "training texts; raise mask_probability (e.g. 0.15) or set augment_copies: 0")
    if cfg.data.task == "multilabel":
        problems.append("`distill` trains single-label students; a multilabel teacher cannot be distilled")
    if cfg.train.ensemble > 1 or cfg.train.ensemble_max:
        problems.append("`distill` trains one student; remove `train.ensemble` and `train.ensemble_max`")
    if cfg.nblr.weight > 0:
        problems.append("`distill` trains the transformer student alone; remove `nblr.weight` (the NB-LR model is "
                        "not part of a student)")
    if cfg.train.class_weights == "auto":
        problems.append("`train.class_weights: auto` counts labels, and a student's augmented and unlabelled rows "
                        "have none; give one weight per label instead, or remove it")


def _validate_train_extras(t: TrainConfig, problems: list[str]) -> None:
    """Selection metric, decision thresholds and schedule shape."""
    metrics = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")  # textcls/metrics.py HIGHER_IS_BETTER
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


def _check_segmenter(cfg: Config, problems: list[str]) -> None:
    tk = cfg.tokenizer
    if tk.segment == "none" or tk.path:
        return
    if tk.split_cjk:
        problems.append(f"`tokenizer.segment: {tk.segment}` cuts Chinese text into words, and `tokenizer.split_cjk: "
                        "true` (the default) would split them back into characters; set `tokenizer.split_cjk: false`")
    if not optional.segmenter_available(tk.segment):
        problems.append(f"`tokenizer.segment: {tk.segment}` needs the rjieba package, which is not installed; "
                        f"{optional.INSTALL_HINT}, or remove the key")
