"""One writer per run directory: an exclusive lock held for as long as a run writes it.

`RUN/.lock` is locked with flock(2) and holds who took it (pid, host, start time). The kernel releases
the lock when its process ends, however it ends (kill -9 too), so a lock is never stale: a second
writer finds it held only while the first is alive, and exits naming it. The file itself is left in
place (deleting it while another process waits on it would let two writers in).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from textcls.errors import ConfigError
from textcls.run.layout import LOCK


@contextlib.contextmanager
def run_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold `run_dir`'s lock for the block (nothing when not `enabled`: the other ranks of a torchrun run,
    whose rank 0 holds it); a ConfigError naming the holder when another process has it."""
    if not enabled:
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{run_dir} is being written by another textcls run ({_holder(handle)}); wait for it "
                              "to finish, or give this run another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        try:
            yield
        finally:
            if [c.name for c in run_dir.iterdir()] == [LOCK]:  # the run wrote nothing (bad input): leave no trace
                (run_dir / LOCK).unlink()
                if created:
                    run_dir.rmdir()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(handle) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
        return f"pid {int(info['pid'])} on {str(info['host'])[:64]}, since {str(info['started'])[:19]}"
    except (ValueError, KeyError, TypeError):
        return "its lock file holds no readable owner"
