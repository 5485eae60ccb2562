"""The training loop: batches -> loss -> AdamW steps, evaluation, best/last checkpoints, exact resume.

Position bookkeeping: an epoch's batch order is a pure function of (seed, epoch), and `last/`
records (epoch, micro-batch position, step) at optimizer-step boundaries together with model,
optimizer, scheduler and RNG states. `--resume` restores them and skips the batches already done
without reading them, so a resumed run produces the same weights as an uninterrupted one.

Evaluation runs every `eval_every` steps and/or at each epoch end, and always after the last step;
the best weights (by `train.metric`) go to `model.safetensors`, step checkpoints to
`checkpoint-{step}/` when `save_total_limit` is set. The step count comes from `steps.plan_steps`,
which `textcls schedule` uses too; logs go through `logs.MetricsLog`.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from textcls.config import Config
from textcls.data.batching import lengths_of
from textcls.data.pipeline import PreparedData, prepare_data
from textcls.data.tokenizer import PAD, UNK, load_tokenizer, special_ids
from textcls.device import autocast_context
from textcls.errors import CheckpointError, ConfigError
from textcls.metrics import METRICS, is_better
from textcls.model.trainable import apply_trainable, count_trainable
from textcls.model.word_vectors import init_word_embeddings
from textcls.rundir import (
    base_keys,
    base_reference,
    build_model,
    load_full_state,
    load_state,
    read_run_info,
    save_eval_report,
    save_run_files,
)
from textcls.train import distributed
from textcls.train.adversarial import EmbeddingAdversary
from textcls.train.augment import drop_tokens
from textcls.train.checkpoint import (
    keep_step_checkpoint,
    load_checkpoint,
    remove_stale_temp,
    rng_state,
    save_best,
    save_checkpoint,
)
from textcls.train.checks import check_device_options, check_label_options, warn_slow_bf16
from textcls.train.ema import WeightAverage
from textcls.train.ensemble import is_ensemble_dir, train_ensemble
from textcls.train.evaluate import evaluate
from textcls.train.logs import MetricsLog
from textcls.train.loss import auto_class_weights, compute_loss
from textcls.train.optim import build_optimizer, is_adapter_param, optimizer_step
from textcls.train.progress import TrainProgress, console
from textcls.train.run_dir import prepare_run_dir, replace_old_run
from textcls.train.schedules import lr_multiplier
from textcls.train.steps import plan_steps, train_sampler


class Interrupted(Exception):
    """Raised after a resumable checkpoint was saved on SIGINT/SIGTERM (CLI exit code 130)."""

    def __init__(self, run_dir: Path):
        if (run_dir / "ensemble.json").is_file():
            where = f"each member's resumable checkpoint is in {run_dir / 'members'}/K/last"
        else:
            where = f"a resumable checkpoint is in {run_dir / 'last'}"
        super().__init__(f"interrupted; {where} (continue with --resume)")
        self.run_dir = run_dir


@dataclass
class TrainResult:
    run_dir: Path
    best_metric: Optional[float]
    steps: int
    seconds: float
    examples_per_second: float
    tokens_per_second: float = 0.0  # padding excluded; 0 where not counted (an ensemble)
    stop_requested: bool = False  # Ctrl-C/SIGTERM came during the last step: the run is whole, the caller stops


def select_device(spec: str, name: str = "`train.device`") -> torch.device:
    """auto (CUDA when there is one), cpu, cuda or cuda:N; `name` is how errors refer to the setting."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{name} is {spec!r} but no CUDA device is available; use `auto` or `cpu`")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{name} {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{name} {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{name} is {spec!r} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                          f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks at step boundaries."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _init_from_tokenizer(cfg: Config):
    """The tokenizer of the run `model.init_from` names (None without one), after checking it is a run."""
    if not cfg.model.init_from:
        return None
    source = Path(cfg.model.init_from)
    if is_ensemble_dir(source):
        raise ConfigError(f"`model.init_from` {source} is an ensemble; start from one of its members, "
                          f"e.g. --set model.init_from={source / 'members' / '0'}")
    if not (source / "model.safetensors").is_file():
        hint = "; pass the run's folder, not a file in it" if source.is_file() else ""
        raise ConfigError(f"`model.init_from` {source} is not a finished textcls run directory "
                          f"(no model.safetensors in it){hint}")
    return load_tokenizer(source / "tokenizer.json")


def check_inputs(cfg: Config) -> None:
    """What `train` checks before it writes its first file, without training: device, data, labels, the
    model with `init_from`, word vectors, trainable parts and class weights. An ensemble checks each
    member's variant this way before any member trains (and before it replaces an old run)."""
    check_device_options(cfg, select_device(cfg.train.device))
    data = prepare_data(cfg, _init_from_tokenizer(cfg))
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


def _init_from(model: torch.nn.Module, run_dir_path: str, quiet: bool = False) -> None:
    """Start from another run's weights: every tensor except the classification head."""
    src = Path(run_dir_path)
    state = {k: v for k, v in load_full_state(src).items() if not k.startswith("head.")}
    own = model.state_dict()
    dropped = sorted(k for k in state if k.startswith(("embeddings.", "encoder.")) and k not in own)
    if dropped:  # fewer layers, or more sharing: the source's encoder would be cut without a word
        raise ConfigError(f"`model.init_from` {src} has encoder tensors this model lacks ({len(dropped)}, e.g. "
                          f"{dropped[0]}); the `model` section must describe the same architecture as "
                          f"{src / 'config.yaml'} (num_layers, sharing, embeddings)")
    missing = [k for k in own if k not in state and not k.startswith("head.") and not is_adapter_param(k)]
    load_state(model, state, str(src / "model.safetensors"), strict=False)
    if missing and not quiet:
        console.print(f"init_from {src}: {len(missing)} tensor(s) not in the source start fresh "
                      f"(e.g. {missing[0]})", highlight=False)


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


def _with_ngram(cfg: Config, run_dir: Path, data: PreparedData, device: torch.device, best_step: Optional[int],
                quiet: bool) -> Optional[float]:
    """Fit the n-gram model (`ngram.weight` > 0) and report the best weights mixed with it; the metric.
    Rank 0 alone runs this, so the evaluation is a plain loop, not the collective `evaluate`."""
    from textcls.metrics import report_from_probabilities
    from textcls.predict import predict_probabilities
    from textcls.rundir import load_run, save_eval_report
    from textcls.train.ngram import fit_run_ngram, mixed_report

    valid, ngram_probs, alone = fit_run_ngram(cfg, run_dir, data.labels, None if quiet else console)
    if valid is None:
        return None
    run = load_run(run_dir, device=device)
    (_, share), run.ngram = run.ngram, None
    t = cfg.train
    probs = predict_probabilities(run, valid.texts, valid.pairs, t.eval_batch_size, device, t.precision)
    without = report_from_probabilities(probs, valid.targets, data.labels, cfg.data.task, t.threshold)
    mixed = (1 - share) * probs + share * ngram_probs
    report = report_from_probabilities(mixed, valid.targets, data.labels, cfg.data.task, t.threshold)
    report["without_ngram"] = {k: without[k] for k in METRICS if k in without}
    save_eval_report(run_dir, mixed_report(report, share, alone), step=best_step)
    if not quiet:
        console.print(f"valid {t.metric} {report[t.metric]:.4f} with the n-gram model, "
                      f"{report['without_ngram'][t.metric]:.4f} without", highlight=False)
    return report[t.metric]


def train(cfg: Config, output: Optional[Path] = None, resume: bool = False, quiet: bool = False,
          on_eval: Optional[Callable[[int, dict], bool]] = None) -> TrainResult:
    """Train per `cfg` into `output` (default output.dir).

    `on_eval(step, record)` is called after each evaluation with the logged metrics; returning True
    stops training there (used by `textcls tune` for pruning and its time budget). With
    `train.ensemble` > 1 the members are trained by train/ensemble.py (one after another, or
    `train.ensemble_workers` at a time in child processes); `textcls tune`
    (with `on_eval`) trains single models and keeps the ensemble size for its best config.
    """
    run_dir = Path(output or cfg.output.dir)
    if on_eval is None and (cfg.train.ensemble > 1 or (resume and is_ensemble_dir(run_dir))):
        return train_ensemble(cfg, run_dir, resume=resume, quiet=quiet)
    if distributed.launched():  # under torchrun: join the process group before touching any file
        distributed.setup(select_device(cfg.train.device))
    with distributed.main_first():  # rank 0 checks (and may clear) the run directory first
        cfg, resume = prepare_run_dir(cfg, run_dir, resume)
    cfg.output.dir = str(run_dir)
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = distributed.setup(select_device(t.device))  # cuda:LOCAL_RANK under torchrun
    check_device_options(cfg, device)
    main = distributed.is_main()  # only rank 0 writes files and prints
    if main:
        warn_slow_bf16(device, t.precision, "train.precision")
    metrics = MetricsLog(run_dir, cfg.output.tensorboard, enabled=main)  # fails early without tensorboard
    if main:
        remove_stale_temp(run_dir)
    seed_everything(t.seed)

    tokenizer = load_tokenizer(run_dir / "tokenizer.json") if resume else _init_from_tokenizer(cfg)
    data = distributed.prepare_once(lambda tok: prepare_data(cfg, tok), tokenizer)
    check_label_options(cfg, data.labels)
    pad_id = data.tokenizer.token_to_id(PAD)
    unk_id = data.tokenizer.token_to_id(UNK)
    keep_ids = tuple(i for i in special_ids(data.tokenizer).values() if i != unk_id)  # [CLS], [SEP], ...

    seed_everything(t.seed)
    model = build_model(cfg, data.tokenizer, len(data.labels))
    if cfg.model.init_from and not resume:
        _init_from(model, cfg.model.init_from)
    vectors = init_word_embeddings(model.embeddings.word, cfg.model.embeddings.pretrained, data.tokenizer.get_vocab(),
                                   cfg.model.embeddings.freeze, load=not resume)
    if vectors and not quiet and main:
        console.print(f"word vectors {cfg.model.embeddings.pretrained}: {vectors.found}/{vectors.vocab_size} "
                      f"vocabulary entries found" + (" (frozen)" if cfg.model.embeddings.freeze else ""),
                      highlight=False)
    # Adapter runs on a base store only what they train (plus anything the base lacks) and name the base.
    trained = apply_trainable(model, t.trainable)
    base = base_reference(cfg.model.init_from) if t.trainable != "all" and cfg.model.init_from else None
    saved = trained | (set(model.state_dict()) - base_keys(base["path"])) if base else None
    base_info = {"base": base} if base else {}
    if resume and base and read_run_info(run_dir).get("base", base) != base:
        raise CheckpointError(f"cannot resume {run_dir}: its base {base['path']} changed since training started; "
                              "restore that base or train the adapters again")
    if t.trainable != "all" and not quiet and main:
        n, total = count_trainable(model)
        console.print(f"trainable: {t.trainable}, {n:,} of {total:,} parameters ({100 * n / total:.2f}%)",
                      highlight=False)
    model.to(device)
    average = WeightAverage(model, t.ema_decay) if t.ema_decay else None
    eval_model = average.model if average else model  # what is evaluated and saved as the best weights
    train_model = distributed.wrap_model(model, device)  # DDP under torchrun; save/eval use `model`
    forward = torch.compile(train_model, dynamic=True) if t.compile else train_model  # same parameters
    adversary = EmbeddingAdversary(model.embeddings.norm, t.adversarial_eps) if t.adversarial_eps > 0 else None
    if resume:  # keep the checkpoint's global batch (world size x grad_accum) at any world size
        t.grad_accum = distributed.grad_accum_on_resume(run_dir / "last", t.grad_accum)

    sampler = train_sampler(lengths_of(data.train), t)
    plan = plan_steps(t, len(sampler), distributed.world_size())
    total_steps = plan.total_steps
    optimizer = build_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(t, total_steps))
    scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" and device.type == "cuda" else None
    class_weights = _class_weights(cfg, data, device)
    if not resume and main:  # the input has passed every check: the run's first files (after an old run's removal)
        replace_old_run(run_dir)
        save_run_files(run_dir, cfg, data.tokenizer, data.labels)

    state = {"step": 0, "epoch": 0, "position": 0, "best": None, "best_step": None, "bad_evals": 0,
             "total_steps": total_steps, "loss_window": [0.0, 0]}  # train loss (sum, steps) since the last log
    if resume:
        state = load_checkpoint(run_dir / "last", model, optimizer, scheduler, scaler,
                                required=("step", "epoch", "position", "total_steps"),
                                average=average.model if average else None, rank=distributed.rank(),
                                world=distributed.world_size())
        if average:
            average.updates = state["step"]
        if state.get("total_steps") != total_steps:
            raise CheckpointError(
                f"cannot resume {run_dir} exactly: the run was planned for {state.get('total_steps')} steps but "
                f"the data now gives {total_steps} (the training file changed?); train without --resume")
        metrics.truncate_after(state["step"])
    state.update(distributed.layout_state(t.grad_accum))
    if resume and main:
        console.print(f"resuming {run_dir} at step {state['step']}/{total_steps} "
                      f"(epoch {state['epoch']}, batch {state['position']})", highlight=False, soft_wrap=True)
    progress = TrainProgress(total_steps, state["step"], t.log_every, enabled=not quiet and main)
    started = time.perf_counter()
    saved_step = [state["step"] if resume else None]  # step of the newest `last/`

    def checkpoint() -> None:
        saved_step[0] = state["step"]
        rng_ranks = distributed.gather_objects(rng_state())  # a collective: every rank checkpoints together
        if not main:
            return
        window = state["loss_window"]  # its sum is a device tensor between logs (no host sync per step)
        save_checkpoint(run_dir / "last", model, optimizer, scheduler,
                        {**state, "loss_window": [float(window[0]), window[1]]}, scaler,
                        average.state_dict() if average else None, rng_ranks)
        if t.save_total_limit:
            keep_step_checkpoint(run_dir, state["step"], t.save_total_limit, state["best_step"])

    def run_eval(kind: str) -> bool:
        """Evaluate, keep the best weights; returns True when early stopping says stop."""
        if data.valid is None:
            if main:
                save_best(run_dir, eval_model, saved, step=state["step"], **base_info)
            checkpoint()
            return False
        # Under torchrun every rank evaluates a share and gets the full report (see predict_logits).
        report = evaluate(eval_model, data.valid, data.labels, t.eval_batch_size, device, cfg.data.task,
                          t.threshold, t.precision, pad_id)
        value = report[t.metric]
        record = {"step": state["step"], "epoch": state["epoch"], "kind": kind, "lr": scheduler.get_last_lr()[0],
                  **{k: report[k] for k in ("loss", "accuracy", "macro_f1", "weighted_f1", "micro_f1") if k in report}}
        metrics.write(record)
        improved = is_better(t.metric, value, state["best"])
        if improved:
            state.update(best=value, best_step=state["step"], bad_evals=0)
            if main:
                save_best(run_dir, eval_model, saved, step=state["step"], metric=t.metric, best=value, **base_info)
                save_eval_report(run_dir, report, step=state["step"])
        else:
            state["bad_evals"] += 1
        stop_requested = bool(on_eval(state["step"], record)) if on_eval else False
        progress.message(f"eval step {state['step']}: " + " ".join(
            f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float) and k != "lr")
            + (" (best)" if improved else ""))
        checkpoint()
        patience_out = t.patience is not None and state["bad_evals"] >= t.patience
        if patience_out:
            progress.message(f"early stopping at step {state['step']}: {t.metric} has not improved in {t.patience} "
                             f"evaluation(s); best {state['best']:.4f} at step {state['best_step']}")
        return stop_requested or patience_out

    def forward_backward(input_ids: torch.Tensor, batch, active: bool, sync: bool) -> torch.Tensor:
        """A micro-batch's loss, its gradient added to the parameters' (all-reduced when `sync`). With
        adversarial training twice: the clean pass, then the pass with perturbed embeddings."""
        def once() -> torch.Tensor:
            with autocast_context(device, t.precision):
                logits = forward(input_ids, batch.attention_mask, batch.token_type_ids)
            loss = compute_loss(logits, batch.labels, cfg.data.task, class_weights, t.label_smoothing)
            if not active:  # a stand-in: join the all-reduce with a zero gradient
                loss = loss * 0.0
            scaled = loss / t.grad_accum
            (scaler.scale(scaled) if scaler else scaled).backward()
            return loss

        if adversary is None:
            with distributed.sync_gradients(train_model, sync):
                return once()
        with distributed.sync_gradients(train_model, False):  # the all-reduce waits for the second pass
            loss = once()
        adversary.perturb()
        try:
            with distributed.sync_gradients(train_model, sync):
                once()
        finally:
            adversary.clear()
        return loss

    model.train()
    stop = False
    with _StopFlag() as flag:
        try:
            while state["step"] < total_steps and not stop:
                epoch = state["epoch"]
                micro, loss_sum, n_examples, n_tokens = 0, 0.0, 0, 0
                # One micro-batch per rank; `position` counts sampler batches over all ranks.
                batches = distributed.shard_batches(data.train, sampler, len(data.labels), epoch, state["position"],
                                                    pad_id, t.pad_to_multiple_of)
                for micro_batch in batches:
                    batch = micro_batch.batch.to(device)
                    epoch_done = state["position"] + micro_batch.consumed >= plan.batches_per_epoch
                    sync = (micro + 1) % t.grad_accum == 0 or epoch_done
                    input_ids = drop_tokens(batch.input_ids, batch.attention_mask, t.token_dropout, unk_id, keep_ids)
                    loss = forward_backward(input_ids, batch, micro_batch.active, sync)
                    micro += 1
                    loss_sum = loss_sum + loss.detach()  # stays on the device: .item() here would stall a GPU
                    n_examples += micro_batch.examples
                    n_tokens += micro_batch.tokens
                    state["position"] += micro_batch.consumed
                    if not sync:
                        continue
                    lr_used = scheduler.get_last_lr()[0]
                    optimizer_step(model, optimizer, scaler, t.max_grad_norm)
                    scheduler.step()
                    if average:
                        average.update()
                    state["step"] += 1
                    step = state["step"]
                    progress.update(step, loss_sum / micro, scheduler.get_last_lr()[0], n_examples, n_tokens)
                    window = state.setdefault("loss_window", [0.0, 0])
                    window[0], window[1] = window[0] + loss_sum / micro, window[1] + 1
                    if step % t.log_every == 0:  # every rank gets here: the mean over ranks is a collective
                        metrics.write({"step": step, "epoch": epoch, "kind": "train",
                                       "loss": distributed.mean(float(window[0]) / window[1]), "lr": lr_used})
                        state["loss_window"] = [0.0, 0]
                    micro, loss_sum, n_examples, n_tokens = 0, 0.0, 0, 0
                    if epoch_done:
                        state["epoch"], state["position"] = epoch + 1, 0
                    finished = step >= total_steps
                    eval_due = bool(t.eval_every) and step % t.eval_every == 0
                    if (epoch_done and t.eval_each_epoch) or finished or eval_due:
                        stop = run_eval("epoch" if epoch_done else "step")
                    elif epoch_done or (t.checkpoint_every and step % t.checkpoint_every == 0):
                        checkpoint()
                    if not finished and distributed.any_true(flag.raised):  # every rank stops at the same step
                        if saved_step[0] != step:
                            checkpoint()
                        raise Interrupted(run_dir)
                    if stop or finished or epoch_done:
                        break
        finally:
            progress.close()
            metrics.close()
    if main and on_eval is None and cfg.ngram.weight > 0 and not flag.raised:
        mixed = _with_ngram(cfg, run_dir, data, device, state.get("best_step"), quiet)
        state["best"] = state["best"] if mixed is None else mixed
    distributed.barrier()  # return together, after rank 0 has written the final files
    seconds = time.perf_counter() - started
    return TrainResult(run_dir, state["best"], state["step"], seconds, progress.examples_per_second,
                       progress.tokens_per_second, stop_requested=flag.raised)
