"""train.ema_decay: the averaging rule, that the average is what gets evaluated and saved, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from test_train_resume import interrupt_at, small_config, weights
from textcls.errors import ConfigError
from textcls.run.load import load_run
from textcls.train.ema import WeightAverage
from textcls.train.evaluate import evaluate
from textcls.train.loop import Interrupted, train


def test_average_follows_the_rule_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    avg = WeightAverage(model, decay=0.9)
    start = {k: v.clone() for k, v in avg.state_dict().items()}
    expected = {k: v.clone() for k, v in start.items()}
    for step in range(1, 40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3))  # moves the BatchNorm running stats and its integer batch counter
        d = min(0.9, (1 + step) / (10 + step))
        own = model.state_dict()
        for k, v in own.items():
            expected[k] = expected[k] + (1 - d) * (v - expected[k]) if v.dtype.is_floating_point else v.clone()
        avg.update()
    got = avg.state_dict()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6)
    assert got["1.num_batches_tracked"].item() == 39
    assert not torch.equal(got["0.weight"], model.state_dict()["0.weight"])
    assert not any(p.requires_grad for p in avg.model.parameters())


def test_ema_weights_are_the_evaluated_and_saved_ones(tmp_path):
    cfg = small_config(tmp_path, "ema", ema_decay=0.9, eval_every=4)
    result = train(cfg, quiet=True)
    best = weights(tmp_path / "ema" / "model.safetensors")
    raw = weights(tmp_path / "ema" / "last" / "model.safetensors")
    average = weights(tmp_path / "ema" / "last" / "ema.safetensors")
    assert not all(torch.equal(raw[k], average[k]) for k in raw)  # the average is not the trained weights
    step = json.loads((tmp_path / "ema" / "run.json").read_text())["step"]
    if step == result.steps:  # the best step is the last: the saved weights are the final average
        assert all(torch.equal(best[k], average[k]) for k in best)
    run = load_run(tmp_path / "ema")
    report = evaluate(run.model, _valid(cfg, run), run.labels, 16, torch.device("cpu"), "single", None, "fp32", 0)
    assert report["accuracy"] == pytest.approx(result.best_metric)


def _valid(cfg, run):
    from textcls.data.pipeline import tokenize_file

    return tokenize_file(cfg.data.valid, cfg.data, run.tokenizer, labels=run.labels)[0]


def test_ema_resumes_exactly(tmp_path, monkeypatch):
    opts = {"ema_decay": 0.95, "eval_every": 3}
    train(small_config(tmp_path, "full", **opts), quiet=True)
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(Interrupted):
            train(small_config(tmp_path, "cut", **opts), quiet=True)
    train(small_config(tmp_path, "cut", **opts), resume=True, quiet=True)
    for name in ("last/model.safetensors", "last/ema.safetensors", "model.safetensors"):
        full, cut = weights(tmp_path / "full" / name), weights(tmp_path / "cut" / name)
        assert all(torch.equal(full[k], cut[k]) for k in full), name


def test_ema_decay_is_validated(tmp_path):
    from conftest import tiny_config

    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_config(tmp_path / "t.tsv", None, tmp_path / "x", train={"ema_decay": 1.0})
