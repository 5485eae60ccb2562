"""The student's config without a CONFIG: the teacher's own lower layers when it lends them
(distill/layers.py; `plan_layers_student`), else the automatic recipe's choices for the teacher's training data
(textcls/recipe), made into a small ALBERT-style student (`plan_student`).

The layers student is fine-tuned as a pretrained base is (lr by its width, batch 32, warmup 10%), for as many
epochs as the budget holds, at most MOST_EPOCHS, the best epoch on the validation rows kept.

The from-scratch student:

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
import math
from typing import Any

from textcls.config import DataConfig
from textcls.data.readers import iter_records
from textcls.distill.layers import (
    ARITHMETIC_SHARE,
    LayersStudent,
    fitting_ffn,
    fitting_rank,
    layer_arithmetic,
    student_parameters,
)
from textcls.errors import ConfigError
from textcls.recipe.rules import (
    EPOCH_OVERHEAD,
    MEMBER_OVERHEAD,
    PLAN_SHARE,
    Candidate,
    Recipe,
    auto_recipe,
    round_up,
)
from textcls.recipe.speed import step_timer, this_machine
from textcls.recipe.stats import data_stats

KEPT = ("tokenizer.", "data.max_length", "data.truncation", "data.head_tokens", "model.", "train.")
MOST_EPOCHS = 20
LENGTH_SAMPLE = 2000  # training texts whose token lengths size the layers student's timed batch
SIZE_SHARE = 10  # the layers student has at most 1/SIZE_SHARE of the teacher's parameters (a low-rank word table)
# A layers student's real step (length-bucketed batches, evaluations included) took 0.95-1.09x the step timed at
# its texts' mean length on MR, SUBJ, SST-2 and MPQA; with the recipe's former factor of 1.2 its 10-minute runs
# trained for 66-72% of the time they had and ended after 7.5-8 minutes.
LAYERS_STEP_FACTOR = 1.05
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



def plan_layers_student(student: LayersStudent, data: DataConfig, train_texts: list[str], distill_rows: int,
                        valid_rows: int, budget: float, elapsed: float, teacher_parameters: int,
                        teacher_arithmetic: int, device: str = "auto") -> tuple[dict, dict]:
    """(raw config sections, the `recipe` record) for the student of the teacher's lower layers (`student`),
    learning from `distill_rows` rows (`train_texts` the labelled ones) within `budget` seconds (`elapsed`
    spent). Two cuts, each for its own aim: where the student's layers do more than 1/ARITHMETIC_SHARE of the
    teacher's `teacher_arithmetic` (multiply-adds per token), each feed-forward block keeps the neurons that add
    most to its output, as many as fit (`fitting_ffn`, `narrow_ffn`); where the student has more than
    1/SIZE_SHARE of the teacher's `teacher_parameters`, the word table, which costs a lookup and no arithmetic,
    is factorized at the largest rank that keeps it within (`fitting_rank`)."""
    from textcls.config import config_from_dict

    stats = data_stats(iter_records(data.train, data))
    machine = this_machine(device)
    precision = "bf16" if machine.bf16 else "fp32"
    batch, width = 32, student.model["hidden_size"]
    classes = max(2, stats.num_classes)
    teacher_ffn = student.model["intermediate_size"]
    ffn = fitting_ffn(student, teacher_arithmetic // ARITHMETIC_SHARE)
    rank = fitting_rank(student, teacher_parameters // SIZE_SHARE, classes, ffn)
    arithmetic, all_neurons = (teacher_arithmetic / (student.layers * layer_arithmetic(width, f))
                               for f in (ffn, teacher_ffn))
    model = {**student.model, "intermediate_size": ffn,
             "embeddings": {**student.model["embeddings"], "word_rank": rank}}
    model_cfg = config_from_dict({"model": model, "data": {"max_length": data.max_length}},
                                 source="the distilled student").model
    sample = train_texts[:LENGTH_SAMPLE]  # the lengths the student reads
    lengths = [len(e.ids) for e in student.tokenizer.encode_batch(sample, add_special_tokens=True)]
    mean = sum(lengths) / max(1, len(lengths))
    length = min(data.max_length, round_up(mean, 8))  # length-bucketed batches: padded to about the mean
    threads = machine.cores if machine.device == "cpu" else 1
    step = step_timer(machine, student.vocab, max(2, stats.num_classes), model_cfg, threads)(
        Candidate("layers-student", None, batch, length, precision))  # one model on every core: timed so
    steps, evals = math.ceil(distill_rows / batch), math.ceil(valid_rows / batch)
    epoch_seconds = (steps + evals / 3) * step * LAYERS_STEP_FACTOR + EPOCH_OVERHEAD  # an evaluation: 1/3 step
    avail = budget - elapsed - MEMBER_OVERHEAD - (evals * step / 3 + 3.0)  # the final evaluation and files
    fit = PLAN_SHARE * avail / epoch_seconds
    if fit < 0.1:
        need = elapsed + MEMBER_OVERHEAD + 0.1 * epoch_seconds / PLAN_SHARE + evals * step / 3 + 3.0
        raise ConfigError(f"a budget of {budget:.0f}s is too small to train the student of the teacher's layers "
                          f"after the teacher's probabilities ({elapsed:.0f}s so far; one epoch of {distill_rows:,} "
                          f"rows takes about {epoch_seconds:.0f}s); raise --budget to at least "
                          f"{math.ceil(need * 1.2 / 10) * 10:.0f}s, or set distill.augment_copies lower")
    epochs = min(MOST_EPOCHS, max(0.1, math.floor(fit * 10) / 10))  # tenths of an epoch: the budget, not a floor
    lr = 1e-4 if width <= 384 else 5e-5 if width <= 640 else 2e-5
    whole = teacher_parameters / max(1, student_parameters(student, classes, None, ffn))
    share = teacher_parameters / max(1, student_parameters(student, classes, rank, ffn))
    choices = [
        ("model.num_layers", student.layers, f"the teacher's first {student.layers} of {student.teacher_layers} "
         "layers (the most, up to half, that run a sixth of the teacher's layer passes), with its word, position "
         "and segment embeddings; a fresh head"),
        ("tokenizer", f"the teacher's, {student.vocab:,} of {student.teacher_vocab:,} tokens",
         "the tokens of the distillation texts and their characters"),
        ("model.intermediate_size", ffn, f"the teacher's {teacher_ffn} feed-forward neurons per layer: the "
         f"student's layers do 1/{arithmetic:.1f} of the teacher's arithmetic per token (the aim is "
         f"1/{ARITHMETIC_SHARE} or less)" if ffn == teacher_ffn else
         f"the {ffn} of the teacher's {teacher_ffn} feed-forward neurons per layer that add most to its output on the "
         f"texts: the student's layers do 1/{arithmetic:.1f} of the teacher's arithmetic per token (with all of "
         f"them 1/{all_neurons:.1f}; the aim is "
         f"1/{ARITHMETIC_SHARE}, for a 5x faster predict run); `--set model.intermediate_size={teacher_ffn}` keeps "
         "them all"),
        ("model.embeddings.word_rank", rank, f"the whole word table: the student has 1/{share:.1f} of the "
         f"teacher's {teacher_parameters:,} parameters" if rank is None else
         f"the word table at rank {rank}, fitted to the teacher's vectors weighted by how often the texts use each "
         f"token: the student has 1/{share:.1f} of the teacher's {teacher_parameters:,} parameters (the whole "
         f"table: 1/{whole:.1f}; the aim is 1/{SIZE_SHARE}); `--set model.embeddings.word_rank=null` keeps the "
         "whole table, a larger and somewhat more accurate student"),
        ("train.epochs", epochs, f"what the budget holds at {step * 1000:.0f} ms a step (timed at {length} tokens), at "
         f"most {MOST_EPOCHS}"),
        ("train.lr", lr, f"hidden size {width} (up to 384: 1e-4; up to 640: 5e-5; larger: 2e-5), as for a base"),
        ("train.batch_size", batch, "fine-tuning"),
        ("train.warmup", 0.1, "share of the steps"),
        ("train.schedule", "linear", "linear decay to zero"),
        ("train.weight_decay", 0.01, "AdamW"),
        ("train.precision", "auto", f"bf16 where the device has bf16 units ({precision} here)"),
        ("train.time_budget_seconds", round(max(1.0, avail), 1),
         f"the budget less the time spent ({elapsed:.0f}s, the teacher's probabilities included) and a reserve "
         "for evaluation"),
    ]
    train = {key.removeprefix("train."): value for key, value, _ in choices if key.startswith("train.")}
    if machine.device == "cpu":
        train["num_threads"] = machine.cores
    raw = {"model": model, "train": {**train, "ensemble": 1}, "nblr": {"weight": 0.0}}
    record = {"name": "auto", "budget_seconds": budget, "stats": stats.summary(),
              "choices": [{"key": k, "value": v, "reason": r} for k, v, r in choices]}
    return raw, record

