"""Non-finite numbers never become a run: a diverging training stops with the step and advice (exit 2) before
its weights are saved, nan word vectors are refused, and weights holding nan are refused at load."""

from __future__ import annotations

import pytest
import torch

from conftest import run_cli, tiny_config
from textcls.config import save_config
from textcls.errors import CheckpointError, DataError, DivergedError
from textcls.run.load import load_run
from textcls.run.weights import load_weights, save_weights
from textcls.train.loop import train


def test_a_huge_learning_rate_stops_with_the_step_and_advice(tmp_path, sst2_files):
    cfg = tiny_config(*sst2_files, tmp_path / "run", train={"lr": 1e12, "max_grad_norm": None, "warmup": 0,
                                                          "epochs": 2, "log_every": 2})
    with pytest.raises(DivergedError, match=r"training diverged by step \d+: .* lower `train.lr` \(now 1e\+12\)"):
        train(cfg, quiet=True)
    weights = tmp_path / "run" / "model.safetensors"
    if weights.exists():  # whatever was saved before the divergence is finite
        assert all(torch.isfinite(v).all() for v in load_weights(weights).values())
    save_config(cfg, tmp_path / "cfg.yaml")
    result = run_cli("train", str(tmp_path / "cfg.yaml"), "--output", str(tmp_path / "cli"))
    assert result.returncode == 2 and "training diverged" in result.stderr and "Traceback" not in result.stderr


def test_word_vectors_with_nan_are_refused(tmp_path, sst2_files):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("the 0.1 0.2 0.3 0.4\nfilm nan 0.2 0.3 0.4\n")
    cfg = tiny_config(*sst2_files, tmp_path / "run", model={"embeddings": {"pretrained": str(vectors)},
                                                            "embedding_size": 4})
    with pytest.raises(DataError, match=r"vectors.txt, line 2: the vector of 'film' holds nan or inf"):
        train(cfg, quiet=True)


def test_weights_holding_nan_are_refused_at_load(tmp_path, sst2_files):
    train(tiny_config(*sst2_files, tmp_path / "run", train={"max_steps": 2}), quiet=True)
    path = tmp_path / "run" / "model.safetensors"
    state = load_weights(path)
    state["head.bias"] = torch.full_like(state["head.bias"], float("nan"))
    save_weights(state, path)
    (tmp_path / "run" / "run.json").unlink()  # no checksum to trip over first: the nan check is what refuses
    with pytest.raises(CheckpointError, match=r"tensor head.bias holds nan or inf"):
        load_run(tmp_path / "run")
