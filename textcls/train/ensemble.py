"""`train.ensemble: N`: N members trained with seeds seed .. seed+N-1, their probabilities averaged.

Small datasets leave a model trained from scratch with a large seed-to-seed spread; averaging a few
members' probabilities removes much of it. The run directory holds the shared files at the top and
one complete, ordinary run directory per member:

    RUN/config.yaml, tokenizer.json, labels.json, run.json, ensemble.json
    RUN/members/0/ ... RUN/members/N-1/     (each: config.yaml, model.safetensors, last/, ...)

Every member uses the top-level tokenizer (trained once) and the same validation split, so
`eval`/`predict` tokenize once and run the members on the same ids. `train.ensemble_variants` gives
members other settings; a member whose variant sets tokenizer keys trains its own tokenizer, and
`eval`/`predict` then tokenize once per distinct tokenizer (see textcls.run.load.Run.groups). `ensemble.json`
records which members have finished; `--resume` skips those and resumes the interrupted one from its `last/`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from textcls.config import Config, config_from_dict, member_raw, save_config
from textcls.data.labels import load_labels
from textcls.data.pipeline import prepare_data
from textcls.data.tokenizer import load_tokenizer
from textcls.errors import ConfigError, TextclsError
from textcls.io import atomic_write_json
from textcls.run.info import save_eval_report, save_run_files, write_run_info
from textcls.run.layout import CONFIG, ENSEMBLE, LABELS, LAST, STATE, TOKENIZER
from textcls.run.members import is_ensemble_dir, member_name, read_ensemble
from textcls.run.prepare import prepare_run_dir, replace_old_run, resumed_config
from textcls.train import distributed
from textcls.train.classify import TrainResult, check_inputs, train_model
from textcls.train.engine import Interrupted, StopFlag, select_device
from textcls.train.nblr import cross_fit_report, validation_report
from textcls.train.progress import console


def member_variant(cfg: Config, index: int) -> dict:
    variants = cfg.train.ensemble_variants
    return variants[index % len(variants)] if variants else {}


def member_fold(cfg: Config, index: int) -> int:
    """The fold member `index` holds out with `train.ensemble_folds`: the folds take turns after each round of the
    variants, so every fold's members read the text in every way the ensemble does."""
    return index // max(1, len(cfg.train.ensemble_variants)) % cfg.train.ensemble_folds


def member_config(cfg: Config, index: int, tokenizer_path: Path) -> Config:
    """Member `index`: its variant (`train.ensemble_variants`), seed + index, the ensemble's validation
    split, the shared tokenizer unless its variant sets tokenizer keys (then it trains its own), and no
    NB-LR model of its own."""
    variant = member_variant(cfg, index)
    member = config_from_dict(member_raw(cfg, variant), source=f"{cfg.source} (member {index})") if variant \
        else copy.deepcopy(cfg)
    member.train.ensemble, member.train.ensemble_variants = 1, []
    member.train.ensemble_max, member.train.ensemble_fill_seconds = 0, None
    if cfg.train.ensemble_folds:
        member.data.valid_fold = member_fold(cfg, index)
    member.train.ensemble_folds = 0
    member.nblr.weight = 0.0  # the NB-LR model is the ensemble's, fitted once after the members
    member.train.seed = cfg.train.seed + index
    if member.data.split_seed is None:
        member.data.split_seed = cfg.train.seed  # every member holds out the same rows
    if not any(key.startswith("tokenizer.") for key in variant):
        member.tokenizer.path = str(tokenizer_path.resolve())
    member.output.overwrite = True  # member folders belong to the ensemble
    return member


