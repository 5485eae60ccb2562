"""`textcls distill TEACHER_RUN [CONFIG]`: a student trained on a teacher run's probabilities, on the training
engine (train/engine.py) with distill/task.py's DistillTask.

    the teacher (distill/teacher.py) -> the rows: the training part of the teacher's split, augmented copies
    (distill/augment.py), unlabelled texts -> the teacher's probabilities, computed once and cached in the run
    -> the student's config (a CONFIG, or the automatic recipe: distill/student.py) -> train -> a run directory

The training file, its reading options and the validation split (`valid_fraction` and the split seed, or the
validation file) are the teacher's, under the data keys a CONFIG (or `--set`) gives, so the student is chosen
on the rows the teacher was chosen on and never on a test file. The result is an ordinary run directory (eval,
predict, info); its run.json names the teacher (`teacher: {path, sha256}`) and its config.yaml has a `distill`
section.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from textcls.config import (
    Config,
    check_keys,
    config_from_dict,
    config_to_dict,
    load_config,
    merge_raw,
    read_yaml,
)
from textcls.data.pipeline import PreparedData, encode_texts, hf_datasets, prepare_data, text_splits
from textcls.data.readers import iter_records
from textcls.data.tokenizer import load_tokenizer
from textcls.device import resolve_precision
from textcls.distill.augment import augment_texts, training_vocabulary
from textcls.distill.layers import (
    default_layers,
    layers_student,
    low_rank,
    narrow_ffn,
    neuron_use,
    teacher_arithmetic,
    teacher_depth,
    teacher_layer_passes,
    teacher_parameters,
    unfit_reason,
)
from textcls.distill.student import plan_layers_student, plan_student
from textcls.distill.task import NO_LABEL, DistillTask, ProjectedStudent
from textcls.distill.teacher import (
    LAYERS_TENSOR,
    POOLED_TENSOR,
    PROBS_TENSOR,
    Teacher,
    cache_key,
    load_teacher,
    read_cache,
    write_cache,
)
from textcls.distill.vectors import init_from_teacher
from textcls.errors import CheckpointError, ConfigError, DataError
from textcls.recipe import DEFAULT_BUDGET
from textcls.run.info import save_run_files
from textcls.run.layout import CONFIG, TEACHER_PROBS, TOKENIZER, is_run_dir
from textcls.run.load import load_state
from textcls.run.lock import run_lock
from textcls.run.prepare import check_resume_config, prepare_run_dir, replace_old_run
from textcls.train.adversarial import EmbeddingAdversary
from textcls.train.classify import build_classifier, start_run
from textcls.train.ema import WeightAverage
from textcls.train.engine import Trainer, select_device
from textcls.train.progress import announcer

if TYPE_CHECKING:
    import datasets


@dataclass
class DistillResult:
    run_dir: Path
    best_metric: Optional[float]
    steps: int
    seconds: float  # the training loop's
    examples_per_second: float
    rows: dict  # labelled, augmented, unlabelled
    teacher_seconds: float  # computing the teacher's probabilities; 0 when the cache held them
    stop_requested: bool = False


def distill(teacher_dir: Path | str, config: Optional[Path] = None, overrides: Sequence[str] = (),
            output: Optional[Path] = None, budget: Optional[float] = None, unlabelled: Sequence[str] = (),
            resume: bool = False, quiet: bool = False) -> DistillResult:
    """Distil the run at `teacher_dir` into a student per `config` (None: the automatic recipe's student, within
    `budget` seconds, default 10 minutes); writes the run directory `output`."""
    started = time.perf_counter()
    teacher = load_teacher(teacher_dir)
    cfg, flags, auto = _config(teacher, config, list(overrides), output, budget, list(unlabelled), resume)
    run_dir = Path(output or cfg.output.dir)
    with run_lock(run_dir):
        return _distill(teacher, cfg, run_dir, resume, quiet, auto, [*flags, *overrides], budget or DEFAULT_BUDGET,
                        started)


def _config(teacher: Teacher, config: Optional[Path], overrides: list[str], output: Optional[Path],
            budget: Optional[float], unlabelled: list[str], resume: bool) -> tuple[Config, list[str], bool]:
    """(config, the --set assignments, whether the recipe still has to choose the student)."""
    flags = [f"distill.teacher={json.dumps(str(teacher.path.resolve()))}"]
    if unlabelled:
        flags.append(f"distill.unlabelled={json.dumps([str(Path(p).resolve()) for p in unlabelled])}")
    if output is not None:
        flags.append(f"output.dir={json.dumps(str(output))}")
    if resume and config is None:
        if output is None or not is_run_dir(output):
            raise ConfigError(f"--resume continues a run: pass its --output (now {output}, which holds no "
                              f"{CONFIG} and {TOKENIZER})")
        cfg = load_config(output / CONFIG, [*flags, *overrides])
        check_resume_config(cfg, output, f"distill {teacher.path}")
        return cfg, flags, False
    if config is not None:
        if budget is not None:
            flags.append(f"train.time_budget_seconds={budget}")
        raw = read_yaml(Path(config)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{config}: the config must be a YAML mapping of sections")
        data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
        given = {*data, *(o.split("=", 1)[0].strip().removeprefix("data.") for o in overrides)}
        base = teacher_data(teacher)
        if given & {"valid", "valid_fraction"}:  # the CONFIG's own validation rows replace the teacher's
            base.pop("valid"), base.pop("valid_fraction")
        raw["data"] = {**base, **data}  # the CONFIG's own data keys (a file, max_length) win
        raw.setdefault("distill", {})
        cfg = config_from_dict(raw, source=str(config), overrides=(*flags, *overrides),
                               base_dir=Path(config).resolve().parent)
        if resume:
            check_resume_config(cfg, Path(output or cfg.output.dir), f"distill {teacher.path}")
        return cfg, flags, False
    name = f"{teacher.path.resolve().name}-student"
    raw = {"data": teacher_data(teacher), "distill": {}, "output": {"dir": str(Path("runs") / name)}}
    source = f"the student of {teacher.path}"
    # The recipe chooses the student's tokenizer and model after the teacher's pass, and `_distill` applies these
    # keys on top of them; checked now against a default 256-wide model, a value that suits the student (a
    # word-table rank of 273 for a 384-wide one) would be refused. Their names are checked now, their values then.
    later = [o for o in overrides if o.split("=", 1)[0].strip().split(".", 1)[0] in ("model", "tokenizer")]
    check_keys(later, source)
    cfg = config_from_dict(raw, source=source, overrides=(*flags, *(o for o in overrides if o not in later)))
    return cfg, flags, True


def teacher_data(teacher: Teacher) -> dict:
    """The teacher's `data` section with its split seed spelled out, so the student holds out the same rows."""
    d = teacher.run.cfg.data
    split_seed = teacher.run.cfg.train.seed if d.split_seed is None else d.split_seed
    return {**dataclasses.asdict(d), "split_seed": split_seed, "cache_dir": None}


