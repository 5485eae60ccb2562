"""`textcls plot` draws the validation confusion matrix and per-class F1 beside the curves, its lr panel
follows the schedule function exactly, and `textcls eval --plot` draws the confusion matrix of a file;
`textcls train` writes curves.png at the end of a run (each member's for an ensemble), a failure to draw
it is a warning, and without matplotlib nothing is drawn."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import sst2_slice, tiny_config, tiny_finished_run, write_tsv
from textcls.cli import app
from textcls.config import save_config
from textcls.errors import CheckpointError
from textcls.plot import exact_lr_curve, plot_training_curves, read_report, report_picture_paths
from textcls.run.info import load_run_config
from textcls.train.logs import read_metrics
from textcls.train.loop import train
from textcls.train.schedules import lr_at, warmup_steps

pytest.importorskip("matplotlib")
PNG = b"\x89PNG"
WARMUP = 7  # a warmup that ends between two logged steps (log_every 5)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("plots")
    valid = write_tsv(tmp / "valid.tsv", sst2_slice(60, "dev"))
    cfg = tiny_config(write_tsv(tmp / "train.tsv", sst2_slice(320)), valid, tmp / "run",
                      train={"schedule": "linear", "warmup": WARMUP, "log_every": 5, "epochs": 1})
    train(cfg, quiet=True)
    return tmp / "run"


def test_plot_writes_curves_confusion_and_class_f1(run_dir):
    result = CliRunner().invoke(app, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    for name in ("curves.png", "confusion.png", "class_f1.png"):
        assert (run_dir / name).read_bytes()[:4] == PNG, name
        assert name in result.output


def test_plot_with_output_names_the_report_pictures_after_it(run_dir, tmp_path):
    out = tmp_path / "pics" / "sst.png"
    assert report_picture_paths(run_dir, out) == (tmp_path / "pics" / "sst-confusion.png",
                                                  tmp_path / "pics" / "sst-class-f1.png")
    result = CliRunner().invoke(app, ["plot", str(run_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["sst-class-f1.png", "sst-confusion.png", "sst.png"]


def test_lr_panel_is_the_schedule_function(run_dir):
    cfg = load_run_config(run_dir).train
    records = read_metrics(run_dir / "metrics.jsonl")
    total = json.loads((run_dir / "last" / "state.json").read_text())["total_steps"]
    curve = exact_lr_curve(run_dir, cfg, records)
    assert curve is not None and curve[0][0] == 0 and curve[-1][0] == total
    assert {s for s, _ in curve} == set(range(total + 1))  # short runs: every step
    assert all(lr == pytest.approx(lr_at(cfg, total, s)) for s, lr in curve)
    peak = max(curve, key=lambda point: point[1])[0]
    assert peak == warmup_steps(cfg, total) == WARMUP
    logged = [(r["step"], r["lr"]) for r in records if r.get("kind") == "train"]
    assert max(logged, key=lambda point: point[1])[0] != WARMUP  # what the logged points alone would have shown


def test_lr_panel_falls_back_to_the_log_when_it_does_not_follow_the_schedule(run_dir):
    cfg = load_run_config(run_dir).train
    records = read_metrics(run_dir / "metrics.jsonl")
    assert exact_lr_curve(run_dir, cfg, [{**r, "lr": r["lr"] * 2} if "lr" in r else r for r in records]) is None
    assert exact_lr_curve(run_dir / "nowhere", cfg, records) is None  # no last/state.json


def test_eval_plot_writes_the_confusion_matrix(run_dir, tmp_path):
    data = write_tsv(tmp_path / "test.tsv", sst2_slice(40, "dev", offset=60))
    out = tmp_path / "cm.png"
    result = CliRunner().invoke(app, ["eval", str(run_dir), str(data), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == PNG
    absent, picture = str(tmp_path / "absent.tsv"), str(tmp_path / "cm.x")
    bad = CliRunner().invoke(app, ["eval", str(run_dir), absent, "--plot", picture])
    assert bad.exit_code == 2 and "not an image format" in bad.output  # checked before the evaluation


def test_a_damaged_report_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "eval_report.json"
    path.write_text(json.dumps({"labels": ["a", "b"], "per_class": {"a": {"f1": 1.0}}, "confusion_matrix": [[1]]}))
    with pytest.raises(CheckpointError, match="not 2 x 2"):
        read_report(path)
    path.write_text("{")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_report(path)


def _train_cli(tmp_path, **train_keys):
    """`textcls train CONFIG` on 120 SST-2 rows (40 validation rows); returns (result, run directory)."""
    cfg = tiny_config(write_tsv(tmp_path / "train.tsv", sst2_slice(120)),
                      write_tsv(tmp_path / "valid.tsv", sst2_slice(40, "dev")), tmp_path / "run",
                      train={"max_steps": 3, **train_keys})
    save_config(cfg, tmp_path / "tiny.yaml")
    return CliRunner().invoke(app, ["train", str(tmp_path / "tiny.yaml"), "-q"]), tmp_path / "run"


def test_train_writes_curves_at_the_end_of_a_run(tmp_path):
    result, run = _train_cli(tmp_path)
    assert result.exit_code == 0, result.output
    assert (run / "curves.png").read_bytes()[:4] == PNG and result.output == ""  # -q: written without a word
    assert not (run / "confusion.png").exists()  # the report's pictures are `textcls plot`'s
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # atomic: no temp file left


def test_an_ensemble_gets_each_members_curves(tmp_path):
    result, run = _train_cli(tmp_path, ensemble=2, max_steps=2)
    assert result.exit_code == 0, result.output
    assert not (run / "curves.png").exists()  # an ensemble has no training curve of its own
    for k in range(2):
        assert (run / "members" / str(k) / "curves.png").read_bytes()[:4] == PNG


def test_a_picture_that_cannot_be_drawn_is_a_warning_not_a_failed_run(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no fonts\nsecond line")

    monkeypatch.setattr("textcls.plot.plot_run", broken)
    result, run = _train_cli(tmp_path)
    assert result.exit_code == 0, result.output
    assert (run / "model.safetensors").is_file() and not (run / "curves.png").exists()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning == f"{run / 'curves.png'} not drawn (RuntimeError: no fonts); `textcls plot {run}` tries again"


def test_without_matplotlib_nothing_is_drawn_or_said(tmp_path, monkeypatch, caplog):
    run = tiny_finished_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails as when not installed
    assert plot_training_curves(run) == [] and not (run / "curves.png").exists()
    assert not caplog.records