def train_ensemble(cfg: Config, output: Optional[Path] = None, resume: bool = False, quiet: bool = False):
    """Train `cfg.train.ensemble` members into OUTPUT/members/k and evaluate their average."""
    if distributed.launched():
        raise ConfigError("an ensemble (`train.ensemble` > 1 or `train.ensemble_max`) does not run under torchrun; "
                          "train the ensemble in one process "
                          "(or train members separately with different `train.seed`)")
    run_dir = Path(output or cfg.output.dir)
    if resume and is_ensemble_dir(run_dir):
        cfg = resumed_config(cfg, run_dir / CONFIG)
        info = read_ensemble(run_dir)
    else:
        if resume and (run_dir / CONFIG).exists():
            cfg.output.overwrite = True  # killed before the ensemble file existed: start over
        cfg, _ = prepare_run_dir(cfg, run_dir, resume=False)
        base = Path(cfg.model.init_from) / TOKENIZER if cfg.model.init_from else None
        # The shared tokenizer: the base run's when starting from one, else trained (or loaded) once here.
        data = prepare_data(cfg, load_tokenizer(base) if base and base.is_file() else None, quiet=quiet)
        _check_members(cfg, data.tokenizer, quiet)
        replace_old_run(run_dir)
        save_run_files(run_dir, cfg, data.tokenizer, data.labels)
        del data  # the data is not kept while members train
        write_run_info(run_dir, kind="ensemble")
        info = {"members": [member_name(k) for k in range(cfg.train.ensemble)], "finished": [],
                "seeds": [cfg.train.seed + k for k in range(cfg.train.ensemble)]}
        atomic_write_json(run_dir / ENSEMBLE, info)
    cfg.output.dir = str(run_dir)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)

    started = time.perf_counter()
    pending = [(k, name) for k, name in enumerate(info["members"]) if name not in info["finished"]]
    workers = min(cfg.train.ensemble_workers, len(pending)) if pending else 1
    runner = _train_parallel if workers > 1 else _train_sequential
    filling = _Filling(cfg, run_dir, info, active=not resume)  # a resumed run finishes the members it recorded
    steps, examples = runner(cfg, run_dir, info, pending, resume, quiet, workers, filling)

    t = cfg.train
    # The members' mean (and the NB-LR model's mix) on the validation rows, through the run's predictor.
    labels, device, out = load_labels(run_dir / LABELS), select_device(t.device), None if quiet else console
    if t.ensemble_folds:  # out of fold: the members hold out folds in turn
        folds = {name: member_fold(cfg, k) for k, name in enumerate(info["members"])}
        report = cross_fit_report(cfg, run_dir, folds, labels, device, out, precision="fp32")
    else:
        report = validation_report(cfg, run_dir, labels, device, out, precision="fp32")
    metric = None
    if report is not None:
        metric = report[t.metric]
        info["valid"] = {k: report[k] for k in ("loss", "accuracy", "macro_f1", "weighted_f1", "micro_f1")
                         if k in report}
        atomic_write_json(run_dir / ENSEMBLE, info)
        save_eval_report(run_dir, report, members=len(info["members"]))
        best = info.get("member_best", {})
        if not quiet:
            members = ", ".join(f"{v:.4f}" for v in best.values())
            without = report.get("without_nblr", {}).get(t.metric)
            mixed = f" with the NB-LR model, {without:.4f} without" if without is not None else ""
            console.print(f"ensemble of {len(info['members'])}: valid {t.metric} {metric:.4f}{mixed} "
                          f"(members' best: {members})", highlight=False)
    seconds = time.perf_counter() - started
    return TrainResult(run_dir, metric, steps, seconds, examples / seconds if seconds > 0 else 0.0)


def _check_members(cfg: Config, tokenizer, quiet: bool) -> None:
    """Each distinct member's inputs (its variant's tokenizer, data, vectors, ...), before any member trains."""
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(tmp) / TOKENIZER
        shared.write_text(tokenizer.to_str(), encoding="utf-8")
        most = max(cfg.train.ensemble, cfg.train.ensemble_max)  # added members take the variants in turn too
        for index in range(min(most, max(1, len(cfg.train.ensemble_variants)))):
            check_inputs(member_config(cfg, index, shared), quiet)


