"""`textcls pretrain` end to end: exact resume, init_from, and pretrain -> train -> predict via the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli, sst2_slice, tiny_config, tiny_model, write_tsv
from textcls.config import TokenizerConfig, config_from_dict, load_config
from textcls.data.tokenizer import load_tokenizer, train_tokenizer
from textcls.errors import CheckpointError, ConfigError
from textcls.plot import run_curves
from textcls.pretrain import loop as pretrain_loop
from textcls.pretrain.loop import pretrain
from textcls.run.load import build_model, load_run
from textcls.run.weights import load_weights
from textcls.train.logs import read_metrics
from textcls.train.loop import Interrupted, _init_from, train


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    """A plain-text file and a TSV file (its `sentence` column): 200 + 100 real SST-2 sentences."""
    txt = tmp_path / "unlabelled.txt"
    txt.write_text("\n".join(s for s, _ in sst2_slice(200, offset=1000)) + "\n", encoding="utf-8")
    tsv = write_tsv(tmp_path / "more.tsv", sst2_slice(100, offset=2000))
    return txt, tsv


def _config(tmp_path: Path, out: Path, **pretrain):
    txt, tsv = _corpus(tmp_path)
    vocab = tmp_path / "tokenizer.json"
    if not vocab.exists():  # one tokenizer for every run: `tokenizers` training breaks frequency ties at random
        vocab.write_text(train_tokenizer([s for s, _ in sst2_slice(300, offset=1000)],
                                         TokenizerConfig(vocab_size=300, min_frequency=1)).to_str())
    return config_from_dict({
        "data": {"text_columns": ["sentence"], "max_length": 32},
        "tokenizer": {"path": str(vocab)},
        "model": tiny_model(embedding_size=16, dropout=0.1),
        "train": {"max_steps": 6, "batch_size": 8, "lr": 2e-3, "seed": 0, "log_every": 1000, "eval_every": 3,
                  "num_threads": 1},
        "pretrain": {"files": [str(txt), str(tsv)], "whole_word_mask": True, **pretrain},
        "output": {"dir": str(out)},
    })


class _StopAtStep:
    """Stands in for the SIGINT flag: reports an interrupt at the n-th step boundary."""

    def __init__(self, n: int):
        self.n, self.checks = n, 0

    def __call__(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @property
    def raised(self) -> bool:
        self.checks += 1
        return self.checks == self.n


@pytest.mark.parametrize("sop", [False, True])
def test_resume_mid_pretraining_matches_uninterrupted(tmp_path, monkeypatch, sop):
    full = pretrain(_config(tmp_path, tmp_path / "full", sop=sop), quiet=True)
    monkeypatch.setattr(pretrain_loop, "_StopFlag", _StopAtStep(4))  # after step 4: between evaluations
    with pytest.raises(Interrupted):
        pretrain(_config(tmp_path, tmp_path / "cut", sop=sop), quiet=True)
    state = json.loads((tmp_path / "cut" / "last" / "state.json").read_text())
    assert state["step"] == 4 and state["position"] == 4
    monkeypatch.undo()
    resumed = pretrain(_config(tmp_path, tmp_path / "cut", sop=sop), resume=True, quiet=True)
    assert resumed.steps == full.steps == 6
    a = load_weights(tmp_path / "full" / "model.safetensors")
    b = load_weights(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("mlm.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    def lines(run: str) -> list[dict]:
        return [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert lines("full") == lines("cut")  # held-out MLM loss/accuracy at steps 3 and 6, identical
    assert {"mlm_loss", "mlm_accuracy"} <= lines("full")[-1].keys()
    assert ("sop_accuracy" in lines("full")[-1]) == sop


def test_init_from_loads_the_encoder_and_ignores_pretraining_heads(tmp_path, sst2_files):
    pretrain(_config(tmp_path, tmp_path / "pre", sop=True), quiet=True)
    train, valid = sst2_files
    cfg = tiny_config(train, valid, tmp_path / "cls", model={**tiny_model(embedding_size=16, dropout=0.1),
                                                             "init_from": str(tmp_path / "pre")})
    tok = load_tokenizer(tmp_path / "pre" / "tokenizer.json")
    model = build_model(cfg, tok, 2)
    _init_from(model, str(tmp_path / "pre"))
    source = load_weights(tmp_path / "pre" / "model.safetensors")
    own = model.state_dict()
    shared = [k for k in source if k in own]
    assert any(k.startswith("embeddings.") for k in shared) and any(k.startswith("encoder.") for k in shared)
    assert all(torch.equal(own[k], source[k]) for k in shared)
    assert not (tmp_path / "pre" / "labels.json").exists()
    with pytest.raises(CheckpointError, match="init_from"):  # eval/predict: a pretrain run has no classifier
        load_run(tmp_path / "pre")


@pytest.mark.slow  # 20-40 s of whole CLI runs; `make test-slow` and CI run it
def test_pretrain_then_train_then_predict_through_the_cli(tmp_path, sst2_files):
    txt, tsv = _corpus(tmp_path)
    train, valid = sst2_files
    model = ", ".join(f"{k}: {v}" for k, v in tiny_model(embedding_size=16).items())
    (tmp_path / "pre.yaml").write_text(
        "data: {text_columns: [sentence], max_length: 32}\n"
        "tokenizer: {vocab_size: 300, min_frequency: 1}\n"
        f"model: {{{model}}}\n"
        "train: {max_steps: 4, batch_size: 8, log_every: 1000, num_threads: 1}\n"
        f"pretrain: {{files: [{txt.name}, {tsv.name}], whole_word_mask: true, sop: true}}\n"
        "output: {dir: pre}\n", encoding="utf-8")
    (tmp_path / "cls.yaml").write_text(
        f"data: {{train: {train.name}, valid: {valid.name}, text_columns: [sentence], max_length: 32}}\n"
        f"model: {{{model}, init_from: pre}}\n"
        "train: {max_steps: 4, batch_size: 16, log_every: 1000, num_threads: 1}\n"
        "output: {dir: cls}\n", encoding="utf-8")
    done = run_cli("pretrain", "pre.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mlm_accuracy" in done.stderr  # the summary line (`--quiet` silences it)
    assert {"config.yaml", "tokenizer.json", "model.safetensors", "run.json", "metrics.jsonl"} <= \
        {p.name for p in (tmp_path / "pre").iterdir()}
    # --resume: a changed plan is refused naming the key; no CONFIG means the run's own.
    done = run_cli("pretrain", "pre.yaml", "-o", "pre", "--resume", "--set", "train.lr=0.5", cwd=tmp_path)
    assert done.returncode == 2
    assert "`train.lr` is 0.5 here" in done.stderr and "textcls pretrain --output" in done.stderr
    assert run_cli("pretrain", "-o", "pre", "--resume", "--quiet", cwd=tmp_path).returncode == 0
    done = run_cli("info", "pre", cwd=tmp_path)
    assert done.returncode == 0 and "a pretraining run: its encoder with the classifier head" in " ".join(
        done.stdout.split())
    # plot draws the pretraining curves (they used to be empty panels)
    curves = run_curves(read_metrics(tmp_path / "pre" / "metrics.jsonl"))
    assert list(curves) == ["train loss", "held-out masked-LM loss", "learning rate", "validation mlm_accuracy"]
    assert all(curves.values())
    done = run_cli("plot", "pre", "--output", "pre.png", cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "pre.png").read_bytes()[:4] == b"\x89PNG"
    done = run_cli("pretrain", cwd=tmp_path)
    assert done.returncode == 2 and "pass the pretraining CONFIG" in done.stderr
    done = run_cli("train", "cls.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cls" / "tokenizer.json").read_text() == (tmp_path / "pre" / "tokenizer.json").read_text()
    done = run_cli("predict", "cls", "-", input="a gorgeous film\nutterly boring\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in done.stdout.splitlines()]
    assert len(rows) == 2 and all(r["label"] in ("0", "1") for r in rows)



def test_pretrain_reports_a_missing_file_as_a_user_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("pretrain: {files: [nowhere.txt]}\n", encoding="utf-8")
    done = run_cli("pretrain", "bad.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and "nowhere.txt" in done.stderr


@pytest.mark.parametrize("name", ["pretrain_sst2.yaml", "sst2_from_pretrained.yaml"])
def test_pretraining_configs_load(name):
    cfg = load_config(ROOT / "configs" / name)
    if name == "pretrain_sst2.yaml":
        # Names only: the files are the benchmark data, which tests never read (they ship their own slices).
        assert [Path(f).parts[-2:] for f in cfg.pretrain.files] == [("sst2", "train.tsv"), ("sst2", "test.tsv")]
    else:
        assert Path(cfg.model.init_from).resolve() == (ROOT / "runs" / "pretrain_sst2").resolve()
        pre = load_config(ROOT / "configs" / "pretrain_sst2.yaml")
        assert dataclasses.replace(pre.model, init_from=cfg.model.init_from) == cfg.model  # same architecture


def test_pretrain_refuses_init_from(tmp_path):
    cfg = _config(tmp_path, tmp_path / "pre")
    cfg.model.init_from = str(tmp_path / "somewhere")
    with pytest.raises(ConfigError, match="pretraining starts from random weights"):
        pretrain(cfg, quiet=True)


@pytest.mark.parametrize("change", [{"num_layers": 1}, {"sharing": {"strategy": "all"}}])
def test_init_from_a_deeper_or_unshared_encoder_is_refused(tmp_path, sst2_files, change):
    """Fewer layers or more sharing than the source would silently drop its encoder tensors."""
    pretrain(_config(tmp_path, tmp_path / "pre"), quiet=True)
    model = {**tiny_model(embedding_size=16), **change, "init_from": str(tmp_path / "pre")}
    cfg = tiny_config(*sst2_files, tmp_path / "cls", model=model, train={"max_steps": 1})
    with pytest.raises(ConfigError, match=r"has encoder tensors this model lacks .* same architecture"):
        train(cfg, quiet=True)


def test_pretrain_refuses_keys_it_would_ignore(tmp_path):
    cfg = _config(tmp_path, tmp_path / "pre")
    cfg.train.label_smoothing, cfg.train.patience = 0.1, 2
    with pytest.raises(ConfigError, match=r"`train.patience`, `train.label_smoothing` are for training a classifier"):
        pretrain(cfg, quiet=True)
    cfg.train.label_smoothing, cfg.train.patience, cfg.train.adversarial_eps = 0.0, None, 0.5
    with pytest.raises(ConfigError, match=r"`train.adversarial_eps` is for training a classifier"):
        pretrain(cfg, quiet=True)
