"""Multi-label end to end through the CLI: fastText lines with several __label__s, and a TSV column."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from conftest import tiny_model
from textcls.cli import app

TOPICS = {"sport": ["match", "goal", "team", "coach"], "money": ["bank", "price", "market", "tax"],
          "tech": ["chip", "phone", "code", "robot"]}
FILLER = ["the", "a", "today", "news", "report", "says", "new", "big"]


def examples(n: int, seed: int) -> list[tuple[list[str], str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        labels = rng.sample(sorted(TOPICS), rng.choice([1, 1, 2, 3]))
        words = [w for lab in labels for w in rng.sample(TOPICS[lab], 2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        out.append((sorted(labels), " ".join(words)))
    return out


def write_config(tmp_path, train_file, valid_file, fmt: str, **data) -> str:
    cfg = {"data": {"train": str(train_file), "valid": str(valid_file), "format": fmt, "task": "multilabel",
                    "max_length": 24, **data},
           "tokenizer": {"type": "word", "vocab_size": 100, "min_frequency": 1},
           "model": tiny_model(pooling="mean"),
           "train": {"epochs": 8, "batch_size": 8, "lr": 1e-2, "warmup": 0, "metric": "micro_f1",
                     "threshold": [0.4, 0.5, 0.6], "log_every": 1000},
           "output": {"dir": str(tmp_path / "run")}}
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    return str(path)


def test_fasttext_multilabel_train_eval_predict(tmp_path):
    runner = CliRunner()
    for name, n, seed in (("train.txt", 96, 0), ("valid.txt", 32, 1)):
        (tmp_path / name).write_text("".join(" ".join(f"__label__{lab}" for lab in labels) + f" {text}\n"
                                             for labels, text in examples(n, seed)), encoding="utf-8")
    config = write_config(tmp_path, tmp_path / "train.txt", tmp_path / "valid.txt", "fasttext")
    res = runner.invoke(app, ["train", config, "-q"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    assert json.loads((run / "labels.json").read_text()) == ["money", "sport", "tech"]

    res = runner.invoke(app, ["eval", str(run), str(tmp_path / "valid.txt"), "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert {"micro_f1", "macro_f1", "accuracy", "loss"} <= report.keys()
    assert set(report["per_class"]) == {"money", "sport", "tech"}
    assert sum(m["support"] for m in report["per_class"].values()) == sum(len(x) for x, _ in examples(32, 1))
    assert report["micro_f1"] > 0.9  # keyword topics are easy; predicting every label scores about 0.74

    # predict on the validation file: every label over its own threshold, most probable first,
    # and the predictions score exactly the micro-F1 that eval reported
    res = runner.invoke(app, ["predict", str(run), str(tmp_path / "valid.txt"), "-o", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    thresholds = {"money": 0.4, "sport": 0.5, "tech": 0.6}
    tp = fp = fn = 0
    for row, (truth, _) in zip(rows, examples(32, 1), strict=True):
        probs = row["probabilities"]
        assert sorted(row["labels"]) == sorted(lab for lab, p in probs.items() if p >= thresholds[lab])
        assert [probs[lab] for lab in row["labels"]] == sorted((probs[lab] for lab in row["labels"]), reverse=True)
        tp += len(set(row["labels"]) & set(truth))
        fp += len(set(row["labels"]) - set(truth))
        fn += len(set(truth) - set(row["labels"]))
    assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(report["micro_f1"])
    assert any(len(row["labels"]) > 1 for row in rows)

    # --top-k adds the k most probable labels, over the threshold or not; TSV lists only the chosen ones.
    res = runner.invoke(app, ["predict", str(run), str(tmp_path / "valid.txt"), "--top-k", "2",
                              "-o", str(tmp_path / "top.jsonl")])
    assert res.exit_code == 0, res.output
    for row in map(json.loads, (tmp_path / "top.jsonl").read_text().splitlines()):
        best = sorted(row["probabilities"].items(), key=lambda kv: -kv[1])[:2]
        assert [(t["label"], t["probability"]) for t in row["top_k"]] == best
    res = runner.invoke(app, ["predict", str(run), str(tmp_path / "valid.txt"), "--top-k", "2", "--format", "tsv"])
    assert res.exit_code == 2 and "needs JSONL output" in res.output


def test_tsv_delimited_label_column(tmp_path):
    for name, n, seed in (("train.tsv", 48, 2), ("valid.tsv", 16, 3)):
        (tmp_path / name).write_text("text\ttags\n" + "".join(f"{text}\t{'|'.join(labels)}\n"
                                                            for labels, text in examples(n, seed)), encoding="utf-8")
    config = write_config(tmp_path, tmp_path / "train.tsv", tmp_path / "valid.tsv", "tsv", text_columns=["text"],
                          label_column="tags", label_delimiter="|")
    res = CliRunner().invoke(app, ["train", config, "-q", "--set", "train.max_steps=2", "--set", "train.threshold=0.5"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == ["money", "sport", "tech"]
    record = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert {"micro_f1", "macro_f1"} <= record.keys()
    # a per-label threshold list must have one value per label
    res = CliRunner().invoke(app, ["train", config, "-q", "--set", "train.threshold=[0.5, 0.5]",
                                   "--set", "output.overwrite=true"])
    assert res.exit_code == 2 and "2 values but there are 3 labels" in res.output
