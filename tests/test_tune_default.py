"""`textcls tune` on a config without a `tune:` section searches a default space chosen by the model kind,
and prints it before the search."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from conftest import sst2_slice, tiny_config, write_tsv
from textcls.cli import app
from textcls.config import save_config
from textcls.tune import Tuner, default_space, describe_space

pytest.importorskip("optuna")


@pytest.fixture
def cfg(tmp_path):
    train, valid = write_tsv(tmp_path / "train.tsv", sst2_slice(64)), write_tsv(tmp_path / "valid.tsv",
                                                                               sst2_slice(32, "dev"))
    return tiny_config(train, valid, tmp_path / "run", train={"max_steps": 2})


def test_the_space_follows_the_model_kind(cfg):
    kind, space = default_space(cfg)
    assert kind == "a model trained from scratch"
    assert space["train.lr"] == {"low": 1e-4, "high": 3e-3, "log": True}
    assert space["model.num_layers"] == {"choices": [1, 2, 4]}  # the tiny config has 2 layers
    assert {"model.dropout", "train.batch_size", "train.weight_decay", "model.pooling"} <= set(space)
    base = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from="runs/base"))
    kind, space = default_space(base)
    assert kind == "a pretrained base fine-tuned whole" and space["train.lr"]["high"] <= 2e-4
    assert "model.num_layers" not in space and "model.pooling" not in space  # the base's shape stays
    adapters = dataclasses.replace(base, train=dataclasses.replace(base.train, trainable="adapters"))
    kind, space = default_space(adapters)
    assert kind == "adapters trained on a frozen base" and space["train.lr"]["low"] == 1e-4


def test_the_tuner_searches_the_default_space_and_drops_keys_the_config_cannot_take(cfg, tmp_path):
    tuner = Tuner(cfg, tmp_path / "tune", 60, "accuracy", 1)
    assert tuner.default_kind == "a model trained from scratch"
    assert [p.key for p in tuner.params] == list(default_space(cfg)[1])
    lines = describe_space(tuner.params)
    assert "train.lr: 0.0001 .. 0.003 (log)" in lines and "model.pooling: cls | mean | max" in lines
    shared = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, sharing=dataclasses.replace(cfg.model.sharing, strategy="cycle", num_unique=2)))
    keys = [p.key for p in Tuner(shared, tmp_path / "tune2", 60, "accuracy", 1).params]
    assert "model.num_layers" not in keys and "train.lr" in keys  # 1 layer cannot cycle through 2 unique ones


def test_cli_prints_the_default_space_and_runs_a_trial(cfg, tmp_path):
    config = tmp_path / "tiny.yaml"
    save_config(cfg, config)
    out = tmp_path / "search"
    result = CliRunner().invoke(app, ["tune", str(config), "--trials", "1", "--budget", "5m", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "has no `tune:` section: searching the default space for a model trained from scratch" in result.output
    assert "train.lr: 0.0001 .. 0.003 (log)" in result.output
    trial = json.loads((out / "trials.jsonl").read_text().splitlines()[0])
    assert set(trial["params"]) == set(default_space(cfg)[1])
    assert (out / "best.yaml").exists()
