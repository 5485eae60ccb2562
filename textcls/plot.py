"""Pictures: the learning-rate curve of a config and the training curves of a run directory.

matplotlib is an optional extra (`pip install 'textcls[plot]'`); it is imported only here, lazily,
with the non-interactive Agg backend, so plotting works without a display.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from textcls.config import Config
from textcls.errors import CheckpointError, ConfigError
from textcls.run.layout import METRICS, is_ensemble_dir
from textcls.run.members import member_name
from textcls.train.logs import read_metrics
from textcls.train.schedules import key_steps, lr_multiplier, phase

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


def plot_run(run_dir: Path, path: Path, metric: str = "accuracy") -> None:
    """Three panels against the step: train and validation loss, learning rate, validation `metric`."""
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
    if lr_points:
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
