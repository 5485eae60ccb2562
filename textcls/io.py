"""Atomic file writes: write a temp file in the same folder, fsync, rename over the target.

A process killed at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file next to `path`; on success it is fsynced and renamed onto `path`."""
    path = Path(path)
    if path.is_dir():  # checked first: the rename would fail naming the temp file
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _default_mode())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _remove_orphaned_temps(path: Path) -> None:
    """Temp files of earlier writes to `path` whose process is gone (killed with -9): `.NAME.PID.*.tmp`."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp")
    for sibling in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        match = pattern.fullmatch(sibling.name)
        if match and not _process_exists(int(match.group(1))):
            with contextlib.suppress(OSError):
                sibling.unlink()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process (or a number no pid can be)
        return True
    return True


def _default_mode(base: int = 0o666) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def make_temp_dir(prefix: str, parent: Path | str) -> Path:
    """A temp folder to fill and rename into place, with the usual permissions (mkdtemp makes 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, _default_mode(0o777))
    return tmp


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written `tmp_dir` onto `final_dir`, keeping the old one until the swap is done.

    A kill between the two renames leaves `final_dir.old`, which `recover_dir` restores.
    """
    old = final_dir.with_name(final_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    fsync_dir(final_dir.parent)
    if old.exists():
        shutil.rmtree(old)


def recover_dir(final_dir: Path) -> Path:
    """Return the usable copy of a directory written with `replace_dir` (after a possible kill)."""
    old = final_dir.with_name(final_dir.name + ".old")
    if not final_dir.exists() and old.exists():
        os.replace(old, final_dir)
    return final_dir


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