def _distill(teacher: Teacher, cfg: Config, run_dir: Path, resume: bool, quiet: bool, auto: bool,
             assignments: list[str], budget: float, started: float) -> DistillResult:
    """`auto`: the recipe chooses the student's tokenizer, model and train sections, and `assignments` (the
    command line's, `--set` last) go on top of its choices."""
    say = announcer(not quiet) or (lambda message: None)
    cfg, resume = prepare_run_dir(cfg, run_dir, resume, say)  # deletes nothing: refuse a bad --output early
    k = cfg.distill
    train_rows, valid_rows = text_splits(cfg, teacher.labels)
    augmented = augment_texts(train_rows.texts, k.augment_copies, k.mask_probability, cfg.train.seed,
                              teacher.mask_token(), training_vocabulary(train_rows.texts))
    extra = unlabelled_texts(k.unlabelled, cfg)
    texts = [*train_rows.texts, *augmented, *extra]
    rows = {"labelled": len(train_rows.texts), "augmented": len(augmented), "unlabelled": len(extra)}
    # the teacher's layers matched (distill.match_layers); with `auto`, known once the recipe has chosen the student
    matched = [] if auto else matched_layers(k.match_layers, cfg.model.num_layers, teacher_depth(teacher))
    key = cache_key(texts, teacher, k.match_hidden, [t for _, t in matched])
    cached, why = read_cache(run_dir, key)
    if resume and why in ("another teacher", "other texts"):
        raise CheckpointError(f"cannot resume {run_dir}: its {TEACHER_PROBS} was computed for {why} (the teacher's "
                              "weights or the training texts changed since the run started); restore them, or "
                              "distil again without --resume")
    teacher_seconds, fresh = 0.0, False
    if cached is None:
        say(f"teacher {teacher.path}: probabilities of {len(texts):,} texts ({rows['labelled']:,} training rows, "
            f"{rows['augmented']:,} augmented copies, {rows['unlabelled']:,} unlabelled)")
        began = time.perf_counter()
        device, precision = teacher_device(cfg)
        cached = {PROBS_TENSOR: teacher.probabilities(texts, device, precision=precision)}
        if k.match_hidden:
            cached[POOLED_TENSOR] = teacher.pooled(texts, device, precision=precision)
        teacher_seconds = time.perf_counter() - began
        fresh = True
    else:
        say(f"teacher {teacher.path}: probabilities of {len(texts):,} texts read from {run_dir / TEACHER_PROBS}")
    lent = None  # the student of the teacher's lower layers (distill/layers.py)
    if auto:
        layers = student_layers(teacher, k.student_layers, say)
        valid_count = len(valid_rows.texts) if valid_rows else 0
        # the pass for the matched layers' states comes after the plan: counted as the teacher's pass of one model
        states = teacher_seconds / len(teacher.models()) if k.match_layers else 0.0
        elapsed = time.perf_counter() - started + states
        if layers:
            lent = layers_student(teacher, texts, layers, cfg.data.max_length)
            sections, record = plan_layers_student(lent, cfg.data, train_rows.texts, len(texts), valid_count, budget,
                                                   elapsed, teacher_parameters(teacher), teacher_arithmetic(teacher),
                                                   cfg.train.device)
        else:
            sections, record = plan_student(cfg.data, len(texts), valid_count, budget, elapsed, cfg.train.device)
        raw = config_to_dict(cfg)
        for section in ("tokenizer", "model", "train"):
            raw.pop(section)
        raw = merge_raw(raw, sections)
        raw["distill"]["student_layers"] = layers
        raw["recipe"] = record
        cfg = config_from_dict(raw, source=f"the student of {teacher.path} (automatic recipe)",
                               overrides=tuple(assignments))
        matched = matched_layers(cfg.distill.match_layers, cfg.model.num_layers, teacher_depth(teacher))
        key = cache_key(texts, teacher, k.match_hidden, [t for _, t in matched])
        if lent is not None and cfg.model.intermediate_size > (neurons := lent.model["intermediate_size"]):
            raise ConfigError(f"`model.intermediate_size: {cfg.model.intermediate_size}`: the student of the "
                              f"teacher's layers keeps some of their {neurons} feed-forward neurons and cannot add "
                              f"any; set it to {neurons} or less")
        for choice in record["choices"]:
            say(f"{choice['key']}: {choice['value']}  ({choice['reason']})")
    elif k.student_layers and not resume:
        raise ConfigError("`distill.student_layers` chooses the automatic student; with a CONFIG the student is "
                          "the CONFIG's model: remove the key, or distil without a CONFIG")

    if matched and LAYERS_TENSOR not in cached:
        say(f"teacher {teacher.path}: the mean states of its layers {[t for _, t in matched]} for the student's "
            f"{[s for s, _ in matched]}")
        device, precision = teacher_device(cfg)
        cached[LAYERS_TENSOR] = teacher.layer_means(texts, [t for _, t in matched], device, precision=precision)
        fresh = True
    cfg, resume, device, metrics = start_run(cfg, run_dir, resume)
    tokenizer = load_tokenizer(run_dir / TOKENIZER) if resume else lent.tokenizer if lent else None
    data = prepare_data(cfg, tokenizer, quiet=quiet)
    order = _label_order(teacher.labels, data.labels, cfg)
    labels = np.full(len(texts), NO_LABEL, dtype=np.int64)
    labels[:rows["labelled"]] = np.asarray(order)[train_rows.targets.argmax(1)]
    # columns in the student's label order
    student_probs = np.ascontiguousarray(cached[PROBS_TENSOR][:, np.argsort(order)])
    prepared = PreparedData(data.tokenizer, data.labels, distill_dataset(data.tokenizer, texts, labels, cfg),
                            data.valid)
    student, _, _ = build_classifier(cfg, run_dir, prepared, resume, quiet)
    if lent is not None:  # (a resumed run reads its weights from last/)
        rank, ffn = cfg.model.embeddings.word_rank, cfg.model.intermediate_size
        lent_state = low_rank(lent.state, rank, lent.counts) if rank else lent.state
        if ffn != lent.model["intermediate_size"]:
            lent_state = narrow_ffn(lent_state, ffn, neuron_use(teacher, texts, lent.layers, cfg.data.max_length))
            say(f"student: the {ffn} of {lent.model['intermediate_size']} feed-forward neurons per layer that add "
                "most to the teacher's output")
        fresh_head = {k: v for k, v in student.state_dict().items() if k.startswith("head.")}
        load_state(student, {**lent_state, **fresh_head}, "the teacher's lower layers")
        say(f"student: the teacher's first {lent.layers} of {lent.teacher_layers} layers, {lent.vocab:,} of "
            f"{lent.teacher_vocab:,} tokens")
    elif k.teacher_vectors and not resume:
        vocab = data.tokenizer.get_vocab()
        began = time.perf_counter()
        filled = init_from_teacher(student.embeddings.word, vocab, teacher)
        say(f"word vectors from the teacher: {filled:,} of {len(vocab):,} tokens ({time.perf_counter() - began:.0f}s)")
    pooled, states = cached.get(POOLED_TENSOR), cached.get(LAYERS_TENSOR)
    model = student  # what the engine trains
    if pooled is not None or states is not None:
        width = teacher.single()[0].cfg.hidden_size  # of the teacher's one model, whose vectors are matched
        model = ProjectedStudent(student, width, pooled is not None, [s for s, _ in matched])
    model.to(device)
    t = cfg.train
    average = WeightAverage(model, t.ema_decay) if t.ema_decay else None
    evaluated = average.model if average else model
    evaluated = evaluated.student if isinstance(evaluated, ProjectedStudent) else evaluated  # saved: the student
    adversary = EmbeddingAdversary(student.embeddings.norm, t.adversarial_eps) if t.adversarial_eps > 0 else None
    task = DistillTask(cfg, run_dir, prepared, device, evaluated, student_probs, teacher.reference(), pooled,
                       states)
    trainer = Trainer(task, model, t, run_dir, device, metrics, resume=resume, quiet=quiet, average=average,
                      adversary=adversary, compile=t.compile)
    if not resume:  # every input has passed its checks: the run's first files
        replace_old_run(run_dir)
        save_run_files(run_dir, cfg, data.tokenizer, data.labels)
    if not resume or fresh:
        write_cache(run_dir, cached, key)
    state = trainer.fit()
    return DistillResult(run_dir, state.best, state.step, time.perf_counter() - trainer.started,
                         trainer.progress.examples_per_second, rows, teacher_seconds, trainer.stop_requested)


