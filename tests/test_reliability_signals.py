"""Signals from process start: SIGTERM and SIGHUP stop any command as Ctrl-C does (exit 130), after the
training loop saves `last/`, with temp files and folders removed on the way out."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, child_env, sst2_slice, tiny_config, write_tsv
from textcls import cli
from textcls.data import pipeline
from textcls.data.pipeline import prepare_data
from textcls.run.store import read_state

WORDS = "good bad film plot actor story fine dull great weak boring lovely".split()


def start(args: list[str], cache: Path, hangup: bool = False) -> subprocess.Popen:
    """`textcls ARGS` as a child process; `hangup`: with SIGHUP's default action even where this process ignores
    it (under `nohup` the child would inherit the ignoring, and textcls rightly leaves an ignored SIGHUP alone)."""
    reset = (lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL)) if hangup else None
    return subprocess.Popen([sys.executable, "-m", "textcls", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=child_env(TEXTCLS_CACHE=str(cache), OMP_NUM_THREADS="1"),
                            preexec_fn=reset)


def signal_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 240) -> tuple[int, str]:
    """Send `sig` once `ready()` holds (or the process ended), then wait; (exit code, stderr)."""
    began = time.monotonic()
    while not ready() and proc.poll() is None and time.monotonic() - began < timeout:
        time.sleep(0.01)
    assert proc.poll() is None, "the command ended before the moment to signal it"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=240)
    return proc.returncode, stderr


def random_lines(path: Path, n: int, labelled: bool) -> Path:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as handle:
        if labelled:
            handle.write("sentence\tlabel\n")
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(12))
            handle.write(f"{text}\t{i % 2}\n" if labelled else text + "\n")
    return path


def test_sigterm_and_sighup_interrupt_from_the_start_but_ignored_signals_stay_ignored():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
        cli._interrupt_on_signals()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            handler(signal.SIGTERM, None)
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def test_a_killed_builds_temp_folder_is_removed_by_the_next_build(tmp_path):
    train = write_tsv(tmp_path / "t.tsv", sst2_slice(40))
    cfg = tiny_config(train, None, tmp_path / "run", data={"cache_dir": str(tmp_path / "cache")})
    prepare_data(cfg)
    datasets = tmp_path / "cache" / "datasets"
    (entry,) = list(datasets.iterdir())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = datasets / f"{entry.name}.{int(dead.stdout)}.abcd"
    orphan.mkdir()
    (orphan / "data.arrow").write_bytes(b"partial")
    mine = datasets / f"{entry.name}.{os.getpid()}.efgh"  # a live process's build is left alone
    mine.mkdir()
    import shutil

    shutil.rmtree(entry)
    pipeline._DIGESTS.clear()
    prepare_data(cfg)
    assert not orphan.exists() and mine.exists()


@pytest.mark.slow
def test_sigterm_during_predict_output_leaves_no_temp_file(tmp_path):
    from textcls.train.loop import train

    train_file = write_tsv(tmp_path / "t.tsv", sst2_slice(60))
    cfg = tiny_config(train_file, None, tmp_path / "run", data={"cache_dir": str(tmp_path / "cache")})
    cfg.train.max_steps = 2
    train(cfg, quiet=True)
    source = random_lines(tmp_path / "big.txt", 300_000, labelled=False)
    out = tmp_path / "out" / "preds.jsonl"
    out.parent.mkdir()
    proc = start(["predict", str(tmp_path / "run"), str(source), "-o", str(out)], tmp_path / "cache")
    code, stderr = signal_when(proc, lambda: any(out.parent.iterdir()), signal.SIGTERM)
    assert code == 130, stderr
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_sigterm_during_tokenization_exits_130_and_removes_the_temp_folder(tmp_path):
    data = random_lines(tmp_path / "big.tsv", 100_000, labelled=True)
    cache = tmp_path / "cache"
    datasets = cache / "datasets"
    proc = start(["train", str(data), "--budget", "10m", "-o", str(tmp_path / "run"), "-q"], cache)
    code, stderr = signal_when(proc, lambda: datasets.is_dir() and any("." in p.name for p in datasets.iterdir()),
                               signal.SIGTERM)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert [p.name for p in datasets.iterdir() if "." in p.name] == []


@pytest.mark.slow
def test_sighup_during_training_saves_a_checkpoint_and_exits_130(tmp_path):
    train_file = write_tsv(tmp_path / "t.tsv", sst2_slice(400))
    config = tmp_path / "c.yaml"
    config.write_text(f"""
data: {{train: {train_file}, text_columns: [sentence], label_column: label, max_length: 32, valid_fraction: 0.1}}
tokenizer: {{vocab_size: 200, min_frequency: 1}}
model: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, max_positions: 64}}
train: {{epochs: 1000, batch_size: 8, checkpoint_every: 1, log_every: 1000}}
""")
    run = tmp_path / "run"
    proc = start(["train", str(config), "-o", str(run), "-q"], tmp_path / "cache", hangup=True)
    code, stderr = signal_when(proc, lambda: (run / "last" / "state.json").exists(), signal.SIGHUP)
    assert code == 130, stderr
    assert read_state(run / "last")["step"] >= 1
    assert "--resume" in stderr
