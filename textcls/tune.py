"""`textcls tune`: Optuna search (seeded TPE + median pruning) over the config's `tune:` section.

The search space maps dotted config keys to a range or a list of choices:

    tune:
      train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}   # float range (log scale)
      model.num_layers: {choices: [2, 4]}                 # categorical
      train.epochs: {low: 1, high: 4}                     # ints on both ends: an integer range
      model.dropout: {low: 0.0, high: 0.3, step: 0.05}    # optional step

A config without a `tune:` section is searched over a default space chosen by the model kind
(`default_space`), printed before the search.

Each trial trains a full run (in OUTPUT/trials/trial-NNN) with its values applied; evaluations
during training are reported to Optuna, which prunes trials below the median of earlier ones at
the same point. The time budget holds: no trial starts when less time is left than the median
trial took, and a running trial stops at its next evaluation after the deadline.
"""

from __future__ import annotations

import json
import math
import re
import signal
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from textcls.config import Config, config_from_dict, config_to_dict, save_config, set_dotted
from textcls.data.readers import iter_records
from textcls.errors import ConfigError
from textcls.io import atomic_open
from textcls.train.progress import console

_BUDGET = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")
EVALS_PER_EPOCH = 4  # when train.eval_every is unset: evaluations (pruning points) per epoch
METRICS = ("accuracy", "macro_f1", "weighted_f1", "micro_f1", "loss")


def parse_budget(text: str) -> float:
    """'90s', '30m', '2h', '1h30m', '45' (seconds) -> seconds. Raises ConfigError."""
    match = _BUDGET.match(text.strip().lower()) if text else None
    if not match or not any(match.groups()):
        raise ConfigError(f"--budget {text!r} is not a duration; write e.g. 90s, 30m, 2h or 1h30m")
    if (match.group(1) or match.group(2)) and match.group(3) and not text.strip().lower().endswith("s"):
        raise ConfigError(f"--budget {text!r}: the number after the hours or minutes has no unit; write e.g. 1h30m "
                          "or 5m30s")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"--budget {text!r} must be longer than zero")
    return total


@dataclass
class Param:
    key: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[list] = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, self.choices)
        if isinstance(self.low, int) and isinstance(self.high, int) and isinstance(self.step, (int, type(None))):
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log,
                                   step=None if self.step is None else float(self.step))

    def corners(self) -> list:
        """Values that must all give a valid config: every choice, or both ends of the range."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_space(space: Any, source: str) -> list[Param]:
    """Check the shape of the `tune:` mapping; raises one ConfigError listing every problem."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{source}: `tune` must be a mapping of config keys to ranges or choices, e.g. "
                          "`train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}`")
    params, problems = [], []
    for key, spec in space.items():
        where = f"`tune.{key}`"
        if str(key).startswith("train.ensemble") or key == "train.metric":
            problems.append(f"{where} cannot be searched: trials train single models and score --metric "
                            "(the ensemble settings of the config are kept in best.yaml)")
            continue
        if str(key).startswith("nblr."):
            problems.append(f"{where} cannot be searched: trials are scored without the NB-LR model (the `nblr` "
                            "settings of the config are kept in best.yaml)")
            continue
        if not isinstance(spec, dict):
            problems.append(f"{where} must be a mapping with `choices` or `low`/`high`, got {spec!r}")
            continue
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            problems.append(f"{where} has unknown field(s) {sorted(unknown)}; use choices, or low/high/log/step")
            continue
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"}:
                problems.append(f"{where} mixes `choices` with a range; use one or the other")
            elif not isinstance(choices, list) or not choices or \
                    any(isinstance(c, (list, dict)) for c in choices):
                problems.append(f"{where}: `choices` must be a non-empty list of plain values, got {choices!r}")
            else:
                params.append(Param(str(key), choices=choices))
            continue
        low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
        if isinstance(low, str) or isinstance(high, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                low, high = float(low), float(high)
            except (TypeError, ValueError):
                pass
        if not (_number(low) and _number(high)) or low >= high:
            problems.append(f"{where} needs numbers `low` < `high`, got low={low!r} high={high!r}")
        elif not isinstance(log, bool):
            problems.append(f"{where}: `log` must be true or false, got {log!r}")
        elif log and low <= 0:
            problems.append(f"{where}: a log range needs `low` > 0, got {low}")
        elif step is not None and (not _number(step) or step <= 0 or log):
            problems.append(f"{where}: `step` must be a positive number and cannot go with `log`, got {step!r}")
        else:
            params.append(Param(str(key), low, high, log, step))
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the search space: {'; '.join(problems)}.")
    return params


def _with_values(base: dict, values: dict[str, Any]) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(base))  # deep copy
    for dotted, value in values.items():
        set_dotted(raw, dotted, value)
    return raw