class _Filling:
    """More members while the budget holds one (`train.ensemble_max`, `train.ensemble_fill_seconds`): the plan's
    member count comes from step times measured before training, and the members' real durations correct it.

    A member is added when one more, taking as long as the slowest member finished so far, still ends within
    the fill seconds of the first member's start; it continues the seeds (and cycles the variants), and
    ensemble.json lists it before it starts, so a resumed run trains it like any planned member."""

    def __init__(self, cfg: Config, run_dir: Path, info: dict, active: bool):
        t = cfg.train
        self.cfg, self.run_dir, self.info = cfg, run_dir, info
        self.limit = t.ensemble_max if active and t.ensemble_fill_seconds else 0
        self.deadline = t.ensemble_fill_seconds or 0.0
        self.started = time.perf_counter()
        self.durations: list[float] = []

    def finished(self, seconds: float) -> None:
        self.durations.append(seconds)

    def next_member(self, quiet: bool) -> Optional[tuple[int, str]]:
        """(index, name) of a member added now, or None when the budget or `ensemble_max` holds no more."""
        members = self.info["members"]
        if len(members) >= self.limit or not self.durations:
            return None
        spent, expected = time.perf_counter() - self.started, max(self.durations)
        if spent + expected > self.deadline:
            return None
        index = len(members)
        members.append(member_name(index))
        self.info["seeds"].append(self.cfg.train.seed + index)
        self.info["added"] = self.info.get("added", 0) + 1
        atomic_write_json(self.run_dir / ENSEMBLE, self.info)
        if not quiet:
            console.print(f"time for another member: {spent:.0f}s of {self.deadline:.0f}s spent, a member takes "
                          f"about {expected:.0f}s; member {index + 1} added (at most {self.limit})", highlight=False)
        return index, members[-1]


def _finish(run_dir: Path, info: dict, name: str, best: Optional[float], quiet: bool = True) -> None:
    """Record a finished member in ensemble.json; unless `quiet`, say how many of the members are done."""
    if best is not None:
        scores = {**info.get("member_best", {}), name: best}
        info["member_best"] = {m: scores[m] for m in info["members"] if m in scores}  # in member order
    info["finished"].append(name)
    info["finished"].sort(key=info["members"].index)
    atomic_write_json(run_dir / ENSEMBLE, info)
    if not quiet:
        console.print(f"members: {len(info['finished'])}/{len(info['members'])} done", highlight=False,
                      soft_wrap=True)


def _train_sequential(cfg: Config, run_dir: Path, info: dict, pending: list[tuple[int, str]], resume: bool,
                      quiet: bool, workers: int, filling: _Filling) -> tuple[int, float]:
    """Members one after another in this process (and any `filling` adds); (optimizer steps, training
    examples) of all members."""
    steps, examples = 0, 0.0
    queue = list(pending)
    while queue or (added := filling.next_member(quiet)) is not None:
        index, name = queue.pop(0) if queue else added
        member_dir = run_dir / name
        began = time.perf_counter()
        if not quiet:
            console.print(f"ensemble member {index + 1}/{len(info['members'])} (seed {cfg.train.seed + index})",
                          highlight=False)
        member = member_config(cfg, index, run_dir / TOKENIZER)
        try:
            result = train_model(member, member_dir, resume=resume and member_dir.is_dir(), quiet=quiet)
        except Interrupted:
            raise Interrupted(run_dir) from None
        steps += result.steps
        examples += result.examples_per_second * result.seconds
        _finish(run_dir, info, name, result.best_metric, quiet)
        filling.finished(time.perf_counter() - began)
        if result.stop_requested and (queue or len(info["finished"]) < len(info["members"])):
            raise Interrupted(run_dir)  # Ctrl-C as a member finished
        if result.stop_requested:
            break  # the last member: the ensemble is complete, and nothing more is added
    return steps, examples