def teacher_device(cfg: Config) -> tuple[torch.device, str]:
    """(device, precision) of the teacher's passes: the student's device, and the precision the student trains in
    (bf16 where the device has bf16 units, `train.precision: auto`)."""
    device = select_device(cfg.train.device)
    return device, "bf16" if resolve_precision(cfg.train.precision, device) == "bf16" else "fp32"


def student_layers(teacher: Teacher, wanted: Optional[int], say) -> int:
    """How many of the teacher's layers the automatic student keeps (0: a student from scratch)."""
    if wanted == 0:
        return 0
    reason = unfit_reason(teacher)
    total = teacher_depth(teacher)
    if wanted is None:
        if reason:
            say(f"student: from scratch, since the teacher cannot lend its layers ({reason})")
            return 0
        return default_layers(total, teacher_layer_passes(teacher))
    if reason:
        raise ConfigError(f"`distill.student_layers: {wanted}`: the teacher {teacher.path} cannot lend its layers "
                          f"({reason}); set it to 0 (a student from scratch) or remove it")
    if wanted >= total:
        raise ConfigError(f"`distill.student_layers: {wanted}`: the teacher {teacher.path} has {total} layers; "
                          f"keep fewer (1..{total - 1})")
    return wanted


def matched_layers(setting, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs, 1-based, of `distill.match_layers` (None: none; "uniform": student
    layer i of K against teacher layer round(i * L / K); a list: one teacher layer per student layer, 0 unmatched);
    ConfigError for a list that does not fit the two models."""
    if setting is None:
        return []
    if setting == "uniform":
        return [(i, math.floor(i * teacher_layers / student_layers + 0.5)) for i in range(1, student_layers + 1)]
    if len(setting) != student_layers:
        raise ConfigError(f"`distill.match_layers` has {len(setting)} entries for a student of {student_layers} "
                          "layers; give one teacher layer per student layer (0: unmatched), or `uniform`")
    if max(setting) > teacher_layers:
        raise ConfigError(f"`distill.match_layers: {setting}`: the teacher's one model has {teacher_layers} layers; "
                          f"give layers 1..{teacher_layers} (0: unmatched), or `uniform`")
    return [(i, t) for i, t in enumerate(setting, 1) if t]


def unlabelled_texts(files: Sequence[str], cfg: Config) -> list[str]:
    """The texts of `distill.unlabelled` files (plain text, one a line, or files like the training file, whose
    text column is read), empty lines left out."""
    texts: list[str] = []
    reading = dataclasses.replace(cfg.data, format=None, on_bad_lines="skip")
    for path in files:
        if not Path(path).is_file():
            what = "is a directory" if Path(path).is_dir() else "does not exist"
            raise DataError(f"unlabelled file {path} {what}; check --unlabelled (`distill.unlabelled`)")
        texts.extend(r.text for r in iter_records(path, reading, labelled=False, allow_empty=True) if r.text.strip())
    return texts


def distill_dataset(tokenizer, texts: list[str], labels: np.ndarray, cfg: Config) -> datasets.Dataset:
    """The distillation rows tokenized as the student reads them: input_ids, length and label (NO_LABEL where
    the row has only the teacher's probabilities)."""
    d = cfg.data
    ids, _ = encode_texts(tokenizer, texts, None, d.max_length, d.truncation, d.head_tokens)
    columns = {"input_ids": ids, "length": [len(x) for x in ids], "label": labels.tolist()}
    return hf_datasets().Dataset.from_dict(columns)


def _label_order(teacher_labels: list[str], student_labels: list[str], cfg: Config) -> list[int]:
    """order[i] = the student's index of the teacher's label i; the two must name the same classes."""
    if sorted(teacher_labels) != sorted(student_labels):
        raise DataError(f"{cfg.data.train}: the training rows have the labels {student_labels[:8]} but the teacher "
                        f"classifies {teacher_labels[:8]}; distil on data with the teacher's classes")
    return [student_labels.index(label) for label in teacher_labels]

