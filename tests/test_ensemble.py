"""`train.ensemble`: members with their own seeds, one tokenizer and split, probabilities averaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_config, write_tsv, sst2_slice
from textcls.errors import CheckpointError
from textcls.predict import predict_probabilities
from textcls.rundir import load_run, weights_digest
from textcls.train.ensemble import EnsembleClassifier, read_ensemble
from textcls.train.loop import train


class Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.logits


def test_ensemble_logits_give_the_mean_probability():
    a, b = [[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]], [[-1.0, 0.0, 4.0], [1.0, 1.0, 1.0]]
    out = EnsembleClassifier([Fixed(a), Fixed(b)])(torch.zeros(2, 3, dtype=torch.long))
    want = (torch.softmax(torch.tensor(a), -1) + torch.softmax(torch.tensor(b), -1)) / 2
    torch.testing.assert_close(torch.softmax(out, -1), want)
    multi = EnsembleClassifier([Fixed(a), Fixed(b)], task="multilabel")(torch.zeros(2, 3, dtype=torch.long))
    want = (torch.sigmoid(torch.tensor(a)) + torch.sigmoid(torch.tensor(b))) / 2
    torch.testing.assert_close(torch.sigmoid(multi), want)


def test_ensemble_trains_members_and_averages_them(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    result = train(tiny_config(train_file, valid_file, out, train={"ensemble": 2, "seed": 5}), quiet=True)
    info = read_ensemble(out)
    assert info["members"] == ["members/0", "members/1"] == info["finished"] and info["seeds"] == [5, 6]
    assert result.best_metric == pytest.approx(info["valid"]["accuracy"])
    for name in ("config.yaml", "tokenizer.json", "labels.json", "run.json"):
        assert (out / name).is_file(), name
    members = [load_run(out / m) for m in info["members"]]
    assert [m.cfg.train.seed for m in members] == [5, 6]
    assert all(m.tokenizer.to_str() == (out / "tokenizer.json").read_text() for m in members)
    assert weights_digest(out / "members/0") != weights_digest(out / "members/1")

    ensemble = load_run(out)
    texts = [t for t, _ in sst2_slice(20, "dev")]
    got = predict_probabilities(ensemble, texts)
    want = np.mean([predict_probabilities(m, texts) for m in members], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(predict_probabilities(members[0], texts), predict_probabilities(members[1], texts))

    res = run_cli("eval", str(out), str(valid_file))
    assert res.returncode == 0, res.stderr
    assert f"{info['valid']['accuracy']:.4f}" in res.stdout


def test_members_hold_out_the_same_validation_rows(tmp_path):
    train_file = write_tsv(tmp_path / "train.tsv", sst2_slice(300))
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, None, out, data={"valid_fraction": 0.2}, train={"ensemble": 2, "max_steps": 2})
    train(cfg, quiet=True)
    from textcls.data.pipeline import prepare_data

    held_out = [prepare_data(load_run(out / m).cfg, None).valid["input_ids"] for m in ("members/0", "members/1")]
    assert held_out[0] == held_out[1] and len(held_out[0]) == 60


def test_resume_trains_only_unfinished_members_and_unfinished_runs_refuse_to_load(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, valid_file, out, train={"ensemble": 3, "max_steps": 4})
    train(cfg, quiet=True)
    first = weights_digest(out / "members/0")
    info = read_ensemble(out)
    info["finished"] = ["members/0"]  # as if the run stopped during member 1
    (out / "ensemble.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="1 of 3 members done.*--resume"):
        load_run(out)
    res = run_cli("predict", str(out), str(valid_file))
    assert res.returncode == 2 and "--resume" in res.stderr and "Traceback" not in res.stderr

    mtime = (out / "members/0/model.safetensors").stat().st_mtime_ns
    train(cfg, out, resume=True, quiet=True)
    assert read_ensemble(out)["finished"] == ["members/0", "members/1", "members/2"]
    assert (out / "members/0/model.safetensors").stat().st_mtime_ns == mtime and weights_digest(out / "members/0") == first
    assert load_run(out).model.members.__len__() == 3


def test_ensemble_size_is_validated(sst2_files, tmp_path):
    from textcls.errors import ConfigError

    with pytest.raises(ConfigError, match="train.ensemble"):
        tiny_config(*sst2_files, tmp_path / "x", train={"ensemble": 0})
