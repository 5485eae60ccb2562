"""`-q` leaves out the progress and the closing `done:` line of train (and pretrain); without it, the closing
line is not wrapped at 80 columns in a log."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from conftest import sst2_slice, tiny_model, write_tsv
from textcls.cli import app


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_train_says_nothing(tmp_path, quiet):
    train = write_tsv(tmp_path / "train.tsv", sst2_slice(60))
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
