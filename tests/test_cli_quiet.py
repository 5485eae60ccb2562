"""`-q` leaves out the progress and the closing `done:` line of train (and pretrain), and the progress of eval
and predict; without it, in a log, progress comes as plain lines (training the tokenizer, tokenizing, eval,
predict), none of them wrapped at 80 columns, and predict's stdout holds only its JSON lines."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from conftest import sst2_slice, tiny_finished_run, tiny_model, write_tsv
from textcls.cli import app

LONG = "a-folder-whose-long-name-puts-every-progress-line-over-eighty-columns"


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_train_says_nothing(tmp_path, quiet):
    (tmp_path / LONG).mkdir()
    train = write_tsv(tmp_path / LONG / "train.tsv", sst2_slice(60))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"train": str(train), "valid": None, "text_columns": ["sentence"], "label_column": "label",
                 "max_length": 32},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "model": tiny_model(),
        "train": {"max_steps": 2, "batch_size": 8, "seed": 0},
    }))
    args = ["train", str(config), "-o", str(tmp_path / "run"), *(["-q"] if quiet else [])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert ("done:" in result.output) is not quiet
    if quiet:
        assert result.output.strip() == ""
    else:  # not a terminal: the summary stays one line, longer than rich's 80 columns
        done = next(line for line in result.output.splitlines() if line.startswith("done:"))
        assert len(done) > 80 and done.rstrip().endswith(f"run directory {tmp_path / 'run'}")
        lines = result.stderr.splitlines()
        tokenizer = f"training a wordpiece tokenizer (vocab_size 200) on {train}"
        assert lines[0] == f"{tokenizer} ..."
        assert lines[1].startswith(f"{tokenizer}: ") and " tokens from 60 rows in " in lines[1]
        assert lines[2] == f"tokenizing {train}: 60/60 rows" and len(lines[2]) > 80


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return tiny_finished_run(tmp_path_factory.mktemp(LONG))


@pytest.mark.parametrize("quiet", [False, True])
def test_eval_and_predict_show_progress_lines_in_a_log_and_quiet_silences_them(finished, tmp_path, quiet):
    valid, texts = finished.parent / "valid.tsv", tmp_path / LONG / "texts.txt"
    texts.parent.mkdir()
    texts.write_text("a fine film\nawful [b]acting[/b]\n\nthe end", encoding="utf-8")  # no newline at the end
    flag = ["-q"] if quiet else []
    result = CliRunner().invoke(app, ["eval", str(finished), str(valid), *flag])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ([] if quiet else [f"eval {valid}: 40/40 rows"])
    assert "40 examples" in result.stdout

    result = CliRunner().invoke(app, ["predict", str(finished), str(texts), *flag])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ([] if quiet else [f"predict {texts}: 4/4 lines"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: the predictions alone
    assert len(rows) == 4 and all(set(row) == {"label", "probability"} for row in rows)

    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(finished), str(texts), "-o", str(out), *flag])
    assert result.exit_code == 0 and result.stdout == "" and len(out.read_text().splitlines()) == 4
    said = [f"predict {texts}: 4/4 lines", f"wrote 4 predictions to {out}"]
    assert result.stderr.splitlines() == ([] if quiet else said)


def test_progress_lines_are_not_wrapped_in_a_log(capsys):
    from textcls.train.progress import TrainProgress

    progress = TrainProgress(total_steps=2, start_step=0, log_every=1)
    assert progress.progress is None  # not a terminal: plain lines
    long = "evaluation " + "x" * 150
    progress.message(long)
    progress.update(1, 0.5, 1e-3, examples=10 ** 9, tokens=10 ** 12)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == long
    assert lines[1].startswith("step 1/2 loss 0.5000") and lines[1].endswith("s") and len(lines) == 2
    assert len(lines[1]) > 80


def test_work_progress_in_a_log_prints_plain_counts(capsys):
    from textcls.train.progress import WorkProgress

    with WorkProgress("explain", 3, every=0.0) as progress:
        for _ in range(3):
            progress.advance()
    assert capsys.readouterr().err.splitlines() == ["explain: 1/3", "explain: 2/3", "explain: 3/3"]
    with WorkProgress("explain", 3, every=3600.0) as progress:  # a line every hour at most: only the last
        for _ in range(3):
            progress.advance()
    assert capsys.readouterr().err.splitlines() == ["explain: 3/3"]
    with WorkProgress("explain", 3, enabled=False) as progress:
        progress.advance(3)
    assert capsys.readouterr().err == ""
