"""Untrusted files never execute: weights only through safetensors, trainer state through
torch.load(weights_only=True), YAML through yaml.safe_load. Each payload below would create a marker
folder if it ran; the tests first show that it does run under plain pickle, then that textcls refuses it."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import ROOT, sst2_slice, tiny_config, write_tsv
from textcls.cli import app
from textcls.train.loop import train

runner = CliRunner()


class Payload:
    """Unpickling this calls os.mkdir(marker)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("security_run")
    tr = write_tsv(root / "train.tsv", sst2_slice(80))
    cfg = tiny_config(tr, None, root / "run", data={"cache_dir": str(root / "cache")})
    cfg.train.max_steps = 2
    train(cfg, quiet=True)
    return root / "run"


@pytest.fixture
def run(run_dir, tmp_path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def refused(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in text, (needle, text)


def test_payload_is_live_under_plain_pickle(tmp_path):
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_trainer_state_is_not_executed_on_resume(run, tmp_path, writer):
    marker = tmp_path / "pwned"
    state = run / "last" / "trainer_state.pt"
    if writer == "torch.save":
        torch.save({"optimizer": Payload(marker)}, state)
    else:
        state.write_bytes(pickle.dumps(Payload(marker)))
    result = runner.invoke(app, ["train", "--resume", "-o", str(run), "--quiet"])
    refused(result, "trainer_state.pt cannot be loaded safely", "Nothing in it was executed")
    assert not marker.exists()


def test_pickled_weights_are_not_executed(run, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"embeddings.word.weight": Payload(marker)}, run / "model.safetensors")  # a .bin in disguise
    refused(runner.invoke(app, ["predict", str(run), "-"]), "checksum")
    (run / "run.json").unlink()  # without a checksum, safetensors itself refuses it
    refused(runner.invoke(app, ["predict", str(run), "-"]), "not safetensors")
    assert not marker.exists()


def test_yaml_tags_are_not_executed(run, tmp_path):
    marker = tmp_path / "pwned"
    tag = f"!!python/object/apply:os.mkdir [{json.dumps(str(marker))}]"
    (run / "config.yaml").write_text(f"data: {{train: {tag}}}\n")
    refused(runner.invoke(app, ["eval", str(run), str(tmp_path / "x.tsv")]), "config.yaml", "not valid YAML")
    user_config = tmp_path / "user.yaml"
    user_config.write_text(f"train: {{lr: {tag}}}\n")
    refused(runner.invoke(app, ["train", str(user_config)]), "user.yaml", "python/object/apply")
    assert not marker.exists()


def test_package_never_unpickles_unsafely():
    """Every torch.load passes weights_only=True; no pickle.load, yaml.load or unsafe_load anywhere."""
    problems = []
    for path in sorted((ROOT / "textcls").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(([^)]*)\)", source):
            if "weights_only=True" not in match.group(1):
                problems.append(f"{path.name}: {match.group(0)}")
        for bad in ("pickle.load", "yaml.load(", "unsafe_load", "yaml.Loader", "yaml.UnsafeLoader", "dill."):
            if bad in source:
                problems.append(f"{path.name}: {bad}")
    assert not problems, problems
    from textcls.config import _UniqueKeyLoader

    assert issubclass(_UniqueKeyLoader, yaml.SafeLoader)  # read_yaml's loader constructs plain data only


def test_import_hf_pickle_needs_allow_pickle_and_is_still_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text('{"model_type": "bert"}')
    torch.save({"bert.embeddings.word_embeddings.weight": Payload(marker)}, hf_dir / "pytorch_model.bin")
    refused(runner.invoke(app, ["import-hf", str(hf_dir), "-o", str(tmp_path / "a")]), "--allow-pickle")
    refused(runner.invoke(app, ["import-hf", str(hf_dir), "-o", str(tmp_path / "b"), "--allow-pickle"]),
            "cannot be read")
    assert not marker.exists()
