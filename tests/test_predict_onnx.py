"""`textcls predict --runtime onnx`: the run's transformers in onnxruntime give torch's probabilities (an ensemble
with the n-gram model mixed in, long-text windows), the graph is exported once into the run's onnx_cache/
and reused, and what it cannot run is refused with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config, tiny_model
from textcls.cli import app
from textcls.config import config_from_dict
from textcls.model import TextClassifier
from textcls.run.layout import ONNX_CACHE
from textcls.train.loop import train

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TEXTS = ["a gripping , funny and moving film", "the plot is thin and the acting is worse", "not bad at all", "it",
         "one of the year 's best movies , and a very long sentence about nothing much " * 6]


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    """Two members sharing a tokenizer, with the n-gram model's share mixed in: every part a predictor has."""
    from conftest import sst2_slice, write_tsv

    base = tmp_path_factory.mktemp("onnx_run")
    files = write_tsv(base / "train.tsv", sst2_slice(400)), write_tsv(base / "valid.tsv", sst2_slice(100, "dev"))
    cfg = tiny_config(*files, base / "run", train={"ensemble": 2, "ensemble_workers": 1, "max_steps": 4,
                                                   "batch_size": 16},
                      nblr={"weight": 0.3}, data={"cache_dir": str(base / "cache"), "max_length": 24})
    train(cfg, quiet=True)
    return base / "run"


def probabilities(run_dir, tmp_path, *options) -> np.ndarray:
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / "in.txt"), "--top-k", "2", *options])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return np.array([[{r["label"]: r["probability"] for r in row["top_k"]}[n] for n in ("0", "1")] for row in rows])


def test_onnx_runtime_predicts_what_torch_does_and_exports_once(ensemble_run, tmp_path, monkeypatch):
    want = probabilities(ensemble_run, tmp_path)
    got = probabilities(ensemble_run, tmp_path, "--runtime", "onnx")
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)  # printed to 6 decimals, checked to 1e-4
    windows = probabilities(ensemble_run, tmp_path, "--chunk-long", "--stride", "8")
    np.testing.assert_allclose(probabilities(ensemble_run, tmp_path, "--runtime", "onnx", "--chunk-long", "--stride",
                                             "8"), windows, rtol=0, atol=2e-4)
    graphs = sorted((ensemble_run / ONNX_CACHE).glob("*.onnx"))
    assert len(graphs) == 1  # one graph: the members' mean, exported once for all the calls above
    assert not list((ensemble_run / ONNX_CACHE).glob(".*"))  # no temp file left

    import textcls.export.runtime as runtime

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "export_graph", no_export)
    np.testing.assert_allclose(probabilities(ensemble_run, tmp_path, "--runtime", "onnx"), got, rtol=0, atol=1e-6)


def test_a_run_directory_that_cannot_hold_the_cache_exports_into_a_temporary_folder(ensemble_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ensemble_run, run, ignore=shutil.ignore_patterns(ONNX_CACHE))
    (run / ONNX_CACHE).write_text("a file where the cache folder would go")
    got = probabilities(run, tmp_path, "--runtime", "onnx")
    np.testing.assert_allclose(got, probabilities(run, tmp_path), rtol=0, atol=2e-4)
    assert (run / ONNX_CACHE).is_file()


def test_a_graph_that_disagrees_with_torch_is_refused(ensemble_run, tmp_path, monkeypatch):
    import shutil

    import textcls.export.runtime as runtime

    run = tmp_path / "run"
    shutil.copytree(ensemble_run, run, ignore=shutil.ignore_patterns(ONNX_CACHE))
    monkeypatch.setattr(runtime, "TOLERANCE", -1.0)  # no difference can pass
    (tmp_path / "in.txt").write_text("good\n")
    result = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "in.txt"), "--runtime", "onnx"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "differ from PyTorch's" in said and "--runtime torch" in said
    assert not any((run / ONNX_CACHE).iterdir())  # nothing cached


@pytest.mark.parametrize("options, message", [
    (["--runtime", "tvm"], "--runtime must be torch or onnx, got 'tvm'"),
    (["--runtime", "onnx", "--precision", "bf16"],
     "--runtime onnx runs fp32 on the CPU: pass --precision fp32 (not bf16), or use --runtime torch"),
])
def test_runtime_options_it_cannot_take_exit_2(ensemble_run, tmp_path, options, message):
    (tmp_path / "in.txt").write_text("good\n")
    result = CliRunner().invoke(app, ["predict", str(ensemble_run), str(tmp_path / "in.txt"), *options])
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_the_cache_key_follows_the_weights():
    from textcls.export.runtime import weights_digest

    cfg = config_from_dict({"model": tiny_model(), "data": {"max_length": 16}}).model
    torch.manual_seed(0)
    model = TextClassifier(cfg, 50, 2)
    first = weights_digest(model, "single")
    assert weights_digest(model, "single") == first
    assert weights_digest(model, "multilabel") != first  # the graph's activation differs
    with torch.no_grad():
        model.head.bias[0] += 1e-3
    assert weights_digest(model, "single") != first


def test_eval_with_the_onnx_runtime_reports_what_torch_does(ensemble_run, tmp_path):
    reports = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / f"{runtime}.json"
        result = CliRunner().invoke(app, ["eval", str(ensemble_run), str(ensemble_run.parent / "valid.tsv"), "--report",
                                          str(out), "--runtime", runtime, "--quiet"])
        assert result.exit_code == 0, result.output
        reports[runtime] = json.loads(out.read_text())
    assert reports["onnx"]["accuracy"] == pytest.approx(reports["torch"]["accuracy"], abs=1e-9)
    assert reports["onnx"]["examples"] == reports["torch"]["examples"] == 100
    assert reports["onnx"]["confusion_matrix"] == reports["torch"]["confusion_matrix"]
    np.testing.assert_allclose(reports["onnx"]["loss"], reports["torch"]["loss"], rtol=1e-4)


def test_serve_answers_with_the_onnx_runtime_as_with_torch(ensemble_run):
    pytest.importorskip("fastapi.testclient")
    from fastapi.testclient import TestClient

    from textcls.export.runtime import use_onnx
    from textcls.predictor import run_predictor
    from textcls.run.load import load_run
    from textcls.serve import ServeOptions
    from textcls.serve.app import build_app

    run = load_run(ensemble_run)
    answers = {}
    for runtime in ("torch", "onnx"):
        predictor = run_predictor(run)
        if runtime == "onnx":
            predictor = use_onnx(predictor, run.path, run.cfg.data.max_length)
        with TestClient(build_app(run, predictor, ServeOptions()), raise_server_exceptions=False) as client:
            response = client.post("/predict", json={"texts": TEXTS, "top_k": 2})
            assert response.status_code == 200, response.text
            answers[runtime] = response.json()
    got = [[r["probability"] for r in row["top_k"]] for row in answers["onnx"]["predictions"]]
    want = [[r["probability"] for r in row["top_k"]] for row in answers["torch"]["predictions"]]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)


def test_a_graph_of_weights_the_run_no_longer_has_is_replaced(ensemble_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ensemble_run, run, ignore=shutil.ignore_patterns(ONNX_CACHE))
    (run / ONNX_CACHE).mkdir()
    stale = run / ONNX_CACHE / ("0" * 32 + ".onnx")
    stale.write_bytes(b"the graph of older weights")
    probabilities(run, tmp_path, "--runtime", "onnx")
    graphs = list((run / ONNX_CACHE).glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0] != stale
