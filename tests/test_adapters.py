"""Adapters: near-identity start, per-depth slots, freezing by name, adapter-only run directories."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import run_cli, sst2_slice, tiny_config, tiny_model, write_tsv
from textcls.config import config_from_dict
from textcls.errors import CheckpointError, ConfigError
from textcls.model import TextClassifier
from textcls.model.adapters import BottleneckAdapter, adapter_modules, bottleneck_size
from textcls.model.trainable import apply_trainable, count_trainable, trainable_names
from textcls.run.info import write_run_info
from textcls.run.load import build_model, load_run
from textcls.run.weights import load_weights, save_weights
from textcls.train.loop import Interrupted, TrainProgress, train
from textcls.train.optim import param_groups


def model_cfg(**extra):
    return config_from_dict({"data": {"max_length": 48},
                             "model": tiny_model(num_layers=3, pooling="cls_tanh", **extra)}).model


def build(**extra) -> TextClassifier:
    torch.manual_seed(0)
    return TextClassifier(model_cfg(**extra), 100, 3).eval()


def keys_of(path: Path) -> set[str]:
    with safe_open(str(path), framework="pt") as handle:
        return set(handle.keys())


# --------------------------------------------------------------------------- the modules


@pytest.mark.parametrize("style", ["houlsby", "pfeiffer", "side"])
def test_fresh_adapter_barely_changes_logits(style):
    base = build(sharing={"strategy": "all"})
    model = build(sharing={"strategy": "all"}, adapters={"enabled": True, "style": style, "size": 16})
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("encoder.adapters.", "side.")) for k in missing)
    x = torch.randint(5, 100, (4, 12))
    with torch.no_grad():
        ref, out = base(x), model(x)
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 1e-3
    if style != "side":  # bottleneck adapters are near-identity, not identity; side starts exact
        assert rel > 0
    for adapter in adapter_modules(model):  # truncated normal at 2 std, zero biases
        assert adapter.down.weight.abs().max() <= 2e-3 and adapter.up.weight.std() < 2e-3
        assert not adapter.down.bias.any() and not adapter.up.bias.any()


def test_shared_encoder_gets_one_adapter_per_depth(tmp_path):
    model = build(sharing={"strategy": "all"}, adapters={"enabled": True, "size": 8})
    assert len(model.encoder.attention) == 1 and len(model.encoder.ffn) == 1
    slots = model.encoder.adapters
    assert len(adapter_modules(model)) == 6  # houlsby: attention + FFN at each of 3 depths
    assert len({id(slots.ffn[d]) for d in range(3)}) == 3
    keys = {k for k in model.state_dict() if ".adapters." in k}
    assert keys == {f"encoder.adapters.{s}.{d}.{p}.{w}" for s in ("attention", "ffn") for d in range(3)
                    for p in ("down", "up") for w in ("weight", "bias")}


@pytest.mark.parametrize("style,expected", [("houlsby", 2), ("pfeiffer", 1)])
def test_shared_adapters_are_stored_once(tmp_path, style, expected):
    model = build(sharing={"strategy": "all"}, adapters={"enabled": True, "style": style, "shared": True})
    assert len(adapter_modules(model)) == expected
    assert all(model.encoder.adapters.ffn[d] is model.encoder.adapters.ffn[0] for d in range(3))
    state = model.state_dict()
    assert {k for k in state if ".adapters." in k} == {
        f"encoder.adapters.{s}.0.{p}.{w}" for s in ("attention", "ffn")[2 - expected:]
        for p in ("down", "up") for w in ("weight", "bias")}
    save_weights(state, tmp_path / "w.safetensors")  # safetensors refuses tensors stored twice
    assert keys_of(tmp_path / "w.safetensors") == set(state)


@pytest.mark.parametrize("shared", [False, True])
def test_adapter_layers_leave_depths_out(shared):
    model = build(adapters={"enabled": True, "layers": [1], "shared": shared})
    slots = model.encoder.adapters
    kinds = [type(slots.attention[d]).__name__ for d in range(3)]
    assert kinds == ["Identity", "BottleneckAdapter", "Identity"]
    assert len(adapter_modules(model)) == 2


def test_bottleneck_size_rules():
    assert bottleneck_size(model_cfg(adapters={"size": 5, "reduction_factor": 4})) == 5
    assert bottleneck_size(model_cfg(adapters={"reduction_factor": 4})) == 8  # 32 / 4
    assert bottleneck_size(model_cfg()) == 64
    adapter = build(adapters={"enabled": True, "reduction_factor": 16}).encoder.adapters.ffn[0]
    assert isinstance(adapter, BottleneckAdapter) and adapter.down.out_features == 2


def test_trainable_selects_by_name_and_feeds_the_adapter_group():
    model = build(adapters={"enabled": True, "size": 8})
    assert trainable_names(model, "head") == {"head.weight", "head.bias", "pooler.dense.weight", "pooler.dense.bias"}
    expected = count_trainable(model, "adapters")
    keep = apply_trainable(model, "adapters")
    assert count_trainable(model) == expected
    norms = {f"{n}.{w}" for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)
             for w in ("weight", "bias")}
    adapters = {n for n, _ in model.named_parameters() if n.startswith("encoder.adapters.")}
    assert keep == norms | adapters | trainable_names(model, "head")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == keep
    n, total = count_trainable(model)
    assert n == sum(p.numel() for name, p in model.named_parameters() if name in keep) and 0 < n < total
    cfg = config_from_dict({"train": {"weight_decay": 0.01, "adapter_weight_decay": 0.5}}).train
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    weights = [p for n, p in model.named_parameters() if n.startswith("encoder.adapters.") and n.endswith("weight")]
    assert groups["adapter_decay"]["weight_decay"] == 0.5
    assert {id(p) for p in groups["adapter_decay"]["params"]} == {id(p) for p in weights}
    assert sum(len(g["params"]) for g in groups.values()) == len(keep)  # frozen ones stay out


def test_config_validation_of_adapter_keys():
    with pytest.raises(ConfigError, match="trainable: adapters"):
        config_from_dict({"train": {"trainable": "adapters"}})
    with pytest.raises(ConfigError, match="side_depths"):
        config_from_dict({"model": {"num_layers": 2, "adapters": {"enabled": True, "style": "side",
                                                                  "side_depths": [2]}}})


# --------------------------------------------------------------------------- runs on a base


def _cfg(files: dict, out: Path, trainable: str = "all", **model):
    cfg = tiny_config(files["train"], files["valid"], out, data={"cache_dir": str(files["cache"])},
                      model={"pooling": "cls_tanh", **model})
    cfg.train.trainable = trainable
    return cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """A tiny base run and adapter runs on it (houlsby: 1 epoch; side and head: a few steps)."""
    root = tmp_path_factory.mktemp("adapters")
    files = {"train": write_tsv(root / "train.tsv", sst2_slice(400)),
             "valid": write_tsv(root / "valid.tsv", sst2_slice(100, "dev")), "cache": root / "cache"}
    train(_cfg(files, root / "base"), quiet=True)
    before = (root / "base" / "model.safetensors").read_bytes()
    for name, adapters, trainable in [("houlsby", {"enabled": True, "size": 8}, "adapters"),
                                      ("side", {"enabled": True, "style": "side", "size": 8}, "adapters"),
                                      ("head", {}, "head")]:
        cfg = _cfg(files, root / name, trainable, init_from=str(root / "base"), adapters=adapters)
        cfg.train.lr = 1e-2
        cfg.train.max_steps = None if name == "houlsby" else 6
        train(cfg, quiet=True)
    return {"root": root, "files": files, "base_bytes": before}


def full_model(run_dir: Path) -> torch.nn.Module:
    """The model as it was at the end of training: last/ holds every tensor."""
    run = load_run(run_dir)
    model = build_model(run.cfg, run.tokenizer, len(run.labels))
    model.load_state_dict(load_weights(run_dir / "last" / "model.safetensors"))
    return model.eval()


def test_adapter_training_leaves_the_base_bit_identical(runs):
    base_dir = runs["root"] / "base"
    assert (base_dir / "model.safetensors").read_bytes() == runs["base_bytes"]
    base = load_weights(base_dir / "model.safetensors")
    trained = full_model(runs["root"] / "houlsby")
    keep = trainable_names(trained, "adapters")
    frozen = [k for k in trained.state_dict() if k not in keep]
    assert len(frozen) > 10
    for k in frozen:
        assert torch.equal(trained.state_dict()[k], base[k]), k
    moved = [k for k in keep if k in base and not k.startswith("head.")
             and not torch.equal(trained.state_dict()[k], base[k])]
    assert moved  # the LayerNorms did train


@pytest.mark.parametrize("name,mode", [("houlsby", "adapters"), ("side", "adapters"), ("head", "head")])
def test_adapter_file_holds_exactly_the_trainable_set_and_reloads(runs, name, mode):
    run_dir = runs["root"] / name
    run = load_run(run_dir)
    assert keys_of(run_dir / "model.safetensors") == trainable_names(run.model, mode)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["base"]["path"] == str((runs["root"] / "base").resolve())
    assert (run_dir / "model.safetensors").stat().st_size < (runs["root"] / "base" / "model.safetensors").stat().st_size
    x = torch.randint(5, run.tokenizer.get_vocab_size(), (4, 12))
    with torch.no_grad():
        assert torch.equal(run.model(x), full_model(run_dir)(x))


def test_loading_onto_a_changed_base_is_refused(runs, tmp_path):
    # A copy of the base and of the adapter run that points to it loads (and predicts) fine...
    shutil.copytree(runs["root"] / "base", tmp_path / "base")
    shutil.copytree(runs["root"] / "houlsby", tmp_path / "task")
    info = json.loads((tmp_path / "task" / "run.json").read_text())
    info["base"]["path"] = str(tmp_path / "base")
    (tmp_path / "task" / "run.json").write_text(json.dumps(info))
    (tmp_path / "in.txt").write_text("a gorgeous , witty film\nboring and far too long\n")
    ok = run_cli("predict", str(tmp_path / "task"), str(tmp_path / "in.txt"))
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.strip().splitlines()) == 2
    # ...but once that base holds other (self-consistent) weights, it is refused.
    state = load_weights(tmp_path / "base" / "model.safetensors")
    state["encoder.ffn.0.up.weight"] = state["encoder.ffn.0.up.weight"] + 1e-3
    digest = save_weights(state, tmp_path / "base" / "model.safetensors")
    write_run_info(tmp_path / "base", sha256={"model.safetensors": digest})
    with pytest.raises(CheckpointError, match="only fit the exact base"):
        load_run(tmp_path / "task")
    result = run_cli("eval", str(tmp_path / "task"), str(runs["files"]["valid"]))
    assert result.returncode == 2, result.stderr
    assert "base" in result.stderr and "Traceback" not in result.stderr
    shutil.rmtree(tmp_path / "base")
    with pytest.raises(CheckpointError, match="missing"):
        load_run(tmp_path / "task")



def test_adapter_run_resumes_exactly(runs, tmp_path, monkeypatch):
    def cfg(out: str):
        c = _cfg(runs["files"], tmp_path / out, "adapters", init_from=str(runs["root"] / "base"),
                 adapters={"enabled": True, "size": 8})
        c.train.max_steps, c.train.eval_every = 6, 3
        return c

    train(cfg("whole"), quiet=True)
    original = TrainProgress.update

    def update(self, step, *args, **kwargs):  # a real SIGTERM after step 4
        original(self, step, *args, **kwargs)
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as patch, pytest.raises(Interrupted):
        patch.setattr(TrainProgress, "update", update)
        train(cfg("split"), quiet=True)
    train(cfg("split"), resume=True, quiet=True)
    for name in ("last/model.safetensors", "model.safetensors"):  # full resumable weights; adapter-only best
        a, b = (load_weights(tmp_path / run / name) for run in ("whole", "split"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    split = tmp_path / "split"
    assert keys_of(split / "model.safetensors") == trainable_names(full_model(split), "adapters")


def test_info_reports_trainable_of_an_adapter_run(runs):
    from textcls.info import model_info

    run = load_run(runs["root"] / "side")
    counts = model_info(runs["root"] / "side").counts
    assert (counts.trainable, counts.unique_total) == count_trainable(run.model, "adapters")
    assert counts.trainable < counts.unique_total
