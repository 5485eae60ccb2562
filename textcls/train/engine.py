"""The training engine: one step loop for every task (classification, masked-LM pretraining, ...).

A task supplies what is particular to it, through the `Task` protocol:

    batches(epoch, position)  this rank's micro-batches of an epoch from sampler batch `position` on
    loss(forward, batch)      a micro-batch's loss; `forward` runs the model under the run's precision
    evaluate()                an `Evaluation` (the metrics to log, the number the best weights are chosen
                              by), or None where there is nothing to evaluate
    save(step, evaluation, improved)  keep what an evaluation decided (best weights, reports)

`Trainer` owns the rest: precision, gradient accumulation (with DDP's all-reduce on the last
micro-batch only), clipping, the lr schedule, EMA weights, adversarial passes, progress and
`metrics.jsonl`, the evaluation cadence with early stopping, `last/` checkpoints with exact resume,
and SIGINT/SIGTERM.

Position bookkeeping: an epoch's batch order is a pure function of (seed, epoch), and `last/` records
(epoch, micro-batch position, step) at optimizer-step boundaries together with model, optimizer,
scheduler and RNG states. A resumed run restores them and asks the task for the batches from the
recorded position on, so it produces the same weights as an uninterrupted one.

Evaluation runs every `eval_every` steps and/or at each epoch end, and always after the last step;
`checkpoint_every` adds checkpoints between evaluations. With `time_budget_seconds` the loop ends at the
first step boundary past that many seconds of `fit()`, evaluating and saving as after the last step.
The step count comes from `steps.plan_steps`, which `textcls schedule` uses too.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

import numpy as np
import torch

from textcls.config import TrainConfig
from textcls.device import autocast_context
from textcls.errors import CheckpointError, ConfigError, DivergedError
from textcls.metrics import is_better
from textcls.run.layout import LAST, is_ensemble_dir
from textcls.run.members import member_name
from textcls.run.store import keep_step_checkpoint
from textcls.train import distributed
from textcls.train.checkpoint import load_checkpoint, rng_state, save_checkpoint
from textcls.train.logs import MetricsLog
from textcls.train.optim import build_optimizer, optimizer_step
from textcls.train.progress import TrainProgress, console
from textcls.train.schedules import lr_multiplier
from textcls.train.steps import plan_steps


class Interrupted(Exception):
    """Raised after a resumable checkpoint was saved on SIGINT/SIGTERM (CLI exit code 130)."""

    def __init__(self, run_dir: Path):
        if is_ensemble_dir(run_dir):
            where = f"each member's resumable checkpoint is in {run_dir / member_name('K') / LAST}"
        else:
            where = f"a resumable checkpoint is in {run_dir / LAST}"
        super().__init__(f"interrupted; {where} (continue with --resume)")
        self.run_dir = run_dir


class StopFlag:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag the loop checks at step boundaries (a signal ignored when the
    process started, as SIGHUP under `nohup`, stays ignored)."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is None or signal.getsignal(sig) == signal.SIG_IGN:
                continue
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


@dataclass
class Evaluation:
    """What a task's evaluation gives the loop."""

    metrics: dict[str, Any]  # logged in metrics.jsonl after step, epoch, kind and lr
    value: Optional[float] = None  # the `metric` the best weights are chosen by; None: no best is kept
    report: Optional[dict] = None  # the task's full report, handed back to its `save`


class Task(Protocol):
    batches_per_epoch: int  # sampler batches (all ranks together) in an epoch

    def batches(self, epoch: int, position: int) -> Iterable[Any]:
        """This rank's micro-batches of `epoch` from sampler batch `position` on. Each has `batch` (given
        to `loss`), `active` (False: a stand-in whose loss counts zero), `consumed` (sampler batches,
        all ranks), `examples` and `tokens` (for the progress rates)."""

    def loss(self, forward: Callable[..., Any], batch: Any) -> torch.Tensor:
        """The micro-batch's mean loss; `forward` is the (DDP, compiled) model under the run's precision."""

    def evaluate(self) -> Optional[Evaluation]:
        """Evaluate the current weights (every rank calls it together); None: nothing to evaluate."""

    def save(self, step: int, evaluation: Optional[Evaluation], improved: bool) -> None:
        """Keep what the evaluation at `step` decided (every rank calls it; the task writes on rank 0)."""


