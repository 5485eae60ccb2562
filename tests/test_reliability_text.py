"""Text edge cases: unpaired surrogates, control characters in what is printed, seeds out of range, a model
too large for memory, torch's pickle advice."""

from __future__ import annotations

import datetime
import json
import logging
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from textcls.cli import _PrintableFormatter, app
from textcls.config import DataConfig, config_from_dict
from textcls.data.readers import iter_records
from textcls.errors import ConfigError, printable, scrub
from textcls.run.load import check_model_memory, count_parameters, load_run
from textcls.train.loop import train

runner = CliRunner()
ESC = "\x1b[31m"


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    # json.dumps keeps a lone surrogate as its \ud800 escape, as a file from another program would have it
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    return path


def rows(n: int, labels: tuple[str, str]) -> list[tuple[str, str]]:
    words = ["good film", "bad plot", "fine acting", "dull story", "great cast", "weak end"]
    return [(f"{words[i % 6]} {i}", labels[i % 2]) for i in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run on JSONL rows whose texts hold unpaired surrogates and whose labels hold an escape sequence."""
    root = tmp_path_factory.mktemp("text_run")
    train_rows = rows(60, (f"pos{ESC}", "neg"))
    train_rows[3] = ("broken \ud800 text", "neg")
    data = jsonl(root / "train.jsonl", train_rows)
    cfg = tiny_config(data, None, root / "run", data={"text_columns": ["text"], "cache_dir": str(root / "cache"),
                                                     "valid_fraction": 0.2})
    cfg.train.max_steps = 3
    train(cfg, quiet=True)
    return root / "run"


def test_unpaired_surrogates_are_replaced_with_a_warning_naming_the_line(tmp_path, caplog):
    path = jsonl(tmp_path / "s.jsonl", [("fine", "a"), ("bad \ud800 x", "b"), ("ok", "b\udc00")])
    cfg = DataConfig(train=str(path), text_columns=["text"], label_column="label")
    with caplog.at_level(logging.WARNING, logger="textcls"):
        records = list(iter_records(str(path), cfg))
    assert [r.text for r in records] == ["fine", "bad \ufffd x", "ok"]
    assert records[2].labels == ["b\ufffd"]
    assert "s.jsonl, line 2" in caplog.text and "lines 2, 3" in caplog.text
    for r in records:
        r.text.encode("utf-8")  # encodable everywhere now


def test_training_and_predicting_on_surrogates_works(trained, tmp_path):
    assert load_run(trained).labels == ["neg", f"pos{ESC}"]
    source = jsonl(tmp_path / "in.jsonl", [("a \ud800 film", "neg"), ("dull \udfff", "neg")])
    out = tmp_path / "out.jsonl"
    result = cli("predict", trained, source, "--output", out)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["label"] in ("neg", f"pos{ESC}") for line in out.read_text().splitlines()] == [True] * 2


def test_eval_report_escapes_control_characters_in_labels(trained, tmp_path):
    data = jsonl(tmp_path / "ev.jsonl", rows(10, (f"pos{ESC}", "neg")))
    result = cli("eval", trained, data)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "pos\\x1b[31m" in result.output


def test_error_messages_escape_control_characters(trained, tmp_path):
    result = cli("eval", trained, tmp_path / f"no{ESC}\x1b]0;title\x07.jsonl")
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "no\\x1b[31m" in result.output


def test_log_lines_escape_control_characters():
    record = logging.LogRecord("textcls", logging.WARNING, __file__, 1, "label %r and %s", ("x", f"y{ESC}\r"), None)
    line = _PrintableFormatter("%(levelname)s: %(message)s").format(record)
    assert "\x1b" not in line and "\r" not in line and "y\\x1b[31m\\x0d" in line


def test_printable_keeps_ordinary_text():
    text = "café 中文 tab\there\nnext line"
    assert printable(text) == text
    assert printable("\u202eevil") == "\\u202eevil"


@pytest.mark.parametrize("seed", [2**64 + 1, 2**63, -1, 10**40])
def test_a_seed_out_of_range_is_a_config_error_naming_it(tmp_path, seed):
    with pytest.raises(ConfigError, match="train.seed"):
        tiny_config(tmp_path / "t.tsv", None, tmp_path / "run", train={"seed": seed})


def test_the_largest_seed_is_accepted(tmp_path):
    cfg = tiny_config(tmp_path / "t.tsv", None, tmp_path / "run", train={"seed": 2**63 - 1})
    assert cfg.train.seed == 2**63 - 1
    with pytest.raises(ConfigError, match="train.seed"):
        tiny_config(tmp_path / "t.tsv", None, tmp_path / "run", train={"seed": 2**63 - 1, "ensemble": 2})


def test_a_model_too_large_for_memory_is_refused_before_allocating(tmp_path):
    cfg = config_from_dict({"data": {"train": str(tmp_path / "t.tsv"), "text_columns": ["sentence"]},
                            "model": {"hidden_size": 16384, "num_layers": 48, "num_heads": 16,
                                      "intermediate_size": 65536}})
    params = count_parameters(cfg, 30000, 2)
    assert params > 10**11  # about 2 TB to train: more than any test machine has
    with pytest.raises(ConfigError, match=f"{params:,} parameters.*available"):
        check_model_memory(cfg, 30000, 2, torch.device("cpu"), training=True)


def test_loading_a_run_checks_memory_too(trained, monkeypatch):
    monkeypatch.setattr("textcls.run.load.available_memory", lambda device: 1000)
    result = cli("predict", trained, "-")
    assert result.exit_code == 2 and "parameters" in result.output and "Traceback" not in result.output


def test_torchs_pickle_advice_is_never_shown(trained, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    # a global torch's weights-only unpickler refuses (its refusal carries the advice to load it unsafely)
    torch.save({"optimizer": datetime.date(2020, 1, 1)}, run / "last" / "trainer_state.pt", pickle_module=pickle)
    result = cli("train", "--output", run, "--resume", "-q")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "trainer_state.pt" in text
    assert "weights_only" not in text and "will likely succeed" not in text and "trust" not in text


def test_scrub_drops_only_the_advice():
    message = ("x.pt cannot be loaded (Weights only load failed. Re-running `torch.load` with `weights_only` set to "
               "`False` will likely succeed, but it can result in arbitrary code execution. Unsupported global: "
               "GLOBAL os.system)")
    cleaned = scrub(message)
    assert "weights_only" not in cleaned and "likely succeed" not in cleaned
    assert "Unsupported global: GLOBAL os.system" in cleaned and cleaned.startswith("x.pt cannot be loaded")
    assert scrub("a plain message. Nothing else.") == "a plain message. Nothing else."