def trial_config(base: dict, values: dict[str, Any], source: str) -> Config:
    return config_from_dict(_with_values(base, values), source=source)


def check_space(base: dict, params: list[Param], source: str) -> None:
    """Every choice and both ends of every range must give a valid config (unknown keys are named)."""
    problems = []
    for p in params:
        for value in p.corners():
            try:
                trial_config(base, {p.key: value}, source)
            except ConfigError as exc:
                detail = re.sub(r"^.*?problem\(s\) in the config: ", "", str(exc)).rstrip(".")
                problems.append(f"`tune.{p.key}` = {value!r}: {detail}")
                break
    if problems:
        raise ConfigError(f"{source}: the search space does not fit the config: {'; '.join(problems)}. "
                          "Keys in `tune:` are dotted config keys such as train.lr or model.num_layers.")


def default_space(cfg: Config) -> tuple[str, dict[str, dict]]:
    """(the model kind, the search space) `textcls tune` uses when the config has no `tune:` section.

    Every kind searches the learning rate (log scale, around its usual range: 1e-5..2e-4 to fine-tune a
    pretrained base whole, 1e-4..3e-3 from scratch or for adapters and heads on a frozen base), dropout,
    the batch size and the weight decay. A model trained from scratch also searches its pooling and its
    depth (half, as is, double the config's); a pretrained base keeps the shape its weights have."""
    m, t = cfg.model, cfg.train
    if t.trainable != "all":
        kind, lr = f"{t.trainable} trained on a frozen base", (1e-4, 3e-3)
    elif m.init_from:
        kind, lr = "a pretrained base fine-tuned whole", (1e-5, 2e-4)
    else:
        kind, lr = "a model trained from scratch", (1e-4, 3e-3)
    space: dict[str, dict] = {
        "train.lr": {"low": lr[0], "high": lr[1], "log": True},
        "model.dropout": {"low": 0.0, "high": 0.3, "step": 0.05},
        "train.batch_size": {"choices": [16, 32, 64]},
        "train.weight_decay": {"choices": [0.0, 0.01, 0.1]},
    }
    if not m.init_from:
        space["model.pooling"] = {"choices": ["cls", "mean", "max"]}
        space["model.num_layers"] = {"choices": sorted({max(1, m.num_layers // 2), m.num_layers, 2 * m.num_layers})}
    return kind, space


def _fits(base: dict, param: "Param", source: str) -> bool:
    try:
        check_space(base, [param], source)
    except ConfigError:
        return False
    return True


def describe_space(params: list["Param"]) -> list[str]:
    """One line per searched key: `train.lr: 1e-05 .. 0.0002 (log)`, `model.pooling: cls | mean | max`."""
    lines = []
    for p in params:
        if p.choices is not None:
            lines.append(f"{p.key}: {' | '.join(map(str, p.choices))}")
        else:
            extra = " (log)" if p.log else f" (step {p.step:g})" if p.step else ""
            lines.append(f"{p.key}: {p.low:g} .. {p.high:g}{extra}")
    return lines


@dataclass
class TrialRecord:
    number: int
    state: str  # complete | pruned | stopped (deadline) | invalid (the values clash) | interrupted (Ctrl-C)
    params: dict
    value: Optional[float]
    steps: int
    seconds: float
    run_dir: str
    problem: Optional[str] = None  # why an invalid trial's config was refused


class Tuner:
    """Runs the study; `records` holds one TrialRecord per finished trial."""

    def __init__(self, cfg: Config, output: Path, budget_s: float, metric: str, n_trials: Optional[int],
                 seed: Optional[int] = None, quiet: bool = True):
        if metric not in METRICS:
            raise ConfigError(f"--metric must be one of {', '.join(METRICS)}; got {metric!r}")
        source = cfg.source or "<config>"
        if not cfg.data.valid and cfg.data.valid_fraction is None:
            raise ConfigError(f"{source}: tuning needs validation data; set `data.valid` or `data.valid_fraction`")
        self.base = config_to_dict(cfg)
        self.base.pop("tune", None)
        if self.base["data"]["split_seed"] is None:  # every trial validates on the same held-out rows
            self.base["data"]["split_seed"] = cfg.train.seed
        # None: the config's own `tune:` section; else the model kind whose default space is searched
        self.default_kind: Optional[str] = None
        if cfg.tune is None:
            self.default_kind, space = default_space(cfg)
            # a default key the config cannot take (a depth its sharing cannot split) is left out, not an error
            self.params = [p for p in parse_space(space, source) if _fits(self.base, p, source)]
        else:
            self.params = parse_space(cfg.tune, source)
            check_space(self.base, self.params, source)
        self.source, self.output, self.budget_s = source, Path(output), budget_s
        self.metric, self.n_trials, self.quiet = metric, n_trials, quiet
        self.seed = cfg.train.seed if seed is None else seed
        self.records: list[TrialRecord] = []
        self.train_rows = sum(1 for _ in iter_records(cfg.data.train, cfg.data)) if cfg.data.train else 0
        self.deadline = math.inf
        self.interrupted = False  # Ctrl-C stopped the search (the finished trials are kept)

    @property
    def direction(self) -> str:
        return "minimize" if self.metric == "loss" else "maximize"

    def _eval_every(self, cfg: Config) -> Optional[int]:
        if cfg.train.eval_every or not self.train_rows:
            return cfg.train.eval_every
        steps_per_epoch = self.train_rows / (cfg.train.batch_size * cfg.train.grad_accum)
        return max(1, math.ceil(steps_per_epoch / EVALS_PER_EPOCH))

    def objective(self, trial) -> float:
        import optuna

        try:
            return self._objective(trial)
        except KeyboardInterrupt:  # Ctrl-C outside the training loop (setting a trial up): stop quietly
            self._stop_search(trial)
            raise optuna.TrialPruned() from None  # a failed trial would make optuna log the traceback

    def _objective(self, trial) -> float:
        import optuna

        from textcls.train.loop import Interrupted, train

        values = {p.key: p.suggest(trial) for p in self.params}
        values["train.metric"] = self.metric
        params = {k: v for k, v in values.items() if k != "train.metric"}
        try:
            cfg = trial_config(self.base, values, f"{self.source} (trial {trial.number})")
        except ConfigError as exc:  # values valid one by one can clash (hidden_size 34 with 4 heads)
            problem = re.sub(r"^.*?problem\(s\) in the config: ", "", str(exc)).rstrip(".")
            self.records.append(TrialRecord(trial.number, "invalid", params, None, 0, 0.0, "", problem))
            self._write_trials()
            console.print(f"trial {trial.number} invalid, skipped: {problem}", highlight=False, markup=False)
            return 0.0 if self.direction == "maximize" else 1e9  # the worst score steers TPE away from it
        cfg.train.eval_every = self._eval_every(cfg)
        run_dir = self.output / "trials" / f"trial-{trial.number:03d}"
        cfg.output.overwrite = True
        evals, flags = [], {"pruned": False, "deadline": False}

        def on_eval(step: int, record: dict) -> bool:
            value = record.get(self.metric, record.get("accuracy"))
            trial.report(value, len(evals))  # eval index: same point of training across batch sizes
            evals.append(value)
            if time.monotonic() >= self.deadline:
                flags["deadline"] = True
            elif trial.should_prune():
                flags["pruned"] = True
            return flags["deadline"] or flags["pruned"]

        started = time.monotonic()
        try:
            result = train(cfg, run_dir, quiet=self.quiet, on_eval=on_eval)
        except Interrupted:  # Ctrl-C: keep what finished, stop the study
            self._stop_search(trial)
            self.records.append(TrialRecord(trial.number, "interrupted", params, evals[-1] if evals else None,
                                            0, round(time.monotonic() - started, 2), str(run_dir)))
            self._write_trials()
            raise optuna.TrialPruned() from None
        state = "pruned" if flags["pruned"] else "stopped" if flags["deadline"] else "complete"
        value = result.best_metric if result.best_metric is not None else (evals[-1] if evals else None)
        self.records.append(TrialRecord(trial.number, state, params, value, result.steps,
                                        round(time.monotonic() - started, 2), str(run_dir)))
        self._write_trials()
        shown = ", ".join(f"{k}={_cell(v)}" for k, v in params.items())
        score = "-" if value is None else f"{value:.4f}"
        console.print(f"trial {trial.number} {state}: {self.metric} {score} after {result.steps} steps "
                      f"in {time.monotonic() - started:.0f}s ({shown})", highlight=False)
        if result.stop_requested:  # Ctrl-C during the trial's last step: keep the trial, stop the study
            self._stop_search(trial)
        if flags["pruned"]:
            raise optuna.TrialPruned()
        return value

    def _stop_search(self, trial) -> None:
        """Ctrl-C: no further trial starts; the finished ones are kept."""
        self.interrupted = True
        trial.study.stop()

    def _write_trials(self) -> None:
        with atomic_open(self.output / "trials.jsonl", "w") as handle:
            for rec in self.records:
                handle.write(json.dumps(asdict(rec), ensure_ascii=False) + "\n")

    def _budget_callback(self, study, frozen) -> None:
        """After each trial: stop where Ctrl-C came (`_on_interrupt`) or the budget cannot hold another trial."""
        times = [r.seconds for r in self.records]
        remaining = self.deadline - time.monotonic()
        if self.interrupted or (times and remaining < statistics.median(times)):
            study.stop()

    def run(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if (self.output / "trials.jsonl").exists() or (self.output / "trials").exists():
            raise ConfigError(f"{self.output} already holds a search (trials.jsonl, trials/); pick another --output, "
                              "or move that search away first")
        self.output.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            direction=self.direction, sampler=optuna.samplers.TPESampler(seed=self.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
        self.deadline = time.monotonic() + self.budget_s
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            study.optimize(self.objective, n_trials=self.n_trials, callbacks=[self._budget_callback],
                           gc_after_trial=True)
        except KeyboardInterrupt:  # Ctrl-C between trials (within one, training stops at a checkpoint)
            self.interrupted = True
        finally:
            if previous is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, previous)
        return study

    def _on_interrupt(self, signum, frame) -> None:
        """Ctrl-C outside a trial's training: noted before KeyboardInterrupt is raised, so that the search still
        stops where Python swallows the exception (a finalizer that runs during the collection after a trial)."""
        self.interrupted = True
        raise KeyboardInterrupt

    def best(self) -> Optional[TrialRecord]:
        done = [r for r in self.records if r.state in ("complete", "stopped") and r.value is not None]
        if not done:
            return None
        pick = min if self.direction == "minimize" else max
        return pick(done, key=lambda r: r.value)

    def write_best(self) -> Optional[Path]:
        """best.yaml: the base config with the best trial's values, loadable by `textcls train`."""
        best = self.best()
        if best is None:
            return None
        cfg = trial_config(self.base, {**best.params, "train.metric": self.metric}, self.source)
        cfg.train.eval_every = self._eval_every(cfg)  # the evaluations the trial chose its best weights at
        path = self.output / "best.yaml"
        save_config(cfg, path)
        return path


def print_trials(tuner: Tuner, console) -> None:
    """One table row per trial: its values, state, score, steps and time; the best is marked."""
    from rich.markup import escape
    from rich.table import Table

    best = tuner.best()
    table = Table(title=f"textcls tune: {len(tuner.records)} trial(s), metric {tuner.metric}")
    table.add_column("#", justify="right")
    for p in tuner.params:
        table.add_column(p.key)
    for name in ("state", tuner.metric, "steps", "seconds"):
        table.add_column(name, justify="right" if name != "state" else "left")
    for rec in tuner.records:
        cells = [_cell(rec.params.get(p.key)) for p in tuner.params]
        score = "-" if rec.value is None else f"{rec.value:.4f}"
        mark = " *" if best is not None and rec.number == best.number else ""
        table.add_row(str(rec.number), *map(escape, cells), rec.state, score + mark, str(rec.steps),
                      f"{rec.seconds:.1f}")
    console.print(table)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
