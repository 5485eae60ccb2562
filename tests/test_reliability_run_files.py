"""Damaged run directories: every run file is checked (schema, checksum, regular file of bounded size) before
use, and a damaged one is exit 2 naming the file and key, never a traceback, a hang or a silent wrong answer.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import run_cli, tiny_finished_run
from textcls.cli import app
from textcls.errors import CheckpointError
from textcls.io import sha256_file
from textcls.run.info import STATE_KEY, read_run_info, record_checksum
from textcls.run.load import load_run
from textcls.run.store import read_state

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("damaged_run")
    tiny_finished_run(root)
    (root / "input.txt").write_text("a fine film\nawful\n", encoding="utf-8")
    return root / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A fresh copy of the trained run, to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run", symlinks=True))


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))), encoding="utf-8")


def assert_refused(result, *words: str) -> None:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    for word in words:
        assert word in text, (word, result.output)


def test_run_json_records_the_side_files(run):
    recorded = read_run_info(run)["sha256"]
    for name in ("labels.json", "tokenizer.json", STATE_KEY, "model.safetensors"):
        assert recorded[name] == sha256_file(run / name)


RUN_JSON_CASES = {
    "base is a number": (lambda o: {**o, "base": 1}, "`base`"),
    "sha256 not a digest": (lambda o: {**o, "sha256": {**o["sha256"], "labels.json": 5}}, "`sha256.labels.json`"),
    "a list": (lambda o: [o], "JSON object"),
    "step is a string": (lambda o: {**o, "step": "3"}, "`step`"),
    "unknown kind": (lambda o: {**o, "kind": "weird"}, "`kind`"),
}


@pytest.mark.parametrize("case", sorted(RUN_JSON_CASES))
def test_a_damaged_run_json_is_refused_naming_the_key(run, case):
    change, key = RUN_JSON_CASES[case]
    edit_json(run / "run.json", change)
    assert_refused(cli("predict", run, run.parent.parent / "input.txt"), "run.json", key)


LABELS_CASES = {
    "duplicates": (["0", "0"], "twice"),
    "numbers": ([0, 1], "JSON list of label names"),
    "empty": ([], "no labels"),
    "an object": ({"0": 1}, "JSON list of label names"),
}


@pytest.mark.parametrize("case", sorted(LABELS_CASES))
def test_a_damaged_labels_json_is_refused(run, case):
    labels, words = LABELS_CASES[case]
    (run / "labels.json").write_text(json.dumps(labels))
    info = read_run_info(run)  # drop its checksum, so the schema check itself is what refuses it
    del info["sha256"]["labels.json"]
    (run / "run.json").write_text(json.dumps(info))
    assert_refused(cli("predict", run, run.parent.parent / "input.txt"), "labels.json", words)


def test_a_swapped_labels_json_is_refused_not_flipped(run):
    edit_json(run / "labels.json", lambda labels: labels[::-1])
    result = cli("eval", run, run.parent.parent / "valid.tsv")
    assert_refused(result, "labels.json", "does not match the sha256")


def test_an_edited_tokenizer_json_is_refused(run):
    path = run / "tokenizer.json"
    path.write_text(path.read_text().replace('"vocab"', '"vocab" '), encoding="utf-8")
    assert_refused(cli("predict", run, run.parent.parent / "input.txt"), "tokenizer.json", "does not match")


def test_a_run_without_side_checksums_still_loads(run):
    """Runs written before run.json recorded labels/tokenizer/state checksums keep loading."""
    info = read_run_info(run)
    info["sha256"] = {"model.safetensors": info["sha256"]["model.safetensors"]}
    (run / "run.json").write_text(json.dumps(info))
    edit_json(run / "labels.json", lambda labels: labels[::-1])
    assert load_run(run).labels == ["1", "0"]


@pytest.mark.parametrize("name", ["model.safetensors", "labels.json", "run.json", "config.yaml", "tokenizer.json"])
def test_a_run_file_that_is_a_device_is_refused(run, name):
    (run / name).unlink()
    os.symlink("/dev/zero", run / name)
    assert_refused(cli("predict", run, run.parent.parent / "input.txt"), name, "character device")


def test_a_weights_fifo_is_refused_without_hanging(run):
    (run / "model.safetensors").unlink()
    os.mkfifo(run / "model.safetensors")
    result = run_cli("predict", str(run), str(run.parent.parent / "input.txt"), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "FIFO" in result.stderr and "Traceback" not in result.stderr


def test_an_oversized_run_file_is_refused(run, monkeypatch):
    import textcls.io

    monkeypatch.setattr(textcls.io, "MAX_RUN_FILE_BYTES", 10)
    monkeypatch.setattr("textcls.data.labels.read_regular_text",
                        lambda path, error: textcls.io.read_regular_text(path, error, 10))
    with pytest.raises(CheckpointError, match="labels.json is .* bytes, more than"):
        load_run(run)


STATE_CASES = {
    "string step": (lambda o: {**o, "step": "3"}, "`step`"),
    "negative position": (lambda o: {**o, "position": -1}, "`position`"),
    "missing epoch": (lambda o: {k: v for k, v in o.items() if k != "epoch"}, "lacks epoch"),
    "a list": (lambda o: [o], "JSON object"),
    "bad loss window": (lambda o: {**o, "loss_window": "x"}, "`loss_window`"),
    "step past the end": (lambda o: {**o, "step": o["total_steps"] + 5}, "past `total_steps`"),
}


@pytest.mark.parametrize("case", sorted(STATE_CASES))
def test_a_damaged_state_json_is_refused_on_resume(run, case):
    change, words = STATE_CASES[case]
    edit_json(run / "last" / "state.json", change)
    record_checksum(run, STATE_KEY, sha256_file(run / "last" / "state.json"))  # the schema check refuses it
    assert_refused(cli("train", "--output", run, "--resume", "-q"), "state.json", words)


def test_an_edited_state_json_fails_its_checksum(run):
    edit_json(run / "last" / "state.json", lambda o: {**o, "best": 0.99})
    assert_refused(cli("train", "--output", run, "--resume", "-q"), "state.json", "does not match the sha256")


def test_a_state_being_swapped_in_is_accepted(run):
    """A kill between the checkpoint swap and run.json's final record leaves the new state.json with its
    checksum pending: both the old and the new file are accepted."""
    state = run / "last" / "state.json"
    old = state.read_bytes()
    new = json.dumps({**json.loads(old), "bad_evals": 1}).encode()
    import hashlib

    record_checksum(run, STATE_KEY, hashlib.sha256(new).hexdigest(), pending=True)
    assert read_state(run / "last")["bad_evals"] == 0
    state.write_bytes(new)
    assert read_state(run / "last")["bad_evals"] == 1
    state.write_bytes(new + b" ")
    with pytest.raises(CheckpointError, match="does not match"):
        read_state(run / "last")


@pytest.mark.parametrize("line", ["[1, 2]", '{"step": "x", "kind": "train", "loss": 1}',
                                  '{"step": 3, "kind": "train", "loss": "high"}', '"text"'])
def test_a_damaged_metrics_line_is_refused_by_plot(run, line):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([*lines, line, *lines]) + "\n")
    assert_refused(cli("plot", run, "-o", run / "c.png"), "metrics.jsonl", f"line {len(lines) + 1}")


def test_a_torn_metrics_line_is_still_ignored(run):
    text = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(text + '{"step": 9, "kin')
    from textcls.train.logs import read_metrics

    assert len(read_metrics(run / "metrics.jsonl")) == len(text.splitlines())


def test_a_tokenizer_with_a_backtracking_regex_is_refused(run):
    path = run / "tokenizer.json"
    spec = json.loads(path.read_text())
    spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}
    path.write_text(json.dumps(spec))
    record_checksum(run, "tokenizer.json", sha256_file(path))
    assert_refused(cli("predict", run, run.parent.parent / "input.txt"), "tokenizer.json", "failed to tokenize")


def test_a_tokenizer_with_an_invalid_regex_is_refused(run):
    path = run / "tokenizer.json"
    spec = json.loads(path.read_text())
    spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "a{99999999}"}, "behavior": "Isolated",
                             "invert": False}
    path.write_text(json.dumps(spec))
    record_checksum(run, "tokenizer.json", sha256_file(path))
    assert_refused(cli("predict", run, run.parent.parent / "input.txt"), "tokenizer.json", "cannot be loaded")


def test_a_pending_state_checksum_survives_a_best_weights_save(run):
    """A kill after the checkpoint swap leaves last/state.json's checksum pending; saving the best weights
    before the next checkpoint keeps it, so a kill then still leaves a run that resumes."""
    from textcls.run.store import save_best

    state = run / "last" / "state.json"
    new = json.dumps({**json.loads(state.read_text()), "bad_evals": 2}).encode()
    import hashlib

    record_checksum(run, STATE_KEY, hashlib.sha256(new).hexdigest(), pending=True)
    state.write_bytes(new)
    save_best(run, load_run(run).model, step=3)
    assert read_state(run / "last")["bad_evals"] == 2
