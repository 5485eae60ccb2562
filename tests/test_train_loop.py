"""The training loop: determinism, bf16, evaluation timing, early stopping, step checkpoints, logs,
pretrained word vectors, option checks."""

from __future__ import annotations

import json
import logging
import math
import sys
from types import SimpleNamespace

import datasets
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from test_train_resume import small_config
from textcls.cli import app
from textcls.data.pipeline import get_tokenizer
from textcls.errors import ConfigError, DataError
from textcls.model.word_vectors import load_word_vectors
from textcls.run.load import load_run
from textcls.train.logs import read_metrics
from textcls.train.loop import _class_weights, train
from textcls.train.schedules import lr_at


def evals(run_dir) -> list[dict]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] != "train"]


def test_two_cpu_runs_give_identical_weights_and_eval_every_includes_epoch_ends(tmp_path):
    opts = {"eval_every": 4, "eval_each_epoch": False}  # 8 steps per epoch, 16 in all
    a = train(small_config(tmp_path, "a", **opts), quiet=True)
    b = train(small_config(tmp_path, "b", **opts), quiet=True)
    wa, wb = (load_file(str(tmp_path / run / "last" / "model.safetensors")) for run in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and a.best_metric == b.best_metric
    assert [r["step"] for r in evals(tmp_path / "a")] == [4, 8, 12, 16]
    # `kind: train` records: every log_every (1) steps, the lr that update used, a finite loss
    cfg = small_config(tmp_path, "a", **opts)
    logged = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in logged] == list(range(1, 17))
    assert [r["lr"] for r in logged] == pytest.approx([lr_at(cfg.train, 16, s - 1) for s in range(1, 17)])
    assert all(math.isfinite(r["loss"]) for r in logged)
    # ... and `textcls plot` draws them
    res = CliRunner().invoke(app, ["plot", str(tmp_path / "a"), "--output", str(tmp_path / "curves.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_early_stopping_and_step_checkpoints(tmp_path, capsys):
    # lr ~ 0: accuracy never improves after the first eval -> stop after `patience` more evals
    cfg = small_config(tmp_path, "run", lr=1e-12, eval_every=2, patience=3, save_total_limit=2)
    result = train(cfg)
    run_dir = tmp_path / "run"
    assert result.steps == 8
    assert "early stopping at step 8: accuracy has not improved in 3 evaluation(s)" in " ".join(
        capsys.readouterr().err.split())
    assert [(r["step"], r["kind"]) for r in evals(run_dir)] == [(2, "step"), (4, "step"), (6, "step"), (8, "epoch")]
    state = json.loads((run_dir / "last" / "state.json").read_text())
    assert (state["best_step"], state["bad_evals"]) == (2, 3)
    # the two newest step checkpoints, plus the best one
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-6", "checkpoint-8"]
    assert json.loads((run_dir / "checkpoint-6" / "state.json").read_text())["step"] == 6
    assert json.loads((run_dir / "run.json").read_text())["step"] == 2


class FakeSummaryWriter:
    scalars: list[tuple[str, float, int]] = []

    def __init__(self, log_dir: str):
        self.log_dir = log_dir

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.scalars.append(("closed", 0, 0))


def test_bf16_autocast_on_cpu_trains_and_logs_to_tensorboard(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", SimpleNamespace(SummaryWriter=FakeSummaryWriter))
    cfg = small_config(tmp_path, "run", precision="bf16", max_steps=3, device="cpu")
    cfg.output.tensorboard = True
    assert train(cfg, quiet=True).steps == 3
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)  # 3 train records + 1 eval
    tags = {(tag, step) for tag, _, step in FakeSummaryWriter.scalars}
    assert {("train/loss", 1), ("train/lr", 3), ("valid/accuracy", 3), ("valid/loss", 3), ("closed", 0)} <= tags


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_units_warns_once(tmp_path, monkeypatch, caplog, native):
    monkeypatch.setattr("textcls.device.cpu_has_bf16", lambda: native)
    with caplog.at_level(logging.WARNING, logger="textcls"):
        train(small_config(tmp_path, "run", precision="bf16", max_steps=1, device="cpu"), quiet=True)
    assert caplog.text.count("emulated and usually slower than fp32") == (0 if native else 1)
    assert ("train.precision" in caplog.text) != native


def test_fp16_needs_cuda_and_tensorboard_needs_its_package(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="fp16"):
        train(small_config(tmp_path, "a", precision="fp16", device="cpu"), quiet=True)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    cfg = small_config(tmp_path, "b")
    cfg.output.tensorboard = True
    with pytest.raises(ConfigError, match="tensorboard"):
        train(cfg, quiet=True)
    assert not (tmp_path / "b" / "config.yaml").exists()  # refused before any work


def test_auto_class_weights_come_from_the_training_labels():
    data = SimpleNamespace(labels=["a", "b"], train=datasets.Dataset.from_dict({"label": [0, 0, 0, 1]}))
    cfg = SimpleNamespace(train=SimpleNamespace(class_weights="auto"), data=SimpleNamespace(task="single"))
    assert _class_weights(cfg, data, torch.device("cpu")).tolist() == pytest.approx([4 / 6, 4 / 2])
    cfg.train.class_weights = [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="3 weights but there are 2 labels"):
        _class_weights(cfg, data, torch.device("cpu"))


# --------------------------------------------------------------------------- word vectors


def test_word_vectors_file_reader(tmp_path):
    glove = tmp_path / "vec.txt"
    glove.write_text("4 3\nthe 1 2 3\nfilm 0.5 -0.5 0\nnotinvocab 9 9 9\n[PAD] 7 7 7\n", encoding="utf-8")
    emb = torch.nn.Embedding(5, 3, padding_idx=0)
    before = emb.weight.detach().clone()
    loaded = load_word_vectors(emb, glove, {"[PAD]": 0, "the": 1, "film": 2, "a": 3, "movie": 4}, freeze=True)
    assert (loaded.found, loaded.vocab_size) == (2, 5)
    assert emb.weight[1].tolist() == [1, 2, 3] and emb.weight[2].tolist() == [0.5, -0.5, 0]
    assert torch.equal(emb.weight[[0, 3, 4]], before[[0, 3, 4]])  # padding row and unknown words untouched
    assert not emb.weight.requires_grad
    glove.write_text("the 1 2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"vec.txt, line 1: word vectors have 2 dimensions .* has 3"):
        load_word_vectors(emb, glove, {"the": 1})


def test_pretrained_frozen_embeddings_through_training(tmp_path):
    cfg = small_config(tmp_path, "run", max_steps=3, lr=1e-2)
    vocab = get_tokenizer(cfg).get_vocab()  # the tokenizer training will use (cached)
    words = sorted(w for w in vocab if w.isalpha() and len(w) > 2)[:5] + ["zzzunknown"]
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} " + " ".join(f"{(i + 1) * 0.1 + d:.2f}" for d in range(8)) + "\n"
                             for i, w in enumerate(words)), encoding="utf-8")
    cfg.model.embedding_size = 8
    cfg.model.embeddings.pretrained = str(glove)
    cfg.model.embeddings.freeze = True
    train(cfg, quiet=True)
    run = load_run(tmp_path / "run")
    assert run.tokenizer.get_vocab() == vocab
    for i, w in enumerate(words[:5]):
        expected = torch.tensor([(i + 1) * 0.1 + d for d in range(8)])
        assert torch.allclose(run.model.embeddings.word.weight[vocab[w]], expected), w  # still exactly the file's
    # freeze: false starts from the file's vectors and trains them
    cfg = small_config(tmp_path, "trained", max_steps=3, lr=1e-2)
    cfg.model.embedding_size = 8
    cfg.model.embeddings.pretrained = str(glove)
    train(cfg, quiet=True)
    weights = load_run(tmp_path / "trained").model.embeddings.word.weight
    moved = [(weights[vocab[w]] - torch.tensor([(i + 1) * 0.1 + d for d in range(8)])).abs().max().item()
             for i, w in enumerate(words[:5])]
    assert 0 < max(moved) < 0.5  # near the file's vectors, but trained
    # the vector size must match the embedding size
    cfg = small_config(tmp_path, "bad", max_steps=1)
    cfg.model.embeddings.pretrained = str(glove)
    with pytest.raises(DataError, match="glove.txt, line 1: word vectors have 8 dimensions"):
        train(cfg, quiet=True)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_units(tmp_path, monkeypatch, caplog, native):
    from textcls.config import TrainConfig
    from textcls.device import autocast_context, resolve_precision

    monkeypatch.setattr("textcls.device.cpu_has_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert TrainConfig().precision == "auto"
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with autocast_context(cpu, "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == (torch.bfloat16 if native else torch.float32)
    with caplog.at_level(logging.WARNING, logger="textcls"):
        train(small_config(tmp_path, "run", precision="auto", max_steps=1, device="cpu"), quiet=True)
    assert "emulated" not in caplog.text  # auto never picks emulated bf16


def test_machine_summary_names_the_cpu_its_speed_flags_and_threads(tmp_path, monkeypatch):
    from textcls import device

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse avx2 avx512f amx_bf16 xyz\n")
    assert device._cpu_model_and_flags(str(info)) == ("Example CPU 9000", ["avx2", "avx512f", "amx_bf16"])
    # a virtual machine's generic name gets the family and model numbers that tell its CPUs apart
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: avx2\n"
                    "processor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\n")
    assert device._cpu_model_and_flags(str(info)) == ("AMD EPYC, family 25 model 17", ["avx2"])
    monkeypatch.setattr(device, "_cpu_model_and_flags", lambda: ("Example CPU 9000", []))
    line = device.machine_summary()
    assert "Example CPU 9000 (no AVX2/AVX-512/AMX)" in line and f"{torch.get_num_threads()} threads" in line
