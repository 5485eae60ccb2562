"""Outputs the user names (predict --output, eval --report, plot -o): devices and FIFOs are written through,
symlinks keep pointing where they did, the input and the run's own files are never overwritten, modes are
kept, and a full disk is exit 2 naming the path with no temp file left."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tiny_finished_run
from textcls.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs_run")
    return tiny_finished_run(root)


@pytest.fixture
def work(trained, tmp_path) -> Path:
    (tmp_path / "input.txt").write_text("a fine film\nawful\nnot bad\n", encoding="utf-8")
    shutil.copy(trained.parent / "valid.tsv", tmp_path / "valid.tsv")
    return tmp_path


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def predict(run: Path, work: Path, output: Path | str):
    return cli("predict", run, work / "input.txt", "--output", output)


def refused(result, *words: str) -> None:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in text, (word, result.output)


def test_a_symlink_to_a_device_is_written_through(trained, work):
    link = work / "null.jsonl"
    os.symlink(os.devnull, link)
    assert predict(trained, work, link).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == os.devnull
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_fifo_is_written_through(trained, work):
    fifo = work / "pipe.jsonl"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(Path(fifo).read_text()), daemon=True)
    reader.start()
    result = predict(trained, work, fifo)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [json.loads(line)["label"] in ("0", "1") for line in got[0].splitlines()] == [True] * 3
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


def test_a_symlink_to_a_file_keeps_the_link_and_writes_the_target(trained, work):
    target = work / "real.jsonl"
    target.write_text("old\n")
    link = work / "link.jsonl"
    os.symlink(target, link)
    assert predict(trained, work, link).exit_code == 0
    assert link.is_symlink() and Path(os.readlink(link)) == target
    assert len(target.read_text().splitlines()) == 3


def test_an_existing_output_keeps_its_mode(trained, work):
    out = work / "out.jsonl"
    out.write_text("old\n")
    os.chmod(out, 0o640)
    assert predict(trained, work, out).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert len(out.read_text().splitlines()) == 3


def test_the_output_may_not_be_the_input(trained, work):
    before = (work / "input.txt").read_text()
    refused(cli("predict", trained, work / "input.txt", "-o", work / "input.txt", "--format", "jsonl"),
            "is the input file")
    assert (work / "input.txt").read_text() == before
    os.symlink(work / "input.txt", work / "alias.txt")
    refused(cli("predict", trained, work / "alias.txt", "--output", work / "input.txt", "--format", "jsonl"),
            "is the input file")


@pytest.mark.parametrize("name", ["model.safetensors", "config.yaml", "labels.json", "run.json", "last/state.json",
                                  "eval_report.json"])
def test_a_run_file_is_not_an_output(trained, work, name):
    before = (trained / name).read_bytes()
    refused(cli("predict", trained, work / "input.txt", "--output", trained / name, "--format", "jsonl"),
            "file of the run directory")
    refused(cli("eval", trained, work / "valid.tsv", "--report", trained / name), "file of the run directory")
    assert (trained / name).read_bytes() == before


def test_a_new_file_beside_a_run_is_allowed(trained, work):
    out = work / "preds.jsonl"
    assert predict(trained, work, out).exit_code == 0 and out.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_a_full_disk_is_exit_2_naming_the_path_and_leaves_no_temp(trained, work, monkeypatch, code, command):
    import textcls.io

    def full(fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(textcls.io.os, "fsync", full)
    out = work / "out" / ("preds.jsonl" if command == "predict" else "report.json")
    out.parent.mkdir()
    if command == "predict":
        result = predict(trained, work, out)
    else:
        result = cli("eval", trained, work / "valid.tsv", "--report", out)
    refused(result, str(out), os.strerror(code))
    assert list(out.parent.iterdir()) == []


def test_eval_report_to_stdout(trained, work):
    result = cli("eval", trained, work / "valid.tsv", "--report", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["examples"] == 40


def test_plot_writes_its_own_picture_but_no_other_run_file(trained, work):
    before = (trained / "config.yaml").read_bytes()
    refused(cli("plot", trained, "-o", trained / "config.yaml"), "file of the run directory")
    assert (trained / "config.yaml").read_bytes() == before
    assert cli("plot", trained).exit_code == 0 and (trained / "curves.png").stat().st_size > 0


def test_a_signal_inside_mkstemp_leaves_no_temp_file(tmp_path, monkeypatch):
    """SIGTERM lands as an exception wherever Python checks for signals, also inside mkstemp after it made the
    file and before it returned the name: atomic_open must still remove it (and leave others' temps alone)."""
    import tempfile

    from textcls.io import atomic_open

    other = tmp_path / ".preds.jsonl.1.abcd.tmp"  # pid 1 is alive: another process's write in progress
    other.write_text("")
    made = tempfile.mkstemp

    def interrupted(*args, **kwargs):
        fd, name = made(*args, **kwargs)
        os.close(fd)
        raise KeyboardInterrupt  # what textcls's SIGTERM handler raises, at mkstemp's last call

    monkeypatch.setattr(tempfile, "mkstemp", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "preds.jsonl") as handle:
            handle.write("never")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def test_a_signal_inside_mkdtemp_leaves_no_temp_folder(tmp_path, monkeypatch):
    """The same for the tokenization cache's build folders (make_temp_dir): SIGTERM inside mkdtemp, after
    it made the folder, must not leave it behind."""
    import tempfile

    from textcls.io import make_temp_dir

    made = tempfile.mkdtemp

    def interrupted(*args, **kwargs):
        made(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tempfile, "mkdtemp", interrupted)
    (tmp_path / ".run.abcd").mkdir()  # another writer's folder of the same prefix, there before
    with pytest.raises(KeyboardInterrupt):
        make_temp_dir(".run.", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".run.abcd"]
