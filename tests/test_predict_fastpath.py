"""Predict fast path: chunked, length-sorted batches; one output line per input, in input order."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, sst2_slice, tiny_config, tiny_model
from textcls.data.tokenizer import train_tokenizer
from textcls.predict import predict_file, predict_probabilities
from textcls.run.load import Run, build_model


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """A run with random weights (no training needed: order and count are what is tested)."""
    tmp = tmp_path_factory.mktemp("run")
    cfg = tiny_config(tmp / "unused.tsv", None, tmp / "run", model=tiny_model(dropout=0.0))
    texts = [t for t, _ in sst2_slice(300)]
    tokenizer = train_tokenizer(texts, cfg.tokenizer)
    torch.manual_seed(0)
    labels = ["negative", "positive", "neutral"]
    model = build_model(cfg, tokenizer, len(labels)).eval()
    return Run(tmp / "run", cfg, tokenizer, labels, model)


def _input(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    texts = [t.strip() for t, _ in sst2_slice(n, offset=300)]
    texts[3] = "x"  # lengths vary from one token to long sentences
    path = tmp_path / "input.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path, texts


def test_output_has_one_line_per_input_in_input_order(run, tmp_path):
    path, texts = _input(tmp_path, 150)
    out = tmp_path / "out.jsonl"
    # Small chunks and batches: several chunks, each sorted by length, must come back in order.
    count = predict_file(run, str(path), str(out), top_k=3, batch_size=8, chunk_size=32)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert count == len(texts) == len(rows)
    for text, row in zip(texts, rows):
        alone = predict_probabilities(run, [text], batch_size=1)[0]  # one example, no sorting, no padding
        got = {item["label"]: item["probability"] for item in row["top_k"]}
        assert row["label"] == run.labels[int(alone.argmax())]
        for i, label in enumerate(run.labels):
            assert got[label] == pytest.approx(float(alone[i]), abs=2e-6)


def test_sorted_batches_restore_order_in_memory(run):
    texts = [t for t, _ in sst2_slice(40, offset=500)]
    batched = predict_probabilities(run, texts, batch_size=7)
    alone = np.stack([predict_probabilities(run, [t], batch_size=1)[0] for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_bf16_keeps_count_order_and_is_close(run, tmp_path):
    path, texts = _input(tmp_path, 60)
    out32, out16 = tmp_path / "fp32.tsv", tmp_path / "bf16.tsv"
    predict_file(run, str(path), str(out32), batch_size=16, chunk_size=25)
    predict_file(run, str(path), str(out16), batch_size=16, chunk_size=25, precision="bf16")
    lines32 = out32.read_text(encoding="utf-8").splitlines()
    lines16 = out16.read_text(encoding="utf-8").splitlines()
    assert len(lines32) == len(lines16) == len(texts)
    p32 = np.array([float(line.split("\t")[1]) for line in lines32])
    p16 = np.array([float(line.split("\t")[1]) for line in lines16])
    np.testing.assert_allclose(p16, p32, atol=0.05)


def test_cli_rejects_unknown_precision(tmp_path):
    result = run_cli("predict", str(tmp_path / "no_run"), str(tmp_path / "in.txt"), "--precision", "fp8")
    assert result.returncode == 2
    assert "--precision must be fp32, bf16 or auto" in result.stderr


def test_predict_warns_when_bf16_would_be_emulated(monkeypatch, caplog):
    from textcls.cli import _inference_device

    monkeypatch.setattr("textcls.device.cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="textcls"):
        assert _inference_device("cpu", "fp32").type == "cpu"
        assert caplog.text == ""
        _inference_device("cpu", "bf16")
    assert "--precision: bf16 on this CPU" in caplog.text and "use fp32 here" in caplog.text


def test_a_predict_process_neither_imports_datasets_nor_builds_on_the_meta_device(tmp_path):
    """What `textcls predict` does not need stays out of its start: the `datasets` package (half a second to
    import) and a model built on the meta device to count its parameters (about a second the first time; the
    weights file's header counts them)."""
    import subprocess
    import sys

    from conftest import tiny_finished_run

    finished = tiny_finished_run(tmp_path)
    texts = tmp_path / "in.txt"
    texts.write_text("a fine film\ndull\n", encoding="utf-8")
    probe = (
        "import sys, runpy\n"
        "import textcls.run.load as load\n"
        "built, count = [], load.count_parameters\n"
        "load.count_parameters = lambda *a, **k: (built.append('meta'), count(*a, **k))[1]\n"
        f"sys.argv = ['textcls', 'predict', {str(finished)!r}, {str(texts)!r}, '-q']\n"
        "try:\n    runpy.run_module('textcls', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code\n"
        "print('datasets' in sys.modules, 'meta' in built, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2
    assert done.stderr.strip().splitlines()[-1] == "False False"
