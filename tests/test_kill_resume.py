"""Nothing is lost: `kill -9` during training then `--resume` ends with the weights of an uninterrupted run;
a killed predict leaves no half output; a full disk while saving keeps the previous checkpoint."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import child_env, python_path, sst2_slice, write_tsv
from textcls.cli import app
from textcls.config import load_config
from textcls.errors import CheckpointError
from textcls.run.weights import save_weights
from textcls.train import checkpoint
from textcls.train.loop import train

CONFIG = """
data: {{train: train.tsv, valid: valid.tsv, text_columns: [sentence], label_column: label, max_length: 24,
        cache_dir: {cache}}}
tokenizer: {{vocab_size: 200, min_frequency: 1}}
model: {{hidden_size: 16, num_layers: 2, num_heads: 2, intermediate_size: 32, max_positions: 32, dropout: 0.1}}
train: {{epochs: 5, batch_size: 8, lr: 0.003, seed: 3, log_every: 1, checkpoint_every: 3, num_threads: 1,
        device: cpu}}  # bitwise equality: CPU kernels (a GPU adds in no fixed order)
"""
KILLS = 10  # each start costs ~4 s of imports


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """(config file, uninterrupted run directory): 160 train rows, 5 epochs of 20 steps."""
    root = tmp_path_factory.mktemp("kill")
    write_tsv(root / "train.tsv", sst2_slice(160))
    write_tsv(root / "valid.tsv", sst2_slice(32, "dev"))
    config = root / "config.yaml"
    config.write_text(CONFIG.format(cache=root / "cache"))
    train(load_config(config), root / "reference", quiet=True)
    return config, root / "reference"


def _start(*args: str) -> subprocess.Popen:
    env = child_env(OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "textcls", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def _kill_after_step(proc: subprocess.Popen, rng: random.Random, spread: int = 8, delay: float = 0.04) -> str:
    """Read progress lines; SIGKILL at a random moment a few steps after the start or resume point."""
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    log, target = [], None
    try:
        for line in proc.stderr:
            log.append(line)
            if line.startswith("step "):
                step = int(line.split()[1].split("/")[0])
                target = target or step + rng.randint(0, spread - 1)
                if step >= target:
                    time.sleep(rng.uniform(0, delay))  # somewhere inside a following step or checkpoint save
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stderr.close()
    return "".join(log)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), f"{key} differs between {a} and {b}"


@pytest.mark.slow  # random kill -9s and resumes: about 35 s
def test_sigkill_then_resume_equals_an_uninterrupted_run(setup, tmp_path):
    config, reference = setup
    run = tmp_path / "run"
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    kills = 0
    for i in range(KILLS):
        # The first kill comes at once after step 1, usually before the first checkpoint (step 3).
        proc = _start("train", str(config), "-o", str(run), *(["--resume"] if i else []))
        log = _kill_after_step(proc, rng, spread=1, delay=0) if i == 0 else _kill_after_step(proc, rng)
        if proc.returncode == 0:
            break  # finished before the kill
        assert proc.returncode == -signal.SIGKILL, log
        kills += 1
    final = _start("train", str(config), "-o", str(run), "--resume")
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert kills >= 10, f"only {kills} kills landed (seed {seed})"
    assert_same_weights(run / "last" / "model.safetensors", reference / "last" / "model.safetensors")
    assert_same_weights(run / "model.safetensors", reference / "model.safetensors")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_resume_before_the_first_checkpoint_starts_over(setup, tmp_path):
    """A kill before the first save leaves config, tokenizer and labels (and temp files) but no last/."""
    config, reference = setup
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "tokenizer.json", "labels.json"):
        (run / name).write_bytes((reference / name).read_bytes())
    (run / ".model.safetensors.123.tmp").write_bytes(b"half")
    (run / "metrics.jsonl").write_text('{"step": 1, "kind": "st')
    result = CliRunner().invoke(app, ["train", str(config), "-o", str(run), "--resume", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert "no checkpoint to resume yet; starting the run from step 0" in " ".join(result.stderr.split())
    assert_same_weights(run / "last" / "model.safetensors", reference / "last" / "model.safetensors")
    assert (run / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert not (run / ".model.safetensors.123.tmp").exists()


def test_killed_predict_leaves_the_old_output(setup, tmp_path):
    _, reference = setup
    src = tmp_path / "big.txt"
    src.write_text("".join(f"{text}\n" for text, _ in sst2_slice(3000)) * 7)  # 5 chunks of 4096 lines
    out = tmp_path / "out.jsonl"
    out.write_text("old predictions\n")
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "predict", str(reference), str(src), "-o", str(out)],
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list(tmp_path.glob(".out.jsonl.*.tmp"))
        if partial and partial[0].stat().st_size > 0:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert partial[0].stat().st_size > 0
    assert out.read_text() == "old predictions\n"
    small = tmp_path / "small.txt"
    small.write_text("a fine film\na dull one\n")
    result = CliRunner().invoke(app, ["predict", str(reference), str(small), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["label"] in ("0", "1") for line in out.read_text().splitlines()] == [True, True]
    assert not partial[0].exists()  # the killed writer's temp file went with the next write


def test_resume_drops_metrics_after_the_checkpoint_and_half_lines(tmp_path):
    from textcls.train.logs import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 20, "accuracy": 0.5}\n{"step": 40, "accuracy": 0.6}\n{"step": 60, "acc')
    MetricsLog(tmp_path).truncate_after(40)
    assert path.read_text() == '{"step": 20, "accuracy": 0.5}\n{"step": 40, "accuracy": 0.6}\n'
    MetricsLog(tmp_path).truncate_after(39)
    assert path.read_text() == '{"step": 20, "accuracy": 0.5}\n'


def test_kill_between_the_renames_of_a_checkpoint_swap(tmp_path):
    """`replace_dir` moves last/ to last.old/ before moving the new one in; a kill in between loses nothing."""
    model, optimizer, scheduler = _tiny_state()
    last = tmp_path / "last"
    checkpoint.save_checkpoint(last, model, optimizer, scheduler, {"step": 5, "epoch": 0, "position": 5})
    os.replace(last, tmp_path / "last.old")
    (tmp_path / ".last.half").mkdir()  # the new checkpoint, never moved in
    assert checkpoint.has_checkpoint(last)
    assert checkpoint.load_checkpoint(last, model, optimizer, scheduler)["step"] == 5
    checkpoint.remove_stale_temp(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def _tiny_state():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return model, optimizer, scheduler


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = _tiny_state()
    last = tmp_path / "last"
    checkpoint.save_checkpoint(last, model, optimizer, scheduler, {"step": 1, "epoch": 0, "position": 1})
    before = {p.name: p.read_bytes() for p in last.iterdir()}
    with torch.no_grad():
        model.weight.add_(1.0)

    def full_disk(obj, path):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint there is unchanged"):
        checkpoint.save_checkpoint(last, model, optimizer, scheduler, {"step": 2, "epoch": 0, "position": 2})
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # the half-written temp folder is gone
    monkeypatch.undo()
    state = checkpoint.load_checkpoint(last, model, optimizer, scheduler)
    assert state["step"] == 1 and torch.equal(model.weight, _tensors(last / "model.safetensors")["weight"])


def test_full_disk_while_saving_weights_keeps_the_previous_file(tmp_path, monkeypatch):
    import textcls.io

    path = tmp_path / "model.safetensors"
    save_weights({"w": torch.zeros(3)}, path)
    before = path.read_bytes()

    def full_disk(fd):  # the data is in the temp file's page cache; the disk has no room for it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(textcls.io.os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot write .*model.safetensors \(No space left on device\)"):
        save_weights({"w": torch.ones(3)}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_run_files_and_folders_get_the_usual_permissions(setup):
    """Weights and checkpoint folders are made through private temp files and folders (0600 / 0700) and then
    get the umask's mode like every other run file, so another account can eval a shared run."""
    _, reference = setup
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.yaml", "eval_report.json", "last/model.safetensors",
                 "last/trainer_state.pt", "last/state.json"):
        assert (reference / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert (reference / "last").stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_write_removes_the_temp_files_of_killed_writers_to_the_same_file(tmp_path):
    from textcls.io import atomic_write_text

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process
    orphan = tmp_path / f".out.jsonl.{dead.pid}.x1y2z3.tmp"
    live = tmp_path / f".out.jsonl.{os.getpid()}.a1b2c3.tmp"  # a writer still running: kept
    other = tmp_path / f".other.jsonl.{dead.pid}.q1w2e3.tmp"  # another file's: kept
    for p in (orphan, live, other):
        p.write_text("partial")
    atomic_write_text(tmp_path / "out.jsonl", "done\n")
    assert (tmp_path / "out.jsonl").read_text() == "done\n"
    assert not orphan.exists() and live.exists() and other.exists()


def test_each_rank_resumes_its_own_random_stream(tmp_path):
    """Under torchrun every rank draws its own dropout masks: the checkpoint keeps each rank's RNG state and
    rank r takes state r back (at another world size, rank 0's)."""
    model, optimizer, scheduler = _tiny_state()
    states = []
    for seed in (11, 22):
        torch.manual_seed(seed)
        states.append(checkpoint.rng_state())
    last = tmp_path / "last"
    checkpoint.save_checkpoint(last, model, optimizer, scheduler, {"step": 1}, rng_ranks=states)
    expected = {}
    for seed in (11, 22):
        torch.manual_seed(seed)
        expected[seed] = torch.rand(3)
    for rank, world, seed in ((0, 2, 11), (1, 2, 22), (0, 1, 22)):  # world 1: the saving process's own state
        checkpoint.load_checkpoint(last, model, optimizer, scheduler, rank=rank, world=world)
        assert torch.equal(torch.rand(3), expected[seed]), (rank, world)


def test_equal_weights_make_equal_files_in_every_process(tmp_path):
    """safetensors writes its metadata in per-process hash order; the sha256 in run.json must not depend on it."""
    script = ("import sys, torch; from pathlib import Path; from textcls.run.weights import write_weights; "
              "g = torch.Generator().manual_seed(0); "
              "print(write_weights({'b': torch.randn(3, 5, generator=g), 'a': torch.arange(7)}, Path(sys.argv[1])))")
    digests = {subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{seed}.safetensors")], check=True,
                              capture_output=True, text=True, env={"PYTHONPATH": python_path(), "PATH": "/usr/bin:/bin",
                                                                   "PYTHONHASHSEED": str(seed)}).stdout
               for seed in range(4)}
    assert len(digests) == 1
