"""`textcls eval --errors FILE`: the misclassified rows, most confident first, as JSONL, CSV or TSV."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import tiny_config, write_tsv
from textcls.cli import app
from textcls.errors import ConfigError
from textcls.metrics import report_from_probabilities
from textcls.mistakes import computed_once, mistakes, write_mistakes
from textcls.predictor import NblrMix, predictor_report
from textcls.train.loop import train

FILLER = "the a cat dog sat ran on under big small red blue house tree river stone".split()


def keyword_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(FILLER, k=rng.randint(4, 8))
        if i % 2 == 0:
            words.insert(rng.randrange(len(words) + 1), "zebra")
        rows.append((" ".join(words), "pos" if i % 2 == 0 else "neg"))
    return rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("errors")
    cfg = tiny_config(write_tsv(tmp / "train.tsv", keyword_rows(400, 0)), write_tsv(tmp / "valid.tsv",
                      keyword_rows(60, 1)), tmp / "run", model={"pooling": "mean"},
                      train={"epochs": 2, "lr": 3e-3, "batch_size": 16})
    assert train(cfg, quiet=True).best_metric == 1.0
    return tmp / "run"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_eval_errors_lists_the_flipped_rows(run_dir, tmp_path, suffix):
    rows = keyword_rows(20, 5)
    flipped = {1, 4, 7}  # their gold labels are wrong, so the model (right on this task) errs there
    data = [(t, ({"pos": "neg", "neg": "pos"}[y] if i in flipped else y)) for i, (t, y) in enumerate(rows)]
    path = write_tsv(tmp_path / "test.tsv", data)
    errors = tmp_path / f"errors{suffix}"
    result = CliRunner().invoke(app, ["eval", str(run_dir), str(path), "--errors", str(errors),
                                      "--report", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    if suffix == ".jsonl":
        got = [json.loads(line) for line in errors.read_text(encoding="utf-8").splitlines()]
    else:
        with open(errors, encoding="utf-8", newline="") as handle:
            got = list(csv.DictReader(handle))
        for row in got:
            row["probability"] = float(row["probability"])
    assert sorted(r["text"] for r in got) == sorted(data[i][0] for i in flipped)
    for r in got:
        text, gold = next(d for d in data if d[0] == r["text"])
        assert r["gold"] == gold and r["predicted"] != gold and r["probability"] > 0.5
    assert [r["probability"] for r in got] == sorted((r["probability"] for r in got), reverse=True)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["accuracy"] == pytest.approx(1 - len(flipped) / len(data))  # the report is unchanged by --errors


def test_a_bad_errors_suffix_fails_before_evaluating(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["eval", str(run_dir), str(tmp_path / "missing.tsv"), "--errors",
                                      str(tmp_path / "e.txt")])
    assert result.exit_code == 2 and ".jsonl, .csv or .tsv" in result.output


def test_single_label_mistakes_most_confident_first():
    targets = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]], dtype=np.float32)
    rows = mistakes(["a", "b", "c", "d"], None, targets, probs, ["x", "y", "z"], "single")
    assert [(r["text"], r["gold"], r["predicted"]) for r in rows] == [("d", "x", "y"), ("b", "y", "x")]
    assert [r["probability"] for r in rows] == pytest.approx([0.7, 0.6])


def test_multilabel_mistakes_rank_by_the_most_confident_wrong_decision(tmp_path):
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.2], [0.95, 0.3], [0.1, 0.9], [0.55, 0.1]], dtype=np.float32)
    rows = mistakes(["a", "b", "c", "d"], ["p", "q", "r", "s"], targets, probs, ["x", "y"], "multilabel")
    # b misses y (1 - 0.3 = 0.7), d predicts x it should not (0.55)
    assert [(r["text"], r["gold"], r["predicted"]) for r in rows] == [("b", ["x", "y"], ["x"]), ("d", [], ["x"])]
    assert [r["probability"] for r in rows] == pytest.approx([0.7, 0.55])
    write_mistakes(tmp_path / "e.tsv", rows)
    lines = (tmp_path / "e.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["text", "text_pair", "gold", "predicted", "probability"]
    assert lines[1].split("\t")[:4] == ["b", "q", "x y", "x"]
    with pytest.raises(ConfigError, match="--errors"):
        write_mistakes(tmp_path / "e.yaml", rows)


class Fixed:
    """A predictor answering fixed probabilities, counting its calls."""

    def __init__(self, probs: np.ndarray):
        self.labels, self.task, self.probs, self.calls = ["x", "y"], "single", probs, 0

    def predict_proba(self, texts, pairs=None):
        self.calls += 1
        return self.probs


def test_probabilities_are_computed_once_and_report_the_same():
    rng = np.random.default_rng(0)
    base, alone = (rng.dirichlet([1, 1], size=8).astype(np.float32) for _ in range(2))
    targets = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)]
    texts = [str(i) for i in range(8)]
    expected = predictor_report(NblrMix(Fixed(base), Fixed(alone), 0.3), texts, None, targets)
    mix = NblrMix(Fixed(base), Fixed(alone), 0.3)
    probs, stand_in = computed_once(mix, texts, None)
    np.testing.assert_allclose(probs, 0.7 * base + 0.3 * alone, rtol=1e-6)
    assert predictor_report(stand_in, texts, None, targets) == expected
    assert mix.base.calls == 1 and mix.nblr.calls == 1
    single = Fixed(base)
    probs, stand_in = computed_once(single, texts, None)
    assert predictor_report(stand_in, texts, None, targets) == report_from_probabilities(base, targets, ["x", "y"],
                                                                                         "single")
    assert single.calls == 1
