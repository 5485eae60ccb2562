"""One writer per run directory: an exclusive lock held for as long as a run writes it.

`RUN/.lock` is locked with flock(2) and holds who took it (pid, host, start time). The kernel releases
the lock when its process ends, however it ends (kill -9 too), so a lock is never stale: a second
writer finds it held only while the first is alive, and exits naming it. The holder removes the file
when it is done; a writer that locked a file just removed (it opened it before the removal) sees that
the path no longer names what it locked, and tries again on the new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Iterator

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
    handle = _acquire(run_dir / LOCK)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        yield
    finally:
        (run_dir / LOCK).unlink(missing_ok=True)  # while still held: nobody can lock this file meanwhile
        if created and not any(run_dir.iterdir()):  # the run wrote nothing (bad input): leave no trace
            run_dir.rmdir()
        handle.close()  # releases the lock


def _acquire(path: Path) -> IO[str]:
    """The open, locked lock file at `path` (created if need be)."""
    while True:
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise ConfigError(f"{path.parent} is being written by another textcls run ({holder}); wait for it to "
                              "finish, or give this run another --output") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(handle.fileno())):
            return handle
        handle.close()  # the holder removed it after we opened it: lock the file that is there now


def _holder(handle) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
        return f"pid {int(info['pid'])} on {str(info['host'])[:64]}, since {str(info['started'])[:19]}"
    except (ValueError, KeyError, TypeError):
        return "its lock file holds no readable owner"
