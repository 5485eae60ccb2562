"""The automatic recipe: a data file (and a time budget) in, a complete config out.

    detect the columns (textcls/data/detect.py) -> read the rows -> statistics (stats.py)
    -> measure the machine (speed.py) -> choose every setting by rule (rules.py)

`plan_data_run` does it for `textcls train DATA_FILE` and `textcls init DATA_FILE`; the result's config
records the statistics and each choice with its reason in its `recipe` section, and `render_yaml` writes
the same as a commented YAML file. The rules are in rules.py and docs/recipe.md.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from textcls.config import Config, DataConfig, config_from_dict, merge_raw
from textcls.data.detect import detect_columns
from textcls.data.readers import Record, iter_records
from textcls.recipe.rules import BaseModel, Recipe, auto_recipe
from textcls.recipe.speed import step_timer, this_machine
from textcls.recipe.stats import DataStats, data_stats, token_lengths

DEFAULT_BUDGET = 600.0
STARTUP_SECONDS = 3.0  # the interpreter and imports before the command starts counting


@dataclass
class AutoPlan:
    cfg: Config
    stats: DataStats
    recipe: Recipe
    data: dict  # the detected `data` keys

    def lines(self) -> list[str]:
        """The start-of-run report: the statistics, then one line per choice."""
        s = self.stats
        classes = ", ".join(f"{k}: {v:,}" for k, v in list(s.classes.items())[:8])
        classes += " ..." if s.num_classes > 8 else ""
        columns = "fastText labels" if self.data.get("format") == "fasttext" else (
            f"text {self.data['text_columns']}, label {self.data['label_column']!r}")
        out = [f"data: {self.cfg.data.train} ({self.data.get('format')}; {columns})",
               f"rows {s.rows:,}; {s.num_classes} classes ({classes}); imbalance {s.imbalance:.1f}",
               f"tokens per row: median {s.length_p50:.0f}, 95% {s.length_p95:.0f}, 99% {s.length_p99:.0f}; "
               f"CJK {s.cjk_share:.0%}; duplicate rows {s.duplicate_rate:.1%}; "
               f"rows inside another {s.inside_share:.0%}"]
        out += [f"{c.key}: {_flow(c.value)}  ({c.reason})" for c in self.recipe.choices]
        est = self.recipe.estimate
        out.append(f"plan: about {est.get('loop', 0):.0f}s of training, {est.get('reserve', 0):.0f}s for tokenizing, "
                   f"the NB-LR model and evaluation ({est.get('step_seconds', 0) * 1000:.0f} ms per step measured)")
        return out


def parse_budget(text: str) -> float:
    """'90s', '10m', '1h', '1h30m', '45' (seconds) -> seconds; ConfigError otherwise."""
    from textcls.tune import parse_budget as parse

    return parse(text)


def plan_data_run(train: str, valid: Optional[str] = None, text_columns: Optional[list[str]] = None,
                  label_column: Optional[str] = None, budget: float = DEFAULT_BUDGET, base: Optional[str] = None,
                  output: Optional[str] = None, overrides: tuple[str, ...] = (),
                  started: Optional[float] = None) -> AutoPlan:
    """The config that `textcls train DATA_FILE` trains with: detected columns, the automatic recipe's
    choices for this data, budget and machine, then `overrides` (`--set`) on top. `started`: the
    perf_counter() the command started at (time already spent counts against the budget)."""
    started = time.perf_counter() if started is None else started
    data = detect_columns(train, text_columns, label_column)
    reading = DataConfig(**{k: v for k, v in data.items()})
    records = list(iter_records(train, reading))
    valid_rows = sum(1 for _ in iter_records(valid, reading)) if valid else None
    stats = data_stats(records)
    machine = this_machine()
    base_model, base_cfg = (None, None)
    if base:
        base_model, base_cfg = _base(base, records)
    labels = max(2, stats.num_classes)
    timer = step_timer(machine, base_cfg.vocab_size if base_cfg else 8000, labels,
                       base_cfg.model if base_cfg else None)
    elapsed = lambda: time.perf_counter() - started + STARTUP_SECONDS  # noqa: E731
    auto_recipe(stats, budget, machine, timer, valid_rows, base_model, elapsed())  # measures the candidates
    # The measurements took time too: plan again with it counted (the timer's results are cached).
    recipe = auto_recipe(stats, budget, machine, timer, valid_rows, base_model, elapsed())
    raw = merge_raw({"data": {"train": train, **({"valid": valid} if valid else {}), **data}}, recipe.raw)
    raw["output"] = {"dir": output or str(Path("runs") / _run_name(train))}
    raw["recipe"] = {"name": "auto", "budget_seconds": budget, "stats": stats.summary(),
                     "choices": [{"key": c.key, "value": c.value, "reason": c.reason} for c in recipe.choices]}
    cfg = config_from_dict(raw, source=f"{train} (automatic recipe)", overrides=tuple(overrides))
    return AutoPlan(cfg, stats, recipe, data)


@dataclass
class _BaseConfig:
    model: Any
    vocab_size: int


def _base(spec: str, records: list[Record]) -> tuple[BaseModel, _BaseConfig]:
    """The base's size and the data's lengths in its tokens (a sample of up to 5,000 rows)."""
    import numpy as np

    from textcls.data.tokenizer import load_tokenizer
    from textcls.run.bases import declared_pooling, resolve_base
    from textcls.run.info import load_run_config
    from textcls.run.layout import TOKENIZER

    run_dir = resolve_base(spec)
    model = load_run_config(run_dir).model
    tokenizer = load_tokenizer(run_dir / TOKENIZER)
    sample = records[:: max(1, len(records) // 5000)]
    lengths = token_lengths(sample, lambda texts: [len(e.ids) for e in tokenizer.encode_batch(
        texts, add_special_tokens=False)])
    p95, mean = (float(np.percentile(lengths, 95)), float(lengths.mean())) if lengths is not None else (32.0, 16.0)
    return (BaseModel(spec, model.hidden_size, model.num_layers, model.max_positions, p95, mean,
                      declared_pooling(spec)),
            _BaseConfig(model, tokenizer.get_vocab_size()))



def _run_name(path: str) -> str:
    stem = Path(path).stem
    return re.sub(r"[^\w.-]+", "_", stem) or "auto"


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style)."""
    lines = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).splitlines()
    return " ".join(line for line in lines if line.strip() != "...").strip()


