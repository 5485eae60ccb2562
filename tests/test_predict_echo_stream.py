"""predict --echo (the text, the line number or an id column first in each row) and --stream (each stdin
line answered as soon as it is read, while the pipe stays open)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, child_env, sst2_slice, tiny_config, write_tsv
from textcls.cli import app
from textcls.train.loop import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("echo")
    train(tiny_config(write_tsv(tmp / "train.tsv", sst2_slice(80)), None, tmp / "run", train={"max_steps": 2}),
          quiet=True)
    return tmp / "run"


def predict(run_dir: Path, *args: str) -> tuple[int, str]:
    """(exit code, the predictions on stdout, or the error on stderr); stderr also holds the progress lines."""
    result = CliRunner().invoke(app, ["predict", str(run_dir), *args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def test_echo_text_and_line_on_plain_text(run_dir, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("a fine film\n\nutterly dull\n", encoding="utf-8")
    code, out = predict(run_dir, str(texts), "--echo", "text")
    assert code == 0, out
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["text"] for r in rows] == ["a fine film", "", "utterly dull"]
    assert list(rows[0])[:2] == ["text", "label"] and all(r["label"] in ("0", "1") for r in rows)
    code, out = predict(run_dir, str(texts), "--echo", "line", "--format", "tsv")
    assert code == 0, out
    assert [line.split("\t")[0] for line in out.splitlines()] == ["1", "2", "3"]
    assert all(line.split("\t")[1] in ("0", "1") for line in out.splitlines())


def test_echo_an_id_column_of_csv_and_jsonl(run_dir, tmp_path):
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("id,sentence\nr-7,a fine film\nr-9,\"dull, so dull\"\n", encoding="utf-8")
    code, out = predict(run_dir, str(csv_in), "--echo", "id")
    assert code == 0, out
    assert [json.loads(x)["id"] for x in out.splitlines()] == ["r-7", "r-9"]
    jsonl_in = tmp_path / "in.jsonl"
    jsonl_in.write_text(json.dumps({"sentence": "fine", "id": 7}) + "\n" + json.dumps({"sentence": "dull", "id": 9})
                        + "\n", encoding="utf-8")
    code, out = predict(run_dir, str(jsonl_in), "--echo", "id", "--format", "tsv")
    assert code == 0, out
    assert [line.split("\t")[0] for line in out.splitlines()] == ["7", "9"]
    code, out = predict(run_dir, str(csv_in), "--echo", "key")
    assert code == 2 and "'key' not found" in out
    plain = tmp_path / "in.txt"
    plain.write_text("fine\n")
    code, out = predict(run_dir, str(plain), "--echo", "id")
    assert code == 2 and "give a CSV, TSV or JSONL input" in out


def test_stream_refuses_an_output_file(run_dir, tmp_path):
    code, out = predict(run_dir, "-", "--stream", "-o", str(tmp_path / "p.jsonl"))
    assert code == 2 and "--stream" in out


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def test_stream_answers_each_line_while_stdin_stays_open(run_dir):
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "predict", str(run_dir), "-", "--stream", "--echo",
                             "text"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=ROOT, env=child_env())
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        for text in ("a fine film", "utterly dull"):
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
            answer = json.loads(lines.get(timeout=120))  # the pipe is still open: no end of input yet
            assert answer["text"] == text and answer["label"] in ("0", "1")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
        assert lines.empty()
    finally:
        proc.kill()
