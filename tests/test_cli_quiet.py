"""`-q` leaves out the progress and the closing `done:` line of train (and pretrain)."""

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
