"""Exact resume after a real interruption, atomic checkpoints, SIGTERM -> exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import child_env, interrupt_at, sst2_slice, tiny_config, tiny_model, write_tsv
from textcls.config import load_config
from textcls.data.tokenizer import load_tokenizer
from textcls.errors import CheckpointError
from textcls.run.load import build_model, load_run
from textcls.train import checkpoint as ckpt
from textcls.train.loop import Interrupted, train
from textcls.train.optim import build_optimizer


def small_config(tmp_path: Path, out: str, n_train: int = 64, n_valid: int = 32, **train_opts):
    train_file = tmp_path / "train.tsv"
    if not train_file.exists():
        write_tsv(train_file, sst2_slice(n_train))
        write_tsv(tmp_path / "valid.tsv", sst2_slice(n_valid, "dev"))
    valid = tmp_path / "valid.tsv" if n_valid else None
    cfg = tiny_config(train_file, valid, tmp_path / out, data={"max_length": 32}, tokenizer={"vocab_size": 200},
                      model=tiny_model(dropout=0.1))
    opts = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup": 2, "seed": 3, "log_every": 1, **train_opts}
    for key, value in opts.items():
        setattr(cfg.train, key, value)
    return cfg


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_resume_after_sigterm_mid_epoch_gives_identical_weights(tmp_path, monkeypatch):
    opts = {"batch_size": 4, "grad_accum": 2, "eval_every": 3, "log_every": 2}  # 16 batches = 8 steps per epoch
    reference = train(small_config(tmp_path, "full", **opts), quiet=True)
    assert reference.steps == 16

    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(Interrupted):
            train(small_config(tmp_path, "cut", **opts), quiet=True)
    state = json.loads((tmp_path / "cut" / "last" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["position"]) == (5, 0, 10)  # inside the first epoch

    resumed = train(small_config(tmp_path, "cut", **opts), resume=True, quiet=True)
    assert resumed.steps == 16 and resumed.best_metric == reference.best_metric
    full, cut = (weights(tmp_path / run / "last" / "model.safetensors") for run in ("full", "cut"))
    assert full.keys() == cut.keys()
    assert all(torch.equal(full[k], cut[k]) for k in full)
    best_full, best_cut = (weights(tmp_path / run / "model.safetensors") for run in ("full", "cut"))
    assert all(torch.equal(best_full[k], best_cut[k]) for k in best_full)
    # the log reads as one run: same records, each step once
    log = lambda run: (tmp_path / run / "metrics.jsonl").read_text().splitlines()  # noqa: E731
    assert log("cut") == log("full")


def _tiny_training_state():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def kill_at_rename(monkeypatch, n: int, after: bool = False) -> None:
    """Make the n-th os.replace (every atomic write ends in one) die before (or right after) renaming."""
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == n and not after:
            raise KeyboardInterrupt
        real(src, dst)
        if len(calls) == n:
            raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", replace)


def test_checkpoint_killed_mid_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    model, opt, sched = _tiny_training_state()
    ckpt.save_checkpoint(tmp_path / "last", model, opt, sched, {"step": 1})
    before = model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    fresh, opt2, sched2 = _tiny_training_state()

    with monkeypatch.context() as m:  # new weights written, optimizer state not yet
        m.setattr(ckpt.torch, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            ckpt.save_checkpoint(tmp_path / "last", model, opt, sched, {"step": 2})
    assert ckpt.load_checkpoint(tmp_path / "last", fresh, opt2, sched2)["step"] == 1
    assert torch.equal(fresh.weight, before)

    # renames: weights (1), state.json (2), last -> last.old (3), temp -> last (4); die between 3 and 4
    with monkeypatch.context() as m:
        kill_at_rename(m, 4)
        with pytest.raises(KeyboardInterrupt):
            ckpt.save_checkpoint(tmp_path / "last", model, opt, sched, {"step": 3})
    assert not (tmp_path / "last").exists() and (tmp_path / "last.old").exists()
    assert ckpt.load_checkpoint(tmp_path / "last", fresh, opt2, sched2)["step"] == 1
    assert torch.equal(fresh.weight, before)

    # a SIGKILL skips all cleanup and leaves temp files behind; the next run removes them
    (tmp_path / ".last.abc123").mkdir()
    (tmp_path / ".model.safetensors.next").write_bytes(b"partial")
    ckpt.remove_stale_temp(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_best_weights_swap_is_loadable_at_every_point(tmp_path, monkeypatch):
    train(small_config(tmp_path, "run", epochs=1, n_valid=0), quiet=True)
    run_dir = tmp_path / "run"
    model = load_run(run_dir).model
    old_bias = model.head.bias.clone()
    with torch.no_grad():
        model.head.bias.add_(1.0)
    # renames in save_best: temp weights (1), run.json with the pending checksum (2),
    # weights onto model.safetensors (3), final run.json (4)
    for n, after, expected in [(2, True, old_bias), (3, True, old_bias + 1), (4, False, old_bias + 1)]:
        with monkeypatch.context() as m:
            kill_at_rename(m, n, after)
            with pytest.raises(KeyboardInterrupt):
                ckpt.save_best(run_dir, model, step=99)
        assert torch.equal(load_run(run_dir).model.head.bias, expected), (n, after)
    ckpt.save_best(run_dir, model, step=99)
    assert "pending_sha256" not in json.loads((run_dir / "run.json").read_text())
    # a weights file that matches neither checksum is still refused
    data = (run_dir / "model.safetensors").read_bytes()
    (run_dir / "model.safetensors").write_bytes(data[:-8] + b"\1" * 8)
    with pytest.raises(CheckpointError, match="checksum"):
        load_run(run_dir)


def test_sigterm_exits_130_with_a_resumable_last(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    write_tsv(tmp_path / "train.tsv", sst2_slice(64))
    cfg_path.write_text(
        f"data: {{train: {tmp_path / 'train.tsv'}, text_columns: [sentence], max_length: 32}}\n"
        "tokenizer: {vocab_size: 200, min_frequency: 1}\n"
        f"model: {json.dumps(tiny_model())}\n"
        "train: {epochs: 1000, batch_size: 8, log_every: 1, num_threads: 1}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n")
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "train", str(cfg_path), "-q"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert state["step"] >= 1 and state["total_steps"] == 8000
    cfg = load_config(tmp_path / "run" / "config.yaml")
    model = build_model(cfg, load_tokenizer(tmp_path / "run" / "tokenizer.json"), 2)
    opt = build_optimizer(model, cfg.train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    assert ckpt.load_checkpoint(tmp_path / "run" / "last", model, opt, sched)["step"] == state["step"]


def test_resume_refuses_when_the_data_no_longer_gives_the_same_plan(tmp_path):
    train(small_config(tmp_path, "run", epochs=1, n_valid=0), quiet=True)
    write_tsv(tmp_path / "train.tsv", sst2_slice(96))  # more rows -> more batches per epoch
    with pytest.raises(CheckpointError, match="planned for 8 steps but the data now gives 12"):
        train(small_config(tmp_path, "run", epochs=1, n_valid=0), resume=True, quiet=True)


def test_a_signal_in_the_last_step_finishes_the_run_and_says_so(tmp_path, monkeypatch):
    reference = train(small_config(tmp_path, "full"), quiet=True)
    assert not reference.stop_requested
    with monkeypatch.context() as m:
        interrupt_at(m, reference.steps)
        late = train(small_config(tmp_path, "late"), quiet=True)
    assert late.stop_requested and late.steps == reference.steps
    a, b = weights(tmp_path / "full" / "model.safetensors"), weights(tmp_path / "late" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the run is whole


def test_resume_refuses_a_label_order_other_than_the_runs(tmp_path):
    """The label list is part of what the checkpoint was trained on: a resume that would map the labels to
    other ids (the data changed, or labels.json was edited) is refused, not trained silently."""
    train(small_config(tmp_path, "run", epochs=1, n_valid=0), quiet=True)
    labels = tmp_path / "run" / "labels.json"
    labels.write_text(json.dumps(list(reversed(json.loads(labels.read_text())))))
    with pytest.raises(CheckpointError, match=r"its labels.json lists the labels \['1', '0'\] but the training data "
                                              r"now gives \['0', '1'\]"):
        train(small_config(tmp_path, "run", epochs=1, n_valid=0), resume=True, quiet=True)
