"""Training one classifier: the classification task for the engine, and `train_model`, which sets it up.

`train_model` prepares the run directory, the data, the model (init_from, word vectors, trainable
parts with the adapter-base bookkeeping, EMA, adversary) and hands them to `engine.Trainer`; after
training it mixes in the NB-LR model when `nblr.weight` > 0. `ClassifyTask` is what the loop asks
for: length-bucketed batches (with token dropout), the configured loss, and the validation report,
whose best weights go to `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from textcls.config import Config
from textcls.data.batching import lengths_of
from textcls.data.labels import load_labels
from textcls.data.pipeline import PreparedData, prepare_data
from textcls.data.tokenizer import PAD, UNK, load_tokenizer, special_ids
from textcls.device import reuse_freed_memory
from textcls.errors import CheckpointError, ConfigError
from textcls.model.trainable import apply_trainable, count_trainable, is_adapter_param
from textcls.model.word_vectors import init_word_embeddings
from textcls.run.info import read_run_info, save_eval_report, save_run_files
from textcls.run.layout import CONFIG, LABELS, TOKENIZER, WEIGHTS, is_ensemble_dir
from textcls.run.load import (
    base_keys,
    base_reference,
    build_model,
    check_model_memory,
    load_full_state,
    load_state,
)
from textcls.run.members import member_name
from textcls.run.prepare import prepare_run_dir, replace_old_run
from textcls.run.store import remove_stale_temp, save_best
from textcls.train import distributed
from textcls.train.adversarial import EmbeddingAdversary
from textcls.train.augment import drop_tokens
from textcls.train.checks import check_device_options, check_label_options, warn_slow_bf16
from textcls.train.ema import WeightAverage
from textcls.train.engine import Evaluation, Trainer, seed_everything, select_device
from textcls.train.evaluate import evaluate
from textcls.train.logs import MetricsLog
from textcls.train.loss import auto_class_weights, compute_loss
from textcls.train.nblr import report_with_nblr
from textcls.train.progress import announcer, console
from textcls.train.steps import pad_multiple, train_sampler


@dataclass
class TrainResult:
    run_dir: Path
    best_metric: Optional[float]
    steps: int
    seconds: float
    examples_per_second: float
    tokens_per_second: float = 0.0  # padding excluded; 0 where not counted (an ensemble)
    stop_requested: bool = False  # Ctrl-C/SIGTERM came during the last step: the run is whole, the caller stops


class ClassifyTask:
    """Classification (single-label, multi-label, pairs) as the engine's `Task`."""

    def __init__(self, cfg: Config, run_dir: Path, data: PreparedData, device: torch.device,
                 eval_model: torch.nn.Module, saved: Optional[set[str]], base_info: dict):
        self.cfg, self.t, self.run_dir, self.data, self.device = cfg, cfg.train, run_dir, data, device
        self.eval_model = eval_model  # the EMA weights with `train.ema_decay`: evaluated and saved as the best
        self.saved, self.base_info = saved, base_info  # adapter runs store only these keys and name their base
        self.pad_id = data.tokenizer.token_to_id(PAD)
        self.unk_id = data.tokenizer.token_to_id(UNK)
        self.keep_ids = tuple(i for i in special_ids(data.tokenizer).values() if i != self.unk_id)  # [CLS], ...
        self.sampler = train_sampler(lengths_of(data.train), self.t)
        self.batches_per_epoch = len(self.sampler)
        self.class_weights = _class_weights(cfg, data, device)
        self.main = distributed.is_main()

    def batches(self, epoch: int, position: int) -> Iterator[distributed.MicroBatch]:
        # One micro-batch per rank; `position` counts sampler batches over all ranks.
        for mb in distributed.shard_batches(self.data.train, self.sampler, len(self.data.labels), epoch, position,
                                            self.pad_id, pad_multiple(self.t)):
            batch = mb.batch.to(self.device)
            ids = drop_tokens(batch.input_ids, batch.attention_mask, self.t.token_dropout, self.unk_id, self.keep_ids)
            yield dataclasses.replace(mb, batch=dataclasses.replace(batch, input_ids=ids))

    def loss(self, forward: Callable, batch) -> torch.Tensor:
        logits = forward(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        return compute_loss(logits, batch.labels, self.cfg.data.task, self.class_weights, self.t.label_smoothing)

    def evaluate(self) -> Optional[Evaluation]:
        if self.data.valid is None:
            return None
        # Under torchrun every rank evaluates a share and gets the full report (see predict_logits).
        t = self.t
        report = evaluate(self.eval_model, self.data.valid, self.data.labels, t.eval_batch_size, self.device,
                          self.cfg.data.task, t.threshold, t.precision, self.pad_id)
        logged = {k: report[k] for k in ("loss", "accuracy", "macro_f1", "weighted_f1", "micro_f1") if k in report}
        return Evaluation(logged, report[t.metric], report)

    def save(self, step: int, evaluation: Optional[Evaluation], improved: bool) -> None:
        if not self.main:
            return
        if evaluation is None:  # no validation set: the latest weights are the best
            save_best(self.run_dir, self.eval_model, self.saved, step=step, **self.base_info)
        elif improved:
            save_best(self.run_dir, self.eval_model, self.saved, step=step, metric=self.t.metric,
                      best=evaluation.value, **self.base_info)
            save_eval_report(self.run_dir, evaluation.report, step=step)


def train_model(cfg: Config, run_dir: Path, resume: bool = False, quiet: bool = False,
                on_eval: Optional[Callable[[int, dict], bool]] = None) -> TrainResult:
    """Train one classifier per `cfg` into `run_dir` (see loop.train, which also dispatches ensembles)."""
    cfg, resume, device, metrics = start_run(cfg, run_dir, resume)
    t, main = cfg.train, distributed.is_main()
    tokenizer = load_tokenizer(run_dir / TOKENIZER) if resume else _init_from_tokenizer(cfg)
    data = distributed.prepare_once(lambda tok: prepare_data(cfg, tok, quiet=quiet or not main), tokenizer)
    check_label_options(cfg, data.labels)
    if resume:
        _check_resumed_labels(run_dir, data.labels)
    check_model_memory(cfg, data.tokenizer.get_vocab_size(), len(data.labels), device, training=True)
    model, saved, base_info = build_classifier(cfg, run_dir, data, resume, quiet)
    model.to(device)
    average = WeightAverage(model, t.ema_decay) if t.ema_decay else None
    adversary = EmbeddingAdversary(model.embeddings.norm, t.adversarial_eps) if t.adversarial_eps > 0 else None
    task = ClassifyTask(cfg, run_dir, data, device, average.model if average else model, saved, base_info)
    trainer = Trainer(task, model, t, run_dir, device, metrics, resume=resume, quiet=quiet, average=average,
                      adversary=adversary, compile=t.compile, on_eval=on_eval)
    if not resume and main:  # the input has passed every check: the run's first files (after an old run's removal)
        replace_old_run(run_dir)
        save_run_files(run_dir, cfg, data.tokenizer, data.labels)
    state = trainer.fit()
    best = state.best
    if main and on_eval is None and cfg.nblr.weight > 0 and not trainer.stop_requested:
        # rank 0 alone: the run's predictor, no collective evaluation
        mixed = report_with_nblr(cfg, run_dir, data.labels, device, state.best_step, None if quiet else console)
        best = best if mixed is None else mixed
    distributed.barrier()  # return together, after rank 0 has written the final files
    seconds = time.perf_counter() - trainer.started
    return TrainResult(run_dir, best, state.step, seconds, trainer.progress.examples_per_second,
                       trainer.progress.tokens_per_second, stop_requested=trainer.stop_requested)


def _check_resumed_labels(run_dir: Path, labels: list[str]) -> None:
    """A resumed run trains on the label order its checkpoint was trained on, or not at all."""
    stored = load_labels(run_dir / LABELS)
    if stored != labels:
        raise CheckpointError(f"cannot resume {run_dir}: its {LABELS} lists the labels {stored[:8]} but the "
                              f"training data now gives {labels[:8]}; the data or `data.label_names` changed since "
                              "the run started. Restore them, or train without --resume")


def start_run(cfg: Config, run_dir: Path, resume: bool):
    """Join torchrun's process group, check (and maybe clear) the run directory, pick the device, open the
    metrics log (which fails early without tensorboard) and seed; returns (cfg, resume, device, metrics)."""
    if distributed.launched():  # under torchrun: join the process group before touching any file
        distributed.setup(select_device(cfg.train.device))
    with distributed.main_first():  # rank 0 checks (and may clear) the run directory first
        cfg, resume = prepare_run_dir(cfg, run_dir, resume, announcer(distributed.is_main()))
    cfg.output.dir = str(run_dir)
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    reuse_freed_memory()
    device = distributed.setup(select_device(t.device))  # cuda:LOCAL_RANK under torchrun
    check_device_options(cfg, device)
    main = distributed.is_main()  # only rank 0 writes files and prints
    if main:
        warn_slow_bf16(device, t.precision, "train.precision")
    metrics = MetricsLog(run_dir, cfg.output.tensorboard, enabled=main)
    if main:
        remove_stale_temp(run_dir)
    seed_everything(t.seed)
    return cfg, resume, device, metrics


def build_classifier(cfg: Config, run_dir: Path, data: PreparedData, resume: bool, quiet: bool):
    """The classifier (init_from, word vectors, trainable parts) on the CPU; returns (model, saved, base_info):
    adapter runs on a base store only what they train (plus anything the base lacks) and name the base."""
    t, main = cfg.train, distributed.is_main()
    seed_everything(t.seed)
    model = build_model(cfg, data.tokenizer, len(data.labels))
    if cfg.model.init_from and not resume:
        _init_from(model, cfg.model.init_from, quiet=quiet or not main, labels=data.labels)
    vectors = init_word_embeddings(model.embeddings.word, cfg.model.embeddings.pretrained, data.tokenizer.get_vocab(),
                                   cfg.model.embeddings.freeze, load=not resume)
    if vectors and not quiet and main:
        console.print(f"word vectors {cfg.model.embeddings.pretrained}: {vectors.found}/{vectors.vocab_size} "
                      f"vocabulary entries found" + (" (frozen)" if cfg.model.embeddings.freeze else ""),
                      highlight=False)
    trained = apply_trainable(model, t.trainable)
    base = base_reference(cfg.model.init_from) if t.trainable != "all" and cfg.model.init_from else None
    saved = trained | (set(model.state_dict()) - base_keys(base["path"])) if base else None
    if resume and base and read_run_info(run_dir).get("base", base) != base:
        raise CheckpointError(f"cannot resume {run_dir}: its base {base['path']} changed since training started; "
                              "restore that base or train the adapters again")
    if t.trainable != "all" and not quiet and main:
        n, total = count_trainable(model)
        console.print(f"trainable: {t.trainable}, {n:,} of {total:,} parameters ({100 * n / total:.2f}%)",
                      highlight=False)
    return model, saved, {"base": base} if base else {}


def _init_from_tokenizer(cfg: Config):
    """The tokenizer of the run `model.init_from` names (None without one), after checking it is a run."""
    if not cfg.model.init_from:
        return None
    source = Path(cfg.model.init_from)
    if is_ensemble_dir(source):
        raise ConfigError(f"`model.init_from` {source} is an ensemble; start from one of its members, "
                          f"e.g. --set model.init_from={source / member_name(0)}")
    if not (source / WEIGHTS).is_file():
        hint = "; pass the run's folder, not a file in it" if source.is_file() else ""
        raise ConfigError(f"`model.init_from` {source} is not a finished textcls run directory "
                          f"(no {WEIGHTS} in it){hint}")
    return load_tokenizer(source / TOKENIZER)


def check_inputs(cfg: Config, quiet: bool = True) -> None:
    """What `train` checks before it writes its first file, without training: device, data, labels, the
    model with `init_from`, word vectors, trainable parts and class weights. An ensemble checks each
    member's variant this way before any member trains (and before it replaces an old run); `quiet=False`
    shows the progress of preparing its data (a variant's own tokenizer is trained here)."""
    check_device_options(cfg, select_device(cfg.train.device))
    data = prepare_data(cfg, _init_from_tokenizer(cfg), quiet=quiet)
    check_label_options(cfg, data.labels)
    model = build_model(cfg, data.tokenizer, len(data.labels))
    if cfg.model.init_from:
        _init_from(model, cfg.model.init_from, quiet=True)
        if cfg.train.trainable != "all":
            base_reference(cfg.model.init_from)
    init_word_embeddings(model.embeddings.word, cfg.model.embeddings.pretrained, data.tokenizer.get_vocab(),
                         cfg.model.embeddings.freeze, load=True)
    apply_trainable(model, cfg.train.trainable)
    _class_weights(cfg, data, torch.device("cpu"))


def _init_from(model: torch.nn.Module, run_dir_path: str, quiet: bool = False,
               labels: Optional[list[str]] = None) -> None:
    """Start from another run's weights: every tensor except the classification head, which starts fresh
    whatever the labels (the base is a starting point for a new task). Unless `quiet`, a line says so when
    the base has a head, naming its labels and this data's `labels` (see head_note)."""
    src = Path(run_dir_path)
    full = load_full_state(src)
    state = {k: v for k, v in full.items() if not k.startswith("head.")}
    own = model.state_dict()
    dropped = sorted(k for k in state if k.startswith(("embeddings.", "encoder.")) and k not in own)
    if dropped:  # fewer layers, or more sharing: the source's encoder would be cut without a word
        raise ConfigError(f"`model.init_from` {src} has encoder tensors this model lacks ({len(dropped)}, e.g. "
                          f"{dropped[0]}); the `model` section must describe the same architecture as "
                          f"{src / CONFIG} (num_layers, sharing, embeddings)")
    missing = [k for k in own if k not in state and not k.startswith("head.") and not is_adapter_param(k)]
    load_state(model, state, str(src / WEIGHTS), strict=False)
    if missing and not quiet:
        console.print(f"init_from {src}: {len(missing)} tensor(s) not in the source start fresh "
                      f"(e.g. {missing[0]})", highlight=False)
    if labels is not None and not quiet and len(state) < len(full):  # the base has a classifier head
        console.print(head_note(src, labels), highlight=False, markup=False, soft_wrap=True)


def head_note(src: Path, labels: list[str]) -> str:
    """The line that says `model.init_from` left the base's classifier head behind, and why."""
    base = load_labels(src / LABELS) if (src / LABELS).is_file() else None
    fresh = "this run's head starts fresh"
    if base is None:
        return f"init_from {src}: its classifier head is not loaded (it has no {LABELS}); {fresh}"
    if base != labels:
        order = " (the same labels in another order)" if sorted(base) == sorted(labels) else ""
        return (f"init_from {src}: its classifier head is not loaded, since its labels {_shown(base)} differ from "
                f"this data's {_shown(labels)}{order}; {fresh}")
    return (f"init_from {src}: its classifier head is not loaded although its labels match this data's "
            f"{_shown(labels)}: model.init_from always leaves the head out, a base being a starting point for a "
            f"new task; {fresh}")


def _shown(labels: list[str], most: int = 8) -> str:
    return repr(labels) if len(labels) <= most else repr(labels[:most])[:-1] + f", ... ({len(labels)} in all)]"


def _class_weights(cfg: Config, data: PreparedData, device: torch.device) -> Optional[torch.Tensor]:
    spec = cfg.train.class_weights
    if spec is None:
        return None
    n = len(data.labels)
    if spec == "auto":
        counts = torch.zeros(n)
        if cfg.data.task == "multilabel":
            for ids in data.train["labels"]:
                counts[ids] += 1
            neg = len(data.train) - counts
            return (neg.clamp(min=1) / counts.clamp(min=1)).to(device)  # BCE pos_weight
        counts += torch.bincount(torch.as_tensor(data.train["label"]), minlength=n)
        return auto_class_weights(counts).to(device)
    if len(spec) != n:
        raise ConfigError(f"`train.class_weights` has {len(spec)} weights but there are {n} labels ({data.labels})")
    return torch.tensor(spec, dtype=torch.float32, device=device)