def render_yaml(plan: AutoPlan) -> str:
    """The plan's config as commented YAML: the detected data keys, then every key the recipe chose with its
    reason as a comment, ready to edit and pass to `textcls train`."""
    reasons = {c.key: c.reason for c in plan.recipe.choices}
    cfg = plan.cfg
    s = plan.stats
    lines = [f"# Written by `textcls init {cfg.data.train}`: the automatic recipe's choices for this data, each with",
             "# its reason. Edit any key and train with `textcls train THIS_FILE`.",
             f"# Data: {s.rows:,} rows, {s.num_classes} classes (imbalance {s.imbalance:.1f}), tokens per row median "
             f"{s.length_p50:.0f} / 95% {s.length_p95:.0f}, CJK {s.cjk_share:.0%}, duplicates {s.duplicate_rate:.1%}, "
             f"rows inside another {s.inside_share:.0%}.",
             f"# Budget: {plan.cfg.recipe.budget_seconds:.0f}s; the time-dependent choices (epochs, members, "
             "train.time_budget_seconds) were measured on this machine."]
    sections: dict[str, list[tuple[str, Any, str]]] = {}
    data_keys = [("data.train", cfg.data.train, "the training file")]
    if cfg.data.valid:
        data_keys.append(("data.valid", cfg.data.valid, "the validation file"))
    for key, value in plan.data.items():
        data_keys.append((f"data.{key}", value, "detected"))
    for key, value, reason in data_keys + [(c.key, c.value, c.reason) for c in plan.recipe.choices]:
        section, rest = key.split(".", 1)
        sections.setdefault(section, []).append((rest, value, reasons.get(key, reason)))
    sections.setdefault("output", []).append(("dir", cfg.output.dir, "the run directory"))
    for section, entries in sections.items():
        lines.append(f"{section}:")
        lines += _section_lines(entries)
    lines.append("recipe:")
    lines.append("  name: auto  # a record of the automatic recipe; training reads none of this section")
    lines.append(f"  budget_seconds: {plan.cfg.recipe.budget_seconds:g}")
    lines.append(f"  stats: {_flow(plan.cfg.recipe.stats)}")
    return "\n".join(lines) + "\n"


def _section_lines(entries: list[tuple[str, Any, str]]) -> list[str]:
    """`key: value  # reason` lines, nested keys (model.sharing.strategy) under their sub-section."""
    out, open_sub = [], None
    for key, value, reason in entries:
        *subs, last = key.split(".")
        sub = ".".join(subs) or None
        if sub != open_sub and sub is not None:
            out.append(f"  {sub}:")
        open_sub = sub
        indent = "    " if sub else "  "
        out.append(f"{indent}{last}: {_flow(value)}  # {reason}")
    return out


__all__ = ["AutoPlan", "DEFAULT_BUDGET", "parse_budget", "plan_data_run", "render_yaml"]
