"""The student's config without a CONFIG: the automatic recipe's choices for the teacher's training data
(textcls/recipe), made into a small ALBERT-style student.

The recipe sizes the tokenizer, `max_length`, the model, the batch, epochs and the time budget from the data's
statistics and this machine, with the distillation set's rows (labelled rows, augmented copies, unlabelled
texts) counted as training rows, so epochs and steps are planned for what the student reads. The time a
trainer from labels would give to ensemble members goes to more epochs instead (at most MOST_EPOCHS): the
teacher's probabilities keep a long run from fitting the labels' noise, and the best epoch on the validation
rows is kept. Then:
every depth runs one shared layer (`model.sharing.strategy: all`), the word embeddings are factorized (half the
hidden size when the recipe chose none), positions are learned and no hashed n-gram table is added (it would
hold more parameters than the rest of the student), one model is trained (no ensemble) and no NB-LR model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from textcls.config import DataConfig
from textcls.data.readers import iter_records
from textcls.recipe.rules import MEMBER_OVERHEAD, Recipe, auto_recipe
from textcls.recipe.speed import step_timer, this_machine
from textcls.recipe.stats import data_stats

KEPT = ("tokenizer.", "data.max_length", "data.truncation", "data.head_tokens", "model.", "train.")
MOST_EPOCHS = 20
DROPPED = ("train.ensemble", "train.ensemble_workers", "train.ensemble_variants", "train.time_budget_seconds",
           "model.position", "model.embeddings.")


def plan_student(data: DataConfig, distill_rows: int, valid_rows: int, budget: float, elapsed: float,
                 device: str = "auto") -> tuple[dict, dict]:
    """(raw config sections, the `recipe` record) for a student of the data in `data` (the teacher's training
    file and its reading options), learning from `distill_rows` rows within `budget` seconds (`elapsed` spent)."""
    stats = data_stats(iter_records(data.train, data))
    planned = dataclasses.replace(stats, rows=distill_rows)  # epochs and steps count the rows the student reads
    machine = this_machine(device)
    timer = step_timer(machine, 8000, max(2, stats.num_classes))
    auto_recipe(planned, budget, machine, timer, valid_rows, None, elapsed, MOST_EPOCHS)  # measures the candidates
    recipe = auto_recipe(planned, budget, machine, timer, valid_rows, None, elapsed, MOST_EPOCHS)
    raw = student_sections(recipe, budget, elapsed)
    m = raw["model"]
    student = [("model.sharing.strategy", "all", "distilled student: one layer shared by every depth"),
               ("model.embedding_size", m["embedding_size"], "distilled student: factorized word embeddings"),
               ("model.position", "learned", "distilled student: no hashed n-gram table"),
               ("train.time_budget_seconds", raw["train"]["time_budget_seconds"],
                f"the budget less the time spent ({elapsed:.0f}s, the teacher's probabilities included) and a "
                "reserve for tokenizing and evaluation")]
    choices = [{"key": c.key, "value": c.value, "reason": c.reason} for c in recipe.choices
               if _kept(c.key) and c.key not in {key for key, _, _ in student}]
    choices += [{"key": key, "value": value, "reason": reason} for key, value, reason in student]
    return raw, {"name": "auto", "budget_seconds": budget, "stats": stats.summary(), "choices": choices}


def _kept(key: str) -> bool:
    return key.startswith(KEPT) and not key.startswith(DROPPED)


def student_sections(recipe: Recipe, budget: float, elapsed: float) -> dict:
    """The recipe's tokenizer, length, model and training keys, made into the distilled student (see above)."""
    raw: dict[str, Any] = {}
    for choice in recipe.choices:
        if not _kept(choice.key):
            continue
        node = raw
        *parents, last = choice.key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = choice.value
    model = raw.setdefault("model", {})
    model.setdefault("sharing", {})["strategy"] = "all"
    if not model.get("embedding_size"):
        model["embedding_size"] = max(16, model.get("hidden_size", 256) // 2)
    model["position"] = "learned"
    reserve = recipe.estimate.get("reserve", 0.0)
    raw["train"]["time_budget_seconds"] = round(max(1.0, budget - elapsed - reserve - MEMBER_OVERHEAD), 1)
    raw["nblr"] = {"weight": 0.0}
    return raw

