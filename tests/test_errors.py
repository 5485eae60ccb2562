"""A catalogue of bad inputs: each one exits with code 2, prints no traceback, and names the file, line or key.

Most cases run the CLI in-process with typer's CliRunner (fast); one runs `python -m textcls` for real.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import run_cli, sst2_slice, tiny_config, tiny_finished_run, write_tsv
from textcls.cli import app
from textcls.data.pipeline import prepare_data
from textcls.train.loop import train

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny finished run (3 steps) on SST-2 rows, shared by the eval/predict cases."""
    root = tmp_path_factory.mktemp("errors_run")
    return tiny_finished_run(root)


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def user_error(result, *needles: str) -> str:
    """Assert exit 2, a one-paragraph message and no traceback; return the message. Progress lines (the
    work done before the error: training the tokenizer, tokenizing, eval) may come before it."""
    stderr = result.stderr
    assert result.exit_code == 2, (result.exit_code, stderr, result.exception)
    assert "Traceback" not in stderr and "Traceback" not in result.stdout
    lines = stderr.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    assert start is not None and len(lines) == start + 1, stderr  # the message is the last line, and one line
    message = lines[start]
    for needle in needles:
        assert needle in message, (needle, stderr)
    return message


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def write_config(path: Path, text: str) -> Path:
    return write(path, text)


GOOD_CONFIG = """
data: {train: train.tsv, text_columns: [sentence], label_column: label, max_length: 32}
tokenizer: {vocab_size: 200, min_frequency: 1}
model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 32, max_positions: 64}
train: {max_steps: 1, batch_size: 8}
"""


# --------------------------------------------------------------------------- files


def test_missing_data_file(run_dir, tmp_path):
    user_error(cli("eval", run_dir, tmp_path / "nope.tsv"), "nope.tsv", "does not exist")


def test_missing_config_file(tmp_path):
    user_error(cli("train", tmp_path / "nope.yaml"), "nope.yaml", "does not exist")


