"""One writer per run directory: a second training into a run being written exits 2 naming the holder, and a
lock whose process died (kill -9 too) is no lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import child_env, run_cli, tiny_config
from textcls.config import save_config
from textcls.errors import ConfigError
from textcls.train.loop import train

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from textcls.run.lock import run_lock
    with run_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """A child process holding the lock of tmp_path/run; killed with SIGKILL at the end."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                            env=child_env())
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, sst2_files, holder):
    cfg = tiny_config(*sst2_files, tmp_path / "run", train={"max_steps": 1})
    with pytest.raises(ConfigError, match=rf"being written by another textcls run \(pid {holder.pid} on .*\); wait"):
        train(cfg, quiet=True)
    save_config(cfg, tmp_path / "cfg.yaml")
    result = run_cli("train", str(tmp_path / "cfg.yaml"), "--output", str(tmp_path / "run"))
    assert result.returncode == 2 and f"pid {holder.pid}" in result.stderr and "Traceback" not in result.stderr


def test_a_killed_holder_leaves_no_lock(tmp_path, sst2_files, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    cfg = tiny_config(*sst2_files, tmp_path / "run", train={"max_steps": 2})
    assert (tmp_path / "run" / ".lock").is_file()  # left by the killed holder, but nobody holds it
    assert train(cfg, quiet=True).steps == 2
    assert not (tmp_path / "run" / ".lock").exists()  # a finished run leaves no lock file
    assert train(tiny_config(*sst2_files, tmp_path / "run", train={"max_steps": 2}), resume=True, quiet=True).steps == 2


def test_a_run_that_writes_nothing_leaves_no_folder(tmp_path, sst2_files):
    cfg = tiny_config(*sst2_files, tmp_path / "run", train={"class_weights": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match="has 3 weights"):
        train(cfg, quiet=True)
    assert not (tmp_path / "run").exists()