@dataclass
class LoopState:
    """Where the loop is; `last/state.json` holds it (plus the DDP layout) at optimizer-step boundaries."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # sampler batches of `epoch` done, all ranks together
    total_steps: int = 0
    best: Optional[float] = None
    best_step: Optional[int] = None
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    loss_window: list = field(default_factory=lambda: [0.0, 0])  # (sum of step losses, steps) not yet logged

    def to_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "position": self.position, "best": self.best,
                "best_step": self.best_step, "bad_evals": self.bad_evals, "total_steps": self.total_steps,
                "loss_window": [float(self.loss_window[0]), self.loss_window[1]]}  # the sum is a device tensor

    @classmethod
    def from_dict(cls, saved: dict) -> "LoopState":
        window = saved.get("loss_window", [saved.get("train_loss", 0.0), saved.get("train_n", 0)])  # older pretrain
        return cls(saved["step"], saved["epoch"], saved["position"], saved["total_steps"], saved.get("best"),
                   saved.get("best_step"), saved.get("bad_evals", 0), list(window))


STATIC_SHAPES = 64  # graphs `compile: static` keeps: 512 / 16 lengths, each with a full and a last, shorter batch


def compile_model(model: torch.nn.Module, setting: bool | str, device: torch.device):
    """`train.compile`: false, the model itself; true, torch.compile with dynamic shapes; "static", a graph per
    batch shape (room for STATIC_SHAPES of them), replayed as CUDA graphs on a GPU (mode reduce-overhead)."""
    if not setting:
        return model
    if setting != "static":
        return torch.compile(model, dynamic=True)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, STATIC_SHAPES)
    return torch.compile(model, dynamic=False, mode="reduce-overhead" if device.type == "cuda" else None)


class Trainer:
    """Trains `model` on `task` per `cfg` into `run_dir`; `fit()` runs the loop, resuming from `last/` when asked.

    Options: `average` (EMA weights, updated after each step and checkpointed), `adversary` (a second,
    perturbed pass per micro-batch: perturb()/clear()), `compile`, `log_train_loss` (True: a `train`
    record every `log_every` steps; False: the mean loss since the last evaluation goes into the
    evaluation record as `train_loss`), `on_eval(step, record)` (True stops training), `stop_flag`
    (the SIGINT/SIGTERM flag's class)."""

    def __init__(self, task: Task, model: torch.nn.Module, cfg: TrainConfig, run_dir: Path, device: torch.device,
                 metrics: MetricsLog, *, resume: bool = False, quiet: bool = False, average: Any = None,
                 adversary: Any = None, compile: bool | str = False, log_train_loss: bool = True,
                 on_eval: Optional[Callable[[int, dict], bool]] = None, stop_flag: Callable[[], Any] = StopFlag):
        self.task, self.model, self.cfg, self.run_dir, self.device = task, model, cfg, run_dir, device
        self.metrics, self.resume, self.quiet, self.average, self.adversary = metrics, resume, quiet, average, adversary
        self.log_train_loss, self.on_eval, self.stop_flag = log_train_loss, on_eval, stop_flag
        self.main = distributed.is_main()  # only rank 0 writes files and prints
        self.wrapped = distributed.wrap_model(model, device)  # DDP under torchrun; save/eval/clip use `model`
        self.compiled = compile_model(self.wrapped, compile, device)  # the same parameters
        self.cuda_graphs = compile == "static" and device.type == "cuda"
        if resume:  # keep the checkpoint's global batch (world size x grad_accum) at any world size
            cfg.grad_accum = distributed.grad_accum_on_resume(run_dir / LAST, cfg.grad_accum)
        self.plan = plan_steps(cfg, task.batches_per_epoch, distributed.world_size())
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_multiplier(cfg, self.plan.total_steps))
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" and device.type == "cuda" else None
        self.state = LoopState(total_steps=self.plan.total_steps)
        self.saved_step: Optional[int] = None  # step of the newest `last/`
        self.stop_requested = False  # SIGINT/SIGTERM came during the last step: the run is whole, the caller stops

    def fit(self) -> LoopState:
        """Train to the last step (or early stop); raises Interrupted after saving `last/` on a signal."""
        if self.resume:
            self._restore()
        s = self.state
        self.progress = TrainProgress(s.total_steps, s.step, self.cfg.log_every, enabled=not self.quiet and self.main)
        self.started = time.perf_counter()
        self.model.train()
        stop = False
        with self.stop_flag() as flag:
            try:
                while s.step < s.total_steps and not stop:
                    stop = self._run_epoch(flag)
            finally:
                self.progress.close()
                self.metrics.close()
            self.stop_requested = flag.raised
        return s

    def _run_epoch(self, flag) -> bool:
        """The rest of the current epoch (or up to the last step); True when training should stop."""
        s, t = self.state, self.cfg
        epoch, micro, loss_sum, examples, tokens = s.epoch, 0, 0.0, 0, 0
        for mb in self.task.batches(epoch, s.position):  # one micro-batch per rank
            epoch_done = s.position + mb.consumed >= self.plan.batches_per_epoch
            sync = (micro + 1) % t.grad_accum == 0 or epoch_done
            loss = self._forward_backward(mb, sync)
            micro += 1
            loss_sum = loss_sum + loss.detach()  # stays on the device: .item() here would stall a GPU
            examples, tokens = examples + mb.examples, tokens + mb.tokens
            s.position += mb.consumed
            if not sync:
                continue
            self._optimizer_step(epoch, loss_sum / micro, examples, tokens)
            micro, loss_sum, examples, tokens = 0, 0.0, 0, 0
            if epoch_done:
                s.epoch, s.position = epoch + 1, 0
            out_of_time = not (s.step >= s.total_steps) and self._out_of_time()
            finished = s.step >= s.total_steps or out_of_time  # out of time: end here as after the last step
            eval_due = bool(t.eval_every) and s.step % t.eval_every == 0
            stop = False
            if (epoch_done and t.eval_each_epoch) or finished or eval_due:
                stop = self.evaluate("epoch" if epoch_done else "step")
            elif epoch_done or (t.checkpoint_every and s.step % t.checkpoint_every == 0):
                self.checkpoint()
            if not finished and distributed.any_true(flag.raised):  # every rank stops at the same step
                if self.saved_step != s.step:
                    self.checkpoint()
                raise Interrupted(self.run_dir)
            if stop or finished or epoch_done:
                return stop or out_of_time
        return False

    def _out_of_time(self) -> bool:
        """`train.time_budget_seconds` has passed since fit() started (on any rank: all stop together)."""
        budget = self.cfg.time_budget_seconds
        if budget is None:
            return False
        late = distributed.any_true(time.perf_counter() - self.started >= budget)
        if late:
            self.progress.message(f"time budget of {budget:g}s spent: training stops at step {self.state.step} of "
                                  f"{self.state.total_steps}")
        return late

    def _forward_backward(self, mb, sync: bool) -> torch.Tensor:
        """A micro-batch's loss, its gradient added to the parameters' (all-reduced when `sync`). With
        adversarial training twice: the clean pass, then the pass with perturbed embeddings."""
        def once() -> torch.Tensor:
            loss = self.task.loss(self._forward, mb.batch)
            if not mb.active:  # a stand-in: join the all-reduce with a zero gradient
                loss = loss * 0.0
            scaled = loss / self.cfg.grad_accum
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            return loss

        if self.adversary is None:
            with distributed.sync_gradients(self.wrapped, sync):
                return once()
        with distributed.sync_gradients(self.wrapped, False):  # the all-reduce waits for the second pass
            loss = once()
        self.adversary.perturb()
        try:
            with distributed.sync_gradients(self.wrapped, sync):
                once()
        finally:
            self.adversary.clear()
        return loss

    def _forward(self, *args, **kwargs):
        if self.cuda_graphs:  # a new step: the graphs' earlier outputs (already read into the loss) may be reused
            torch.compiler.cudagraph_mark_step_begin()
        with autocast_context(self.device, self.cfg.precision):
            return self.compiled(*args, **kwargs)

    def _optimizer_step(self, epoch: int, loss: torch.Tensor, examples: int, tokens: int) -> None:
        """Step (clip, unscale), schedule, EMA, then progress and the train-loss log."""
        s, t = self.state, self.cfg
        lr_used = self.scheduler.get_last_lr()[0]
        optimizer_step(self.model, self.optimizer, self.scaler, t.max_grad_norm)
        self.scheduler.step()
        if self.average:
            self.average.update()
        s.step += 1
        self.progress.update(s.step, loss, self.scheduler.get_last_lr()[0], examples, tokens)
        s.loss_window = [s.loss_window[0] + loss, s.loss_window[1] + 1]
        if self.log_train_loss and s.step % t.log_every == 0:  # every rank: the mean over ranks is a collective
            self.metrics.write({"step": s.step, "epoch": epoch, "kind": "train", "loss": self._take_loss(),
                                "lr": lr_used})

    def _take_loss(self) -> float:
        """The mean step loss (over ranks) since it was last taken; a collective. Not finite: DivergedError."""
        total, n = self.state.loss_window
        self.state.loss_window = [0.0, 0]
        loss = distributed.mean(float(total) / max(n, 1))
        if not math.isfinite(loss):
            self._diverged(f"the training loss is {loss}")
        return loss

    def _diverged(self, what: str) -> None:
        """Stop before anything of the diverged weights is saved (the best weights and `last/` stay as they were)."""
        raise DivergedError(f"training diverged by step {self.state.step}: {what}; nothing from this point on was "
                            f"saved. Train again with a lower `train.lr` (now {self.cfg.lr:g}), keep "
                            "`train.max_grad_norm` set, or check the input for extreme values")

    def evaluate(self, kind: str) -> bool:
        """Evaluate, log, keep the best, checkpoint; returns True when early stopping (or `on_eval`) says stop."""
        s, t = self.state, self.cfg
        train_loss = {} if self.log_train_loss else {"train_loss": self._take_loss()}
        finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
        if not finite.item():  # one host sync per evaluation, not one per tensor
            self._diverged("the weights are no longer finite numbers")
        evaluation = self.task.evaluate()
        if evaluation is None:  # nothing to evaluate here: the task keeps the latest weights
            self.task.save(s.step, None, improved=False)
            self.checkpoint()
            return False
        record = {"step": s.step, "epoch": s.epoch, "kind": kind, "lr": self.scheduler.get_last_lr()[0],
                  **train_loss, **evaluation.metrics}
        self.metrics.write(record)
        value = evaluation.value
        improved = value is not None and is_better(t.metric, value, s.best)
        if improved:
            s.best, s.best_step, s.bad_evals = value, s.step, 0
        elif value is not None:
            s.bad_evals += 1
        self.task.save(s.step, evaluation, improved)
        stop_requested = bool(self.on_eval(s.step, record)) if self.on_eval else False
        self.progress.message(f"eval step {s.step}: " + " ".join(
            f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float) and k != "lr")
            + (" (best)" if improved else ""))
        self.checkpoint()
        patience_out = t.patience is not None and s.bad_evals >= t.patience
        if patience_out:
            self.progress.message(f"early stopping at step {s.step}: {t.metric} has not improved in {t.patience} "
                                  f"evaluation(s); best {s.best:.4f} at step {s.best_step}")
        return stop_requested or patience_out

    def checkpoint(self) -> None:
        """Save `last/` (and a `checkpoint-{step}/` copy with `save_total_limit`); every rank calls it together."""
        s, t = self.state, self.cfg
        self.saved_step = s.step
        rng_ranks = distributed.gather_objects(rng_state())  # a collective: every rank checkpoints together
        if not self.main:
            return
        save_checkpoint(self.run_dir / LAST, self.model, self.optimizer, self.scheduler,
                        {**s.to_dict(), **distributed.layout_state(t.grad_accum)}, self.scaler,
                        self.average.state_dict() if self.average else None, rng_ranks)
        if t.save_total_limit:
            keep_step_checkpoint(self.run_dir, s.step, t.save_total_limit, s.best_step)

    def _restore(self) -> None:
        """Load `last/`: weights, optimizer, scheduler, scaler, EMA, RNG and the loop position."""
        saved = load_checkpoint(self.run_dir / LAST, self.model, self.optimizer, self.scheduler, self.scaler,
                                required=("step", "epoch", "position", "total_steps"),
                                average=self.average.model if self.average else None, rank=distributed.rank(),
                                world=distributed.world_size())
        if saved["total_steps"] != self.plan.total_steps:
            raise CheckpointError(
                f"cannot resume {self.run_dir} exactly: the run was planned for {saved['total_steps']} steps but "
                f"the data now gives {self.plan.total_steps} (the training file changed?); train without --resume")
        self.state = s = LoopState.from_dict(saved)
        self.saved_step = s.step
        if self.average:
            self.average.updates = s.step
        self.metrics.truncate_after(s.step)
        if self.main:
            console.print(f"resuming {self.run_dir} at step {s.step}/{s.total_steps} "
                          f"(epoch {s.epoch}, batch {s.position})", highlight=False, soft_wrap=True)
