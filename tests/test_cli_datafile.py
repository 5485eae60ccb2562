"""`textcls train DATA_FILE` (the automatic recipe within a budget), `textcls init DATA_FILE`, the data flags
with a CONFIG, and the bad inputs that exit 2 with a message."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_cli, sst2_slice, tiny_model, write_tsv
from textcls.config import load_config

BUDGET = 30  # seconds
ALLOWANCE = 8  # seconds: the interpreter and imports before the command starts counting, on a busy machine


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    """A data-file run on 300 real SST-2 rows with a 30-second budget: (run dir, train file, dev file, proc, wall)."""
    tmp = tmp_path_factory.mktemp("auto")
    train = write_tsv(tmp / "reviews.tsv", sst2_slice(300))
    dev = write_tsv(tmp / "dev.tsv", sst2_slice(60, "dev"))
    started = time.perf_counter()
    proc = run_cli("train", str(train), "--budget", f"{BUDGET}s", "--output", str(tmp / "run"),
                   env={"TEXTCLS_CACHE": str(tmp / "cache")})
    return tmp / "run", train, dev, proc, time.perf_counter() - started


@pytest.mark.slow  # the budget: 30 s
def test_a_data_file_trains_within_its_budget(auto_run):
    run, _, _, proc, wall = auto_run
    assert proc.returncode == 0, proc.stderr
    counted = re.search(r"(\d+)s in all", proc.stderr)  # the command's own clock, from its start
    assert counted and int(counted.group(1)) <= BUDGET * 1.1, proc.stderr[-400:]
    assert wall <= 2 * BUDGET + ALLOWANCE, wall  # the interpreter's start is outside that clock; a runaway is not
    # the start of the run prints the statistics and the choices, one line each
    assert "rows 300; 2 classes" in proc.stderr and "data.max_length: " in proc.stderr
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["recipe"]["name"] == "auto" and saved["recipe"]["stats"]["rows"] == 300
    keys = {c["key"] for c in saved["recipe"]["choices"]}
    assert {"data.max_length", "tokenizer.vocab_size", "train.epochs", "train.time_budget_seconds"} <= keys
    assert saved["data"]["text_columns"] == ["sentence"] and saved["data"]["label_names"] is None  # no demo keys
    assert all(c["reason"] for c in saved["recipe"]["choices"])


@pytest.mark.slow
def test_the_run_serves_eval_and_predict(auto_run, tmp_path):
    run, _, dev, proc, _ = auto_run
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "report.json"
    evaluated = run_cli("eval", str(run), str(dev), "--report", str(report))
    assert evaluated.returncode == 0, evaluated.stderr
    assert 0.0 <= json.loads(report.read_text())["accuracy"] <= 1.0
    lines = tmp_path / "lines.txt"
    lines.write_text("a gorgeous , witty film\na dull mess\n", encoding="utf-8")
    predicted = run_cli("predict", str(run), str(lines))
    assert predicted.returncode == 0, predicted.stderr
    assert [json.loads(x)["label"] in ("0", "1") for x in predicted.stdout.splitlines()] == [True, True]


def test_init_writes_a_commented_config_that_train_accepts(tmp_path):
    train = write_tsv(tmp_path / "reviews.tsv", sst2_slice(200))
    out = tmp_path / "configs" / "reviews.yaml"
    proc = run_cli("init", str(train), "--output", str(out), "--budget", "2m", env={"TEXTCLS_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert re.search(r"\n  max_length: \d+  # 95% of training texts fit in \d+ tokens", text)
    assert "label_column: label  # detected" in text
    cfg = load_config(out)  # paths are relative to the YAML's folder
    assert Path(cfg.data.train).resolve() == train.resolve() and cfg.recipe.name == "auto"
    trained = run_cli("train", str(out), "--output", str(tmp_path / "run"), "--set", "train.max_steps=2",
                      "--set", "train.ensemble=1", "--set", "nblr.weight=0", env={"TEXTCLS_CACHE": str(tmp_path)})
    assert trained.returncode == 0, trained.stderr
    again = run_cli("init", str(train), "--output", str(out))
    assert again.returncode == 2 and "exists" in again.stderr


def test_data_flags_set_data_keys_with_a_config(tmp_path):
    train = write_tsv(tmp_path / "t.tsv", sst2_slice(60), header=("words", "stars"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": str(train), "max_length": 64}, "model": tiny_model(),
                                      "train": {"max_steps": 2}}))
    proc = run_cli("train", str(config), "--text-column", "words", "--label-column", "stars", "--budget", "30s",
                   "--output", str(tmp_path / "run"), env={"TEXTCLS_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["text_columns"] == ["words"] and saved["data"]["label_column"] == "stars"
    assert saved["train"]["time_budget_seconds"] == 30


def bad(tmp_path, name: str, text: str, *flags: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return run_cli("train", str(path), "--output", str(tmp_path / "run"), *flags, env={"TEXTCLS_CACHE": str(tmp_path)})


@pytest.mark.parametrize("name, text, flags, message", [
    ("one.tsv", "text\tlabel\n" + "".join(f"text number {i}\tpos\n" for i in range(20)), (),
     "single class"),
    ("few.tsv", "text\tlabel\n" + "".join(f"text number {i}\tc{i}\n" for i in range(4)) + "text\tc0\n", (),
     "needs at least two rows per class"),
    ("nolabel.csv", "".join(f"unique text number {i} in the file\n" for i in range(30)), (),
     "cannot tell the label column"),
    ("ok.tsv", "text\tlabel\n" + "".join(f"text number {i}\t{i % 2}\n" for i in range(40)), ("--budget", "1s"),
     "too small to train one epoch"),
    ("ok.tsv", "text\tlabel\n" + "".join(f"text number {i}\t{i % 2}\n" for i in range(40)), ("--budget", "ten"),
     "is not a duration"),
])
def test_bad_input_exits_2_with_what_to_do(tmp_path, name, text, flags, message):
    proc = bad(tmp_path, name, text, *flags)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 4  # one paragraph (wrapped by the terminal width)


def test_a_data_file_never_inherits_the_demo(tmp_path):
    train = write_tsv(tmp_path / "t.tsv", sst2_slice(40))
    proc = run_cli("train", "--set", f"data.train={train}", "--budget", "1s", env={"TEXTCLS_CACHE": str(tmp_path)})
    assert proc.returncode == 2 and "too small" in proc.stderr  # planned as a data file, not the AG News demo
    assert "on 36 rows" in proc.stderr  # 40 rows less the held-out 10%
    flags = run_cli("train", "--text-column", "sentence")
    assert flags.returncode == 2 and "pass the data file" in flags.stderr
