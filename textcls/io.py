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
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from textcls.errors import CheckpointError, TextclsError

# The largest JSON/YAML run file textcls reads (run.json, state.json, labels.json, tokenizer.json, config.yaml):
# a bound, so that a file replaced by something huge is refused instead of filling memory.
MAX_RUN_FILE_BYTES = 256 << 20


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file next to `path`; on success it is fsynced and renamed onto `path`."""
    path = Path(path)
    if path.is_dir():  # checked first: the rename would fail naming the temp file
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temps(path)
    try:
        kept_mode = stat.S_IMODE(os.stat(path).st_mode)  # an existing file keeps its permissions
    except OSError:
        kept_mode = _default_mode()  # mkstemp makes 0600 files; give the usual permissions
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except BaseException:  # a signal inside mkstemp, after it made the file, leaves a name never returned
        _remove_temps(path, lambda pid: pid == os.getpid())
        raise
    try:
        os.chmod(tmp, kept_mode)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise _naming(exc, path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """`exc` naming `path` when it names no file (a write() on a full disk says only ENOSPC)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


@contextlib.contextmanager
def open_output(path: Path | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a user-named output (predictions, a report, a picture): a regular file is written atomically
    (atomic_open) and keeps its permissions; a symlink's target is written, the link stays; a character
    device (/dev/null, a terminal), a FIFO or a socket is written through, never replaced by a file."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows a symlink to what it names
    except OSError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
        try:
            with open(path, mode, encoding=None if "b" in mode else encoding) as handle:
                yield handle
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _naming(exc, path) from None
        return
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    with atomic_open(target, mode, encoding) as handle:
        yield handle


def _remove_orphaned_temps(path: Path) -> None:
    """Temp files of earlier writes to `path` whose process is gone (killed with -9)."""
    _remove_temps(path, lambda pid: not process_exists(pid))


def _remove_temps(path: Path, whose: Callable[[int], bool]) -> None:
    """The temp files of writes to `path` (`.NAME.PID.*.tmp`) whose PID `whose` picks."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp")
    for sibling in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        match = pattern.fullmatch(sibling.name)
        if match and whose(int(match.group(1))):
            with contextlib.suppress(OSError):
                sibling.unlink()


def process_exists(pid: int) -> bool:
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
    """A temp folder to fill and rename into place, with the usual permissions (mkdtemp makes 0700). A signal
    inside mkdtemp, after it made the folder and before it returned the name, removes the `prefix` folder that
    was not there before the call, then goes on."""
    pattern = f"{glob.escape(prefix)}*"
    before = set(Path(parent).glob(pattern))
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        os.chmod(tmp, _default_mode(0o777))
    except BaseException:
        for made in set(Path(parent).glob(pattern)) - before:
            shutil.rmtree(made, ignore_errors=True)
        raise
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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"


def check_regular_file(path: Path | str, error: type[TextclsError] = CheckpointError,
                       max_bytes: int | None = None) -> int:
    """The size of `path`, a regular file (a symlink to one is fine) of at most `max_bytes`; anything else (a
    device such as /dev/zero, a FIFO that would block, a folder, a file too large) raises `error` naming it.
    Checked with stat, which never blocks, before the file is opened."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path} is missing; check the path") from None
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror}); check the path and its permissions") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is a {_kind(info.st_mode)}, not a regular file; textcls reads only regular files "
                    "there: restore the file") from None
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(f"{path} is {info.st_size:,} bytes, more than the {max_bytes:,} textcls reads from such a file; "
                    "it is not the file textcls wrote: restore it")
    return info.st_size


def read_regular_bytes(path: Path | str, error: type[TextclsError] = CheckpointError,
                       max_bytes: int = MAX_RUN_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see check_regular_file); the open never blocks on a
    FIFO, and at most `max_bytes` are read even if the file grows meanwhile."""
    check_regular_file(path, error, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{path} cannot be read ({exc.strerror}); check its permissions") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the stat
            raise error(f"{path} is not a regular file; restore the file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{path} is larger than the {max_bytes:,} bytes textcls reads from such a file; restore it")
    return data


def read_regular_text(path: Path | str, error: type[TextclsError] = CheckpointError,
                      max_bytes: int = MAX_RUN_FILE_BYTES) -> str:
    """`read_regular_bytes` decoded as UTF-8; invalid bytes raise `error` naming the file and offset."""
    data = read_regular_bytes(path, error, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (invalid byte at offset {exc.start}); the file is damaged: "
                    "restore it") from None