def _train_parallel(cfg: Config, run_dir: Path, info: dict, pending: list[tuple[int, str]], resume: bool,
                    quiet: bool, workers: int, filling: _Filling) -> tuple[int, float]:
    """Up to `workers` members at once, each a `textcls train` child process with its share of threads; a free
    worker with no member queued takes one `filling` adds.

    Children run in their own session, so a Ctrl-C reaches only this process, which forwards one
    SIGTERM to each child: every child saves its `last/` and exits 130, and the ensemble resumes.
    """
    # Threads per member from the whole ensemble, not from what is left: a member resumed alone keeps the
    # thread count it started with (CPU kernels sum in thread-dependent order, so resume stays exact).
    sharing = min(cfg.train.ensemble_workers, len(info["members"]))
    threads = max(1, (cfg.train.num_threads or torch.get_num_threads()) // sharing)
    queue, running, steps, examples = list(pending), {}, 0, 0.0
    failed: list[str] = []

    def more() -> bool:  # a member added to the queue now
        added = filling.next_member(quiet)
        if added is not None:
            queue.append(added)
        return added is not None

    with StopFlag() as flag, _reaped(running):
        forwarded = False
        while running or (not flag.raised and not failed and (queue or more())):
            while len(running) < workers and not flag.raised and not failed and (queue or more()):
                index, name = queue.pop(0)
                member_dir = run_dir / name
                member = member_config(cfg, index, run_dir / TOKENIZER)
                member.train.num_threads = threads
                config_path = run_dir / f"{member_name(index)}.yaml"
                config_path.parent.mkdir(parents=True, exist_ok=True)
                save_config(member, config_path)
                args = [sys.executable, "-m", "textcls", "train", str(config_path), "--output", str(member_dir),
                        "--quiet"] + (["--resume"] if resume and member_dir.is_dir() else [])
                log = open(run_dir / f"{member_name(index)}.log", "w", encoding="utf-8")
                env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TEXTCLS_ENSEMBLE_MEMBER": "1"}
                proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
                running[proc] = (index, name, log, time.perf_counter())
                if not quiet:
                    console.print(f"ensemble member {index + 1}/{len(info['members'])} started (seed "
                                  f"{cfg.train.seed + index}, {threads} thread{'s' * (threads > 1)})", highlight=False)
            if (flag.raised or failed) and not forwarded:  # stop the others at a resumable checkpoint
                for proc in running:
                    proc.send_signal(signal.SIGTERM)
                forwarded = True
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                index, name, log, began = running.pop(proc)
                log.close()
                if proc.returncode == 0:
                    filling.finished(time.perf_counter() - began)
                    done = _member_summary(run_dir / name)
                    steps += done.get("steps", 0)
                    examples += done.get("steps", 0) * cfg.train.batch_size * cfg.train.grad_accum
                    if not quiet:
                        best = f", best {cfg.train.metric} {done['best']:.4f}" if done.get("best") is not None else ""
                        console.print(f"ensemble member {index + 1} finished in {time.perf_counter() - began:.0f}s"
                                      f"{best}", highlight=False)
                    _finish(run_dir, info, name, done.get("best"), quiet)
                elif proc.returncode != 130 and not (forwarded and proc.returncode == -signal.SIGTERM):
                    # (a child stopped by our SIGTERM before it set up its handler has saved nothing yet)
                    log_path = run_dir / f"{member_name(index)}.log"
                    failed.append(f"member {index + 1} (exit code {proc.returncode}; {log_path}): "
                                  f"{_log_tail(log.name)}")
    if failed:
        raise TextclsError("ensemble training failed: " + "; ".join(failed))
    if flag.raised or len(info["finished"]) < len(info["members"]):
        raise Interrupted(run_dir)
    return steps, examples


def _die_with_parent() -> None:
    """In a member process before it starts: Linux sends it SIGTERM when the ensemble process dies, even by
    `kill -9`, so the member saves its `last/` and stops instead of training on beside a resumed ensemble."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _reaped(running: dict):
    """On any way out (a second Ctrl-C included), stop the children still running and wait for them."""
    try:
        yield
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, (_, _, log, _) in running.items():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _member_summary(member_dir: Path) -> dict:
    """Steps and best metric of a finished member, from its metrics.jsonl and last/ state."""
    out: dict = {}
    state = member_dir / LAST / STATE
    try:
        saved = json.loads(state.read_text(encoding="utf-8")) if state.is_file() else {}
    except (OSError, ValueError):  # damaged: the summary says nothing rather than failing the ensemble
        saved = {}
    if isinstance(saved, dict) and saved:
        out["steps"], out["best"] = saved.get("step", 0), saved.get("best")
    return out


def _log_tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " ".join(text[-lines:]) or "(empty log)"
