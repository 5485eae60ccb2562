"""Learning-rate schedules: values at step 0, mid-warmup, end of warmup, end of hold, the last step."""

from __future__ import annotations

import math
import re

import pytest
import torch
from typer.testing import CliRunner

from conftest import sst2_slice, write_tsv
from textcls.cli import app
from textcls.config import TrainConfig
from textcls.train.schedules import key_steps, lr_at, lr_multiplier, phase, warmup_steps

TOTAL = 100


def cfg(**kw) -> TrainConfig:
    return TrainConfig(lr=1.0, warmup=10, **kw)


def values(c: TrainConfig, steps) -> list[float]:
    fn = lr_multiplier(c, TOTAL)
    return [fn(s) for s in steps]


def test_constant():
    # step 0, mid-warmup, end of warmup (= end of hold: no hold), middle, last update, end
    assert values(cfg(schedule="constant"), [0, 5, 10, 50, 99, 100]) == pytest.approx([0, 0.5, 1, 1, 1, 1])


def test_linear():
    assert values(cfg(schedule="linear"), [0, 5, 10, 55, 99, 100]) == pytest.approx([0, 0.5, 1, 0.5, 1 / 90, 0])


def test_polynomial_power_and_end_lr():
    c = cfg(schedule="polynomial", power=2.0, end_lr=0.1)
    # after warmup: (1 - end) * (1 - frac) ** 2 + end, frac = (s - 10) / 90
    assert values(c, [0, 5, 10, 55, 99, 100]) == pytest.approx(
        [0, 0.5, 1, 0.9 * 0.25 + 0.1, 0.9 * (1 / 90) ** 2 + 0.1, 0.1])


def test_cosine_warmup_lr_hold_and_floor():
    c = cfg(schedule="cosine", warmup_lr=0.1, hold_steps=20, min_lr=0.01)
    got = values(c, [0, 5, 10, 29, 30, 65, 99, 100])
    last = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 69 / 70))
    assert got == pytest.approx([0.1, 0.55, 1, 1, 1, 0.01 + 0.99 * 0.5, last, 0.01])


def test_warmup_ratio_and_no_warmup():
    assert warmup_steps(TrainConfig(warmup=0.1), 50) == 5
    assert warmup_steps(TrainConfig(warmup=3), 50) == 3
    fn = lr_multiplier(TrainConfig(lr=1.0, warmup=0, schedule="linear"), 10)
    assert fn(0) == 1.0 and fn(5) == pytest.approx(0.5)
    # warmup longer than the run is cut to the run
    assert lr_multiplier(TrainConfig(lr=1.0, warmup=50, schedule="linear"), 10)(9) == pytest.approx(0.9)


def test_lambda_lr_applies_the_curve_to_the_optimizer():
    c = TrainConfig(lr=2e-3, warmup=4, schedule="cosine", warmup_lr=1e-4, hold_steps=3, min_lr=1e-5)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=c.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(c, 20))
    used = []
    for _ in range(20):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used == pytest.approx([lr_at(c, 20, s) for s in range(20)])


def test_key_steps_hold_the_boundaries():
    c = cfg(schedule="cosine", hold_steps=20)
    steps = key_steps(c, TOTAL)
    assert {0, 5, 10, 30, 99, 100} <= set(steps)
    assert [phase(c, TOTAL, s) for s in (0, 10, 29, 30, 100)] == ["warmup", "hold", "hold", "decay", "end"]


def test_schedule_command_counts_steps_from_data_and_plots(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(50))
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{train: {train}, text_columns: [sentence], max_length: 32}}\n"
                      "tokenizer: {vocab_size: 200, min_frequency: 1}\n"
                      "train: {epochs: 2, batch_size: 8, grad_accum: 2, warmup: 0.25}\n")
    png = tmp_path / "lr.png"
    res = CliRunner().invoke(app, ["schedule", str(config), "--plot", str(png), "--set", "train.schedule=cosine"])
    assert res.exit_code == 0, res.output
    # 50 rows / 8 = 7 batches -> ceil(7 / 2) = 4 steps per epoch -> 8 steps, warmup 2
    assert "8 optimizer steps" in " ".join(res.stdout.split())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(app, ["schedule", str(config), "--steps", "1000"])
    assert res.exit_code == 0 and "1000 optimizer steps" in " ".join(res.stdout.split())
    assert re.search(r"│\s+250 │", res.stdout)  # end of warmup listed
    res = CliRunner().invoke(app, ["schedule", str(config), "--steps", "10", "--plot", str(tmp_path / "lr.txt")])
    assert res.exit_code == 2 and ".txt is not an image format" in res.output
    assert not (tmp_path / "lr.txt").exists() and not list(tmp_path.glob(".lr.txt*"))


@pytest.mark.parametrize("key", ["warmup_lr", "min_lr", "end_lr"])
def test_schedule_ends_above_the_peak_lr_are_refused(key):
    from textcls.config import config_from_dict
    from textcls.errors import ConfigError

    assert getattr(config_from_dict({"train": {"lr": 1e-3, key: 1e-3}}).train, key) == 1e-3
    with pytest.raises(ConfigError, match=rf"`train.{key}` \(0.01\) is above `train.lr` \(0.001\)"):
        config_from_dict({"train": {"lr": 1e-3, key: 1e-2}})


def test_plan_matches_the_loop():
    from textcls.train.steps import plan_steps

    assert plan_steps(TrainConfig(epochs=2, grad_accum=2), 7).total_steps == 8
    assert plan_steps(TrainConfig(epochs=0.5, grad_accum=1), 7).total_steps == 4
    assert plan_steps(TrainConfig(epochs=3, max_steps=5), 7).total_steps == 5


def test_schedule_without_a_config_shows_the_demo_config():
    from textcls.config import load_config

    demo = load_config(None).train
    res = CliRunner().invoke(app, ["schedule", "--steps", "100"])
    assert res.exit_code == 0, res.output
    assert f"{demo.schedule} schedule, 100 optimizer steps, base lr {demo.lr:g}" in " ".join(res.stdout.split())