def test_directory_instead_of_file(run_dir, tmp_path):
    user_error(cli("eval", run_dir, tmp_path), str(tmp_path), "directory")
    user_error(cli("predict", run_dir, tmp_path), str(tmp_path), "directory")
    user_error(cli("train", tmp_path), str(tmp_path), "directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(run_dir, tmp_path):
    data = write(tmp_path / "locked.tsv", "sentence\tlabel\nfine\t1\n")
    text = write(tmp_path / "locked.txt", "fine\n")
    config = write(tmp_path / "locked.yaml", GOOD_CONFIG)
    for path in (data, text, config):
        path.chmod(0)
    user_error(cli("eval", run_dir, data), "locked.tsv", "cannot be read")
    user_error(cli("predict", run_dir, text), "locked.txt")
    user_error(cli("train", config), "locked.yaml", "cannot be read")


def test_empty_data_file(run_dir, tmp_path):
    user_error(cli("eval", run_dir, write(tmp_path / "empty.tsv", "")), "empty.tsv", "empty")
    only_header = write(tmp_path / "header.tsv", "sentence\tlabel\n")
    user_error(cli("eval", run_dir, only_header), "header.tsv", "no usable rows")


def test_empty_config_file(tmp_path):
    user_error(cli("train", write_config(tmp_path / "empty.yaml", "")), "data.train")


def test_wrong_delimiter(run_dir, tmp_path):
    path = write(tmp_path / "commas.tsv", "sentence,label\na fine film,1\n")
    user_error(cli("eval", run_dir, path), "commas.tsv", "'sentence'", "comma-separated", "data.delimiter")


@pytest.mark.parametrize("row, found", [("just text", 1), ("text\t1\textra", 3)])
def test_wrong_field_count_names_the_line(run_dir, tmp_path, row, found):
    path = write(tmp_path / "bad.tsv", f"sentence\tlabel\ngood text\t1\n{row}\nmore\t0\n")
    user_error(cli("eval", run_dir, path), "bad.tsv, line 3", f"found {found}", "data.on_bad_lines: skip")


def test_skip_bad_lines_reports_count_and_lines(tmp_path, caplog):
    rows = sst2_slice(40)
    lines = ["sentence\tlabel"] + [f"{t}\t{y}" for t, y in rows]
    lines[5] = "too\tmany\tfields"  # line 6
    lines[9] = "no label here"  # line 10
    lines[12] = "   \t1"  # line 13: whitespace-only text
    write(tmp_path / "train.tsv", "\n".join(lines) + "\n")
    cfg = tiny_config(tmp_path / "train.tsv", None, tmp_path / "run", data={"on_bad_lines": "skip"})
    with caplog.at_level(logging.WARNING, logger="textcls"):
        data = prepare_data(cfg)
    assert len(data.train) == 37
    assert "skipped 3 bad line(s)" in caplog.text and "6, 10, 13" in caplog.text


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_or_blank_text(run_dir, tmp_path, text):
    path = write(tmp_path / "blank.tsv", f"sentence\tlabel\nfine\t1\n{text}\t0\n")
    user_error(cli("eval", run_dir, path), "blank.tsv, line 3", "text is empty")


def test_missing_label(run_dir, tmp_path):
    path = write(tmp_path / "nolabel.tsv", "sentence\tlabel\nfine\t1\nno label\t \n")
    user_error(cli("eval", run_dir, path), "nolabel.tsv, line 3", "label is missing")


def test_label_never_seen_in_training(run_dir, tmp_path):
    path = write(tmp_path / "unseen.tsv", "sentence\tlabel\nfine\t1\nodd\tneutral\n")
    user_error(cli("eval", run_dir, path), "unseen.tsv, line 3", "'neutral'", "never occurs")


def test_invalid_utf8_names_byte_offset(run_dir, tmp_path):
    path = write(tmp_path / "latin.tsv", b"sentence\tlabel\ncaf\xe9 film\t1\n")
    user_error(cli("eval", run_dir, path), "latin.tsv", "byte offset 18", "data.encoding")
    cut = write(tmp_path / "cut.txt", "fine\nhalf a character \u20ac".encode()[:-1])
    user_error(cli("predict", run_dir, cut), "cut.txt", "byte offset 22", "data.encoding")


def test_bom_and_crlf_work(run_dir, tmp_path):
    path = write(tmp_path / "windows.tsv", b"\xef\xbb\xbfsentence\tlabel\r\na fine film\t1\r\na dull film\t0\r\n")
    report = tmp_path / "report.json"
    for spelling in ("utf-8", "UTF_8", "utf8"):  # the BOM is dropped whatever the spelling of UTF-8
        result = cli("eval", run_dir, path, "--report", report, "--encoding", spelling)
        assert result.exit_code == 0, result.stderr
        assert json.loads(report.read_text())["examples"] == 2
    out = tmp_path / "pred.jsonl"
    assert cli("predict", run_dir, write(tmp_path / "w.txt", b"\xef\xbb\xbfone\r\ntwo\r\n"), "-o", out).exit_code == 0
    assert len(out.read_text().splitlines()) == 2


def test_csv_quotes_and_embedded_newlines_work(run_dir, tmp_path):
    path = write(tmp_path / "quoted.csv", 'sentence,label\n"a ""fine"", long\nfilm",1\n"plain, with comma",0\nbare,1\n')
    report = tmp_path / "report.json"
    result = cli("eval", run_dir, path, "--report", report)
    assert result.exit_code == 0, result.stderr
    assert json.loads(report.read_text())["examples"] == 3
    unclosed = write(tmp_path / "unclosed.csv", 'sentence,label\nok,1\n"never closed,0\n')
    user_error(cli("eval", run_dir, unclosed), "unclosed.csv")


# --------------------------------------------------------------------------- configs


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = write_config(tmp_path / "broken.yaml", "data:\n  train: x.tsv\n  text_columns: [a, b\nmodel: {}\n")
    user_error(cli("train", path), "broken.yaml", "not valid YAML", "line 4, column")


def test_yaml_value_python_cannot_hold(tmp_path):
    path = write_config(tmp_path / "date.yaml", "data: {train: 2024-02-30}\n")
    user_error(cli("train", path), "date.yaml", "day is out of range")


def test_wrong_types_and_ranges_listed_together(tmp_path):
    path = write_config(tmp_path / "bad.yaml", GOOD_CONFIG)
    msg = user_error(cli("train", path, "--set", "model.hidden_size=30", "--set", "model.num_heads=4",
                         "--set", "train.lr=-1e-3", "--set", "model.dropout=1.0", "--set", "train.batch_size=big",
                         "--set", "train.epochs=nan"),
                     "bad.yaml", "5 problem(s)", "`model.hidden_size` (30) must be divisible by `model.num_heads` (4)",
                     "`train.lr` must be positive", "`model.dropout` must be in [0, 1), got 1.0",
                     "`train.batch_size` must be int, got 'big'", "`train.epochs` must be a finite number")
    assert "\n" not in msg.strip()  # one paragraph


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write_config(tmp_path / "typo.yaml", GOOD_CONFIG + "optim: {}\n")
    user_error(cli("train", path, "--set", "train.learning_rate=1"), "unknown key `train.learning_rate`",
               "unknown key `optim`")


def test_more_positions_than_the_model_has(tmp_path):
    path = write_config(tmp_path / "long.yaml", GOOD_CONFIG)
    user_error(cli("train", path, "--set", "data.max_length=100"), "`data.max_length` (100)",
               "`model.max_positions` = 64")
    user_error(cli("train", path, "--set", "data.max_length=100", "--set", "model.position=sinusoidal"),
               "`data.max_length` (100)")


def test_data_error_during_training_names_the_line(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t1\textra\n")
    user_error(cli("train", write_config(tmp_path / "c.yaml", GOOD_CONFIG), "-o", tmp_path / "run"),
               "train.tsv, line 3")


@pytest.mark.parametrize("override, needle", [
    ("tokenizer.type=unigram", "try a larger `tokenizer.vocab_size`"),
    ("train.device=tpu", "`train.device` 'tpu' is not a device"),
    ("train.metric=f1", "`train.metric` must be one of"),
    ("model.init_from=.", "is not a finished textcls run directory"),
    ("tokenizer.path=c.yaml", "c.yaml cannot be loaded"),
])
def test_library_failures_become_messages(tmp_path, monkeypatch, override, needle):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "train.tsv", "sentence\tlabel\na good film\t1\na bad film\t0\n")
    config = write_config(tmp_path / "c.yaml", GOOD_CONFIG)
    user_error(cli("train", config, "-o", tmp_path / "run", "--set", "tokenizer.vocab_size=6", "--set", override),
               needle)


def test_self_referencing_yaml_is_refused(tmp_path):
    path = write_config(tmp_path / "loop.yaml", "tune: &a {x: *a}\n")
    user_error(cli("train", path), "loop.yaml", "nested too deeply")


# --------------------------------------------------------------------------- run directories


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_run_directory_from_another_version(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "format_version": 99, "textcls_version": "9.0"}))
    user_error(cli("eval", run, tmp_path / "x.tsv"), "textcls 9.0", "format 99", "cannot read")
    (run / "run.json").write_text("[1, 2]")
    user_error(cli("predict", run, "-"), "run.json", "damaged")


