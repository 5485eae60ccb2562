"""Pictures: the learning-rate curve of a config, the training curves of a run directory, and the
confusion matrix and per-class F1 of an evaluation report.

matplotlib is an optional extra (`pip install 'textcls[plot]'`); it is imported only here, lazily,
with the non-interactive Agg backend, so plotting works without a display.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

from rich.table import Table

from textcls.config import Config, TrainConfig
from textcls.errors import CheckpointError, ConfigError
from textcls.run.info import load_run_config
from textcls.run.layout import CLASS_F1, CONFUSION, CURVES, EVAL_REPORT, LAST, METRICS, is_ensemble_dir
from textcls.run.members import member_name, read_ensemble
from textcls.run.store import read_state
from textcls.train.logs import read_metrics
from textcls.train.schedules import key_steps, lr_multiplier, phase

log = logging.getLogger("textcls")
MAX_POINTS = 4000  # curve points drawn; longer schedules are sampled evenly (plus the boundaries)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib, which is not installed; install it with "
                          "pip install 'textcls[plot]' (or leave out --plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from textcls.io import open_output

    suffix = path.suffix.lstrip(".").lower() or "png"
    if suffix not in fig.canvas.get_supported_filetypes():
        raise ConfigError(f"cannot save a picture as {path}: .{suffix} is not an image format; name the file "
                          ".png, .svg or .pdf")
    with open_output(path, "wb") as handle:
        fig.savefig(handle, format=suffix, dpi=120, bbox_inches="tight")


def schedule_summary(cfg: Config, total_steps: int) -> str:
    t = cfg.train
    return (f"{t.schedule} schedule, {total_steps} optimizer steps, base lr {t.lr:g} "
            "(the lr at step s is the rate update s + 1 uses)")


def schedule_table(cfg: Config, total_steps: int) -> Table:
    """Rich table of the learning rate at sampled steps and at every phase boundary."""
    t = cfg.train
    fn = lr_multiplier(t, total_steps)
    table = Table()
    for col in ("step", "lr", "× base", "phase"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for step in key_steps(t, total_steps):
        table.add_row(str(step), f"{t.lr * fn(step):.4e}", f"{fn(step):.4f}", phase(t, total_steps, step))
    return table


def plot_schedule(cfg: Config, total_steps: int, path: Path) -> None:
    """PNG (or any matplotlib format by suffix) of lr against the optimizer step."""
    plt = _pyplot()
    t = cfg.train
    fn = lr_multiplier(t, total_steps)
    stride = max(1, total_steps // MAX_POINTS)
    steps = sorted(set(range(0, total_steps + 1, stride)) | set(key_steps(t, total_steps)))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, [t.lr * fn(s) for s in steps], color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{t.schedule} schedule ({total_steps} steps, warmup {t.warmup:g})")
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    _save(fig, path)
    plt.close(fig)


def run_curves(records: list[dict], metric: str = "accuracy") -> dict[str, list[tuple[int, float]]]:
    """The (step, value) series `plot_run` draws, by panel label.

    Classifier runs log `loss` per step and validation `loss` and metrics per evaluation; pretraining
    runs log the mean `train_loss` and the held-out `mlm_loss` / `mlm_accuracy` per evaluation.
    """
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") != "train"]

    def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
        return [(r["step"], r[key]) for r in rows if r.get(key) is not None]

    out = {"train loss": series(train, "loss") or series(evals, "train_loss")}
    if any("mlm_loss" in r for r in evals):
        out["held-out masked-LM loss"] = series(evals, "mlm_loss")
    else:
        out["validation loss"] = series(evals, "loss")
    out["learning rate"] = series(train or evals, "lr")
    shown = metric if metric != "loss" else "accuracy"
    if not any(shown in r for r in evals) and any("mlm_accuracy" in r for r in evals):
        shown = "mlm_accuracy"
    out[f"validation {shown}"] = series(evals, shown)
    return out


def _schedule_points(train: TrainConfig, total: int, end: int) -> list[tuple[int, float]]:
    """(step, lr) of the schedule from step 0 to `end`, sampled to MAX_POINTS plus its phase boundaries."""
    fn = lr_multiplier(train, total)
    stride = max(1, end // MAX_POINTS)
    steps = sorted(set(range(0, end + 1, stride)) | {s for s in key_steps(train, total) if s <= end} | {end})
    return [(s, train.lr * fn(s)) for s in steps]


def exact_lr_curve(run_dir: Path, train: TrainConfig, records: list[dict]) -> Optional[list[tuple[int, float]]]:
    """The run's learning rate at every step it took (sampled), from its schedule function and the step
    count it was planned for (`last/state.json`); None when that is unknown or the logged rates do not
    follow the schedule (then the logged points are drawn). The rate at step s is the one update s + 1
    uses, as in `textcls schedule`; the log's train records hold the rate their step's update used."""
    try:
        state = read_state(run_dir / LAST, ("total_steps", "step"))  # checksum and schema checked
        total, end = int(state["total_steps"]), int(state["step"])
    except (CheckpointError, OSError, ValueError, TypeError):
        return None
    if not 0 < end <= total:
        return None
    fn = lr_multiplier(train, total)
    for r in records:
        if not isinstance(r.get("lr"), (int, float)) or not isinstance(r.get("step"), int):
            continue
        used = train.lr * fn(r["step"] - 1 if r.get("kind") == "train" else r["step"])
        if not math.isclose(r["lr"], used, rel_tol=1e-5, abs_tol=1e-12):
            return None
    return _schedule_points(train, total, end)


def plot_run(run_dir: Path, path: Path, metric: str = "accuracy", train: Optional[TrainConfig] = None) -> None:
    """Three panels against the step: train and validation loss, learning rate (the schedule's exact
    values given the run's `train` config, see exact_lr_curve; else the logged points), validation `metric`."""
    records = read_metrics(run_dir / METRICS)
    if not records and is_ensemble_dir(run_dir):
        raise CheckpointError(f"{run_dir} is an ensemble, whose members each have their own curves; plot one of "
                              f"them, e.g. `textcls plot {run_dir / member_name(0)}`")
    if not records:
        raise CheckpointError(f"{run_dir / METRICS} is missing or empty; is {run_dir} a textcls run "
                              "directory that has trained for at least `train.log_every` steps?")
    plt = _pyplot()
    curves = run_curves(records, metric)
    (train_label, train_points), (valid_label, valid_points), (_, lr_points), (shown, points) = curves.items()
    shown = shown.removeprefix("validation ")
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    ax = axes[0]
    if train_points:
        ax.plot(*zip(*train_points), label=train_label, alpha=0.8)
    if valid_points:
        ax.plot(*zip(*valid_points), "o-", label=valid_label)
    ax.set_ylabel("loss")
    ax.legend()
    exact = exact_lr_curve(run_dir, train, records) if train is not None else None
    if exact:
        axes[1].plot(*zip(*exact), color="tab:green")
    elif lr_points:
        axes[1].plot(*zip(*lr_points), color="tab:green")
    axes[1].set_ylabel("learning rate")
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if points:
        axes[2].plot(*zip(*points), "o-", color="tab:red", label=f"validation {shown}")
        by_loss = metric == "loss"  # the best step is the lowest validation loss, else the highest `shown`
        ranked = valid_points if by_loss else points
        if ranked:
            step = (min if by_loss else max)(ranked, key=lambda point: point[1])[0]
            best = "loss" if by_loss else shown
            axes[2].axvline(step, color="gray", linestyle="--", label=f"best ({best}) step {step}")
        axes[2].legend()
    axes[2].set_ylabel(shown)
    axes[2].set_xlabel("optimizer step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(str(run_dir))
    _save(fig, path)
    plt.close(fig)


def plot_training_curves(run_dir: Path) -> list[Path]:
    """`textcls train`'s closing picture: RUN/curves.png as `textcls plot` draws it, or for an ensemble (which
    has no curves of its own) each member's `members/K/curves.png`; returns the files written. Nothing
    without matplotlib (the `plot` extra) or for a run that logged nothing. A picture that cannot be drawn
    is a one-line warning: a finished run never fails for its picture."""
    try:
        import matplotlib  # noqa: F401 (only whether it is there)
    except ImportError:
        return []
    try:
        targets = [run_dir / name for name in read_ensemble(run_dir)["members"]] if is_ensemble_dir(run_dir) \
            else [run_dir]
    except Exception as exc:  # a damaged ensemble.json: its pictures are not worth a failed run
        log.warning("%s not drawn: %s", run_dir / CURVES, _first_line(exc))
        return []
    written = []
    for target in targets:
        try:
            if not read_metrics(target / METRICS):
                continue
            cfg = load_run_config(target)
            plot_run(target, target / CURVES, cfg.train.metric, cfg.train)
        except Exception as exc:  # matplotlib fails in many ways (fonts, backends, memory)
            log.warning("%s not drawn (%s); `textcls plot %s` tries again", target / CURVES, _first_line(exc),
                        target)
        else:
            written.append(target / CURVES)
    return written


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


# --------------------------------------------------------------------------- evaluation reports


def read_report(path: Path) -> dict:
    """An eval report (eval_report.json, `eval --report`), checked for what the pictures read."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON ({exc}); restore it, or evaluate again") from None
    labels = report.get("labels") if isinstance(report, dict) else None
    per_class = report.get("per_class") if isinstance(report, dict) else None
    matrix = report.get("confusion_matrix")
    if not (isinstance(labels, list) and isinstance(per_class, dict) and all(
            isinstance(m, dict) and isinstance(m.get("f1"), (int, float)) for m in per_class.values())):
        raise CheckpointError(f"{path} is not an evaluation report (labels, per_class with f1); restore it, or "
                              "evaluate again with `textcls eval RUN FILE --report`")
    if matrix is not None and not (isinstance(matrix, list) and len(matrix) == len(labels) and all(
            isinstance(row, list) and len(row) == len(labels) for row in matrix)):
        raise CheckpointError(f"{path}: its confusion matrix is not {len(labels)} x {len(labels)}, one row and "
                              "column per label; restore it, or evaluate again")
    return report


def check_picture_path(path: Path) -> None:
    """A ConfigError unless matplotlib can save a picture under `path`'s suffix (checked before slow work)."""
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = path.suffix.lstrip(".").lower() or "png"
    if suffix not in FigureCanvasBase.get_supported_filetypes():
        raise ConfigError(f"cannot save a picture as {path}: .{suffix} is not an image format; name the file "
                          ".png, .svg or .pdf")


def plot_confusion(report: dict, path: Path, title: str = "") -> None:
    """The confusion matrix with each row (true label) divided by its count, cells annotated."""
    import numpy as np

    if report.get("confusion_matrix") is None:
        raise ConfigError("this report has no confusion matrix (a multi-label run has none); plot its per-class "
                          "F1 instead")
    plt = _pyplot()
    labels = [str(x) for x in report["labels"]]
    counts = np.asarray(report["confusion_matrix"], dtype=np.float64)  # (C, C) rows: true, columns: predicted
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(labels)
    size = min(4 + 0.45 * n, 24)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label's rows")
    ax.set_xticks(range(n), labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=8 if n > 10 else 10,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(f"confusion matrix{': ' + title if title else ''} ({int(counts.sum())} rows)")
    _save(fig, path)
    plt.close(fig)


def plot_class_f1(report: dict, path: Path, title: str = "") -> None:
    """A horizontal bar per label: its F1, with its support; the macro F1 as a line."""
    plt = _pyplot()
    per_class = report["per_class"]
    names = list(per_class)
    f1 = [per_class[k]["f1"] for k in names]
    fig, ax = plt.subplots(figsize=(7, min(2 + 0.35 * len(names), 30)))
    bars = ax.barh(range(len(names)), f1, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in f1], padding=3, fontsize=8)
    ax.set_yticks(range(len(names)), [f"{k} ({per_class[k].get('support', '?')})" for k in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)  # room for the values
    ax.set_xlabel("F1 (support in brackets)")
    if "macro_f1" in report:
        ax.axvline(report["macro_f1"], color="gray", linestyle="--", label=f"macro F1 {report['macro_f1']:.3f}")
        ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"F1 per class{': ' + title if title else ''}")
    _save(fig, path)
    plt.close(fig)


def report_picture_paths(run_dir: Path, curves: Path) -> tuple[Path, Path]:
    """Where `textcls plot` writes the confusion matrix and the per-class F1: the run directory's own
    names beside its curves.png, else NAME-confusion.png and NAME-class-f1.png beside --output NAME.png."""
    if curves == run_dir / CURVES:
        return run_dir / CONFUSION, run_dir / CLASS_F1
    return (curves.with_name(f"{curves.stem}-confusion{curves.suffix}"),
            curves.with_name(f"{curves.stem}-class-f1{curves.suffix}"))


def plot_run_pictures(run_dir: Path, curves: Path, cfg: Config) -> tuple[list[Path], str]:
    """`textcls plot`: the training curves, and the validation report's confusion matrix (single-label
    runs) and per-class F1 when the run has an eval_report.json. Returns the files written and a note. An
    ensemble has no curves of its own (its members do): it gets the report's pictures and a note naming
    a member."""
    check_picture_path(curves)
    written = []
    if (run_dir / EVAL_REPORT).is_file():
        report = read_report(run_dir / EVAL_REPORT)
        confusion, f1 = report_picture_paths(run_dir, curves)
        if report.get("confusion_matrix") is not None:
            plot_confusion(report, confusion, f"{run_dir.name} (validation)")
            written.append(confusion)
        plot_class_f1(report, f1, f"{run_dir.name} (validation)")
        written.append(f1)
    if written and is_ensemble_dir(run_dir) and not read_metrics(run_dir / METRICS):
        return written, (f"an ensemble's members each have their own training curves; plot one of them, e.g. "
                         f"`textcls plot {run_dir / member_name(0)}`")
    plot_run(run_dir, curves, cfg.train.metric, cfg.train)
    return [curves, *written], ""