def test_resume_of_a_run_from_another_version(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "format_version": 99}))
    user_error(cli("train", "--resume", "-o", run), "format 99", "cannot read")


def test_unwritable_cache_folder(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    blocker = write(tmp_path / "not_a_folder", "")
    config = write_config(tmp_path / "c.yaml", GOOD_CONFIG)
    user_error(cli("train", config, "-o", tmp_path / "run", "--set", f"data.cache_dir={blocker}/cache"),
               "not_a_folder", "TEXTCLS_CACHE")


def test_truncated_weights_fail_the_checksum(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    user_error(cli("predict", run, "-"), "model.safetensors", "checksum")


def test_corrupted_weights_without_checksum(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    (run / "run.json").unlink()
    (run / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    user_error(cli("predict", run, "-"), "model.safetensors", "not safetensors")


def test_not_a_run_directory(tmp_path):
    user_error(cli("eval", tmp_path / "nowhere", tmp_path / "x.tsv"), "nowhere", "does not exist")
    user_error(cli("predict", tmp_path, "-"), "no config.yaml")


def test_damaged_tokenizer_and_labels(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    (run / "tokenizer.json").write_text("{")
    user_error(cli("predict", run, "-"), "tokenizer.json")
    shutil.copy(run_dir / "tokenizer.json", run / "tokenizer.json")
    (run / "labels.json").write_text('{"a": 1}')
    user_error(cli("predict", run, "-"), "labels.json")
    (run / "labels.json").write_text('["0", "1", "2"]')
    user_error(cli("predict", run, "-"), "labels.json does not match the sha256 recorded")
    info = json.loads((run / "run.json").read_text())  # a run written before labels.json had a checksum
    del info["sha256"]["labels.json"]
    (run / "run.json").write_text(json.dumps(info))
    user_error(cli("predict", run, "-"), "labels.json lists 3 labels but the weights classify 2")


def test_predict_on_empty_file(run_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    user_error(cli("predict", run_dir, write(tmp_path / "empty.txt", ""), "-o", out), "empty.txt", "no rows")
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))
    # A TSV input holding one line: the run reads a header, so the hint names --input-format txt.
    user_error(cli("predict", run_dir, write(tmp_path / "one.tsv", "a fine film\n")), "one.tsv", "has no rows",
               "is its header", "--input-format txt")


def test_predict_input_formats_and_encodings(run_dir, tmp_path):
    """No suffix (or a device like /dev/stdin) reads plain text; an unknown suffix asks for --input-format; a
    reading error names predict's own options; --encoding reads another encoding."""
    out = tmp_path / "out.jsonl"
    assert cli("predict", run_dir, write(tmp_path / "reviews", "one\ntwo\n"), "-o", out).exit_code == 0
    assert len(out.read_text().splitlines()) == 2
    user_error(cli("predict", run_dir, write(tmp_path / "reviews.dat", "one\n")), "reviews.dat", "suffix .dat",
               "--input-format")
    latin = write(tmp_path / "latin.txt", "café\nnaïve\n".encode("latin-1"))
    user_error(cli("predict", run_dir, latin), "latin.txt", "invalid utf-8", "--encoding")
    assert cli("predict", run_dir, latin, "--encoding", "latin-1", "-o", out).exit_code == 0
    assert len(out.read_text().splitlines()) == 2


def test_predictions_go_to_jsonl_or_tsv_files(run_dir, tmp_path):
    src = write(tmp_path / "in.txt", "one\ntwo\n")
    user_error(cli("predict", run_dir, src, "-o", tmp_path / "out.csv"), "out.csv", "name the file .jsonl or .tsv")
    assert cli("predict", run_dir, src, "-o", tmp_path / "out.csv", "--format", "tsv").exit_code == 0
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 2


def test_an_output_path_that_is_a_folder_is_named(run_dir, tmp_path):
    valid = write(tmp_path / "v.tsv", "sentence\tlabel\na fine film\t1\n")
    user_error(cli("eval", run_dir, valid, "--report", tmp_path), f"cannot use {tmp_path}: ", "not a folder")
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))


def test_predict_into_a_missing_folder(run_dir, tmp_path):
    src = write(tmp_path / "in.txt", "one\n")
    blocker = write(tmp_path / "file", "")
    user_error(cli("predict", run_dir, src, "-o", blocker / "sub" / "out.jsonl"), str(blocker))


def test_output_path_through_a_file(tmp_path):
    blocker = write(tmp_path / "data.tsv", "")
    config = write_config(tmp_path / "c.yaml", GOOD_CONFIG)
    user_error(cli("schedule", config, "--steps", "10", "--plot", blocker / "lr.png"), "data.tsv", "in the way")


def test_resume_with_damaged_state(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    (run / "last" / "state.json").write_text('{"step": 1}')
    user_error(cli("train", "--resume", "-o", run), "state.json", "does not match the sha256 recorded")
    info = json.loads((run / "run.json").read_text())  # a run written before state.json had a checksum
    del info["sha256"]["last/state.json"]
    (run / "run.json").write_text(json.dumps(info))
    user_error(cli("train", "--resume", "-o", run), "state.json", "epoch")


# --------------------------------------------------------------------------- bugs stay loud


def test_a_genuine_bug_exits_1_in_one_paragraph_and_keeps_its_exception_for_debug(run_dir, tmp_path, monkeypatch):
    """A bug is exit 1 with one paragraph (issue 29: no traceback unless --debug / TEXTCLS_DEBUG=1), never a
    user error's exit 2; with TEXTCLS_DEBUG=1 the exception itself comes out."""
    import textcls.evaluation

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    def os_bug(*args, **kwargs):
        raise OSError("no file involved")
    for bug, kind in ((broken, ZeroDivisionError), (os_bug, OSError)):
        monkeypatch.setattr(textcls.evaluation, "evaluate_file", bug)
        monkeypatch.delenv("TEXTCLS_DEBUG", raising=False)
        result = cli("eval", run_dir, tmp_path / "x.tsv")
        assert result.exit_code == 1 and not isinstance(result.exception, kind)
        assert "internal error" in result.output and kind.__name__ in result.output
        monkeypatch.setenv("TEXTCLS_DEBUG", "1")
        result = cli("eval", run_dir, tmp_path / "x.tsv")
        assert result.exit_code == 1 and isinstance(result.exception, kind)


def test_real_process_prints_one_paragraph_without_traceback(tmp_path):
    path = write_config(tmp_path / "broken.yaml", "model: {hidden_size: 33, num_heads: 2}\ntrain: [\n")
    proc = run_cli("train", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "broken.yaml" in proc.stderr and "line 3" in proc.stderr
    assert proc.stderr.strip().startswith("error:")


def _tiny_run(root: Path, **data):
    tr = write_tsv(root / "train.tsv", sst2_slice(60))
    cfg = tiny_config(tr, None, root / "run", data={"cache_dir": str(root / "cache"), **data})
    cfg.train.max_steps = 2
    return cfg


def test_overwrite_never_deletes_files_it_did_not_write(tmp_path):
    """A run folder that also holds the user's files: output.overwrite refuses and deletes nothing."""
    work = tmp_path / "work"
    cfg = _tiny_run(tmp_path)
    train(cfg, work, quiet=True)
    (work / "notes.txt").write_text("keep me\n")
    before = sorted(p.name for p in work.iterdir())
    cfg.output.overwrite = True
    with pytest.raises(Exception, match=r"also holds notes.txt, which textcls did not write; nothing was deleted"):
        train(cfg, work, quiet=True)
    assert sorted(p.name for p in work.iterdir()) == before and (work / "notes.txt").read_text() == "keep me\n"


def test_a_folder_with_only_the_users_config_is_not_a_run(tmp_path):
    """`textcls train config.yaml -o .` in a project folder: its config.yaml does not make it a run, so nothing
    there is cleaned up or replaced, with or without output.overwrite."""
    cfg = _tiny_run(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    mine = _save(cfg, tmp_path).read_text() + "# my notes\n"
    (project / "config.yaml").write_text(mine)
    (project / ".draft.tmp").write_text("draft")
    for extra in ([], ["--set", "output.overwrite=true"]):
        user_error(cli("train", project / "config.yaml", "-o", project, *extra), "exists and is not empty")
        assert (project / ".draft.tmp").exists() and (project / "config.yaml").read_text() == mine


def test_overwrite_removes_a_symlinked_folder_without_following_it(tmp_path):
    cfg = _tiny_run(tmp_path)
    train(cfg, quiet=True)
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    shutil.move(str(run / "last"), elsewhere)
    (run / "last").symlink_to(elsewhere, target_is_directory=True)
    cfg.output.overwrite = True
    train(cfg, quiet=True)
    assert not (run / "last").is_symlink() and (run / "last" / "state.json").is_file()
    assert (elsewhere / "state.json").is_file()  # the link's target is left alone


def test_a_replacing_run_that_fails_on_its_input_keeps_the_old_run(tmp_path):
    cfg = _tiny_run(tmp_path)
    train(cfg, quiet=True)
    old = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    cfg_file = _save(cfg, tmp_path)
    res = cli("train", cfg_file, "--set", "output.overwrite=true", "--set", "data.text_columns=[txt]")
    assert res.exit_code == 2 and "'txt' not found" in res.output
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == old
    # With valid input the old run is replaced.
    res = cli("train", cfg_file, "--set", "output.overwrite=true", "--set", "train.seed=5")
    assert res.exit_code == 0, res.output
    assert "seed: 5" in (tmp_path / "run" / "config.yaml").read_text()


def test_a_config_error_found_late_writes_no_run(tmp_path):
    """Class weights are checked against the labels after the data is read: before any run file is written,
    so the corrected command runs without --resume or overwrite."""
    cfg = _tiny_run(tmp_path)
    cfg_file = _save(cfg, tmp_path)
    res = cli("train", cfg_file, "--set", "train.class_weights=[1,2,3]")
    assert res.exit_code == 2 and "has 3 weights but there are 2 labels" in res.output
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    res = cli("train", cfg_file, "--set", "train.class_weights=[1,2]")
    assert res.exit_code == 0, res.output


def _save(cfg, root: Path) -> Path:
    from textcls.config import save_config

    path = root / "c.yaml"
    save_config(cfg, path)
    return path


def test_eval_of_a_run_interrupted_before_its_first_evaluation(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    (run / "model.safetensors").unlink()
    assert (run / "last").is_dir()
    user_error(cli("eval", run, tmp_path / "x.tsv"), "interrupted before its first evaluation", "--resume")


def test_eval_label_column_among_the_text_columns(run_dir, tmp_path):
    valid = write(tmp_path / "v.tsv", "sentence\tlabel\na fine film\t1\n")
    user_error(cli("eval", run_dir, valid, "--label-column", "sentence"), "also a text column")


def test_a_key_twice_in_a_set_value_is_named(tmp_path):
    config = write_config(tmp_path / "c.yaml", GOOD_CONFIG)
    user_error(cli("train", config, "--set", "train.ensemble_variants=[{model.dropout: 0.1, model.dropout: 0.2}]"),
               "train.ensemble_variants", "appears twice")


def test_a_run_without_run_json_loads_with_a_warning(run_dir, tmp_path, caplog):
    run = copy_run(run_dir, tmp_path)
    (run / "run.json").unlink()
    from textcls.run.load import load_run

    with caplog.at_level(logging.WARNING, logger="textcls"):
        load_run(run)
    assert "has no run.json, so the checksums of its weights cannot be checked" in caplog.text


def test_a_pair_run_refuses_plain_text_input(tmp_path):
    rows = [(a, a[::-1], y) for a, y in sst2_slice(60)]
    train_file = write_tsv(tmp_path / "pairs.tsv", rows, header=("premise", "hypothesis", "label"))
    cfg = tiny_config(train_file, None, tmp_path / "run", data={"text_columns": ["premise", "hypothesis"]})
    cfg.train.max_steps = 2
    train(cfg, quiet=True)
    user_error(cli("predict", tmp_path / "run", write(tmp_path / "in.txt", "a fine film\n")), "in.txt",
               "this run classifies text pairs", "CSV, TSV or JSONL")


def test_square_brackets_in_user_text_are_printed_as_they_are(run_dir, tmp_path):
    """Messages and tables are rich text: a label like [/x] or [bold] must not be read as markup."""
    for label in ("[/x]", "[bold]"):
        bad = write(tmp_path / "bad.tsv", f"sentence\tlabel\nsome text\t{label}\n")
        user_error(cli("eval", run_dir, bad), f"label '{label}' never occurs")
    user_error(cli("eval", run_dir, tmp_path / "missing[/x].tsv"), "missing[/x].tsv does not exist")
