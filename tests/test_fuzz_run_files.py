"""Property-based fuzzing of what textcls reads back: a trained run directory and the tokenized cache, each
damaged at random (JSON replaced or edited, bytes flipped or cut, a file swapped for /dev/zero, a FIFO, a
folder, or removed). Loading gives a result or a TextclsError with a message (exit 2 in the CLI), never
another exception and never a hang; a damaged cache entry is rebuilt to the same data.

The strategies and checks are shared with bench/fuzz.py (targets `run_files`, `cache`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import sst2_slice, tiny_config, write_tsv
from textcls.errors import TextclsError

HANG_SECONDS = 60  # far above what loading a tiny run takes, even on a busy machine


@contextmanager
def no_hang(what: str):
    def alarm(signum, frame):
        raise AssertionError(f"{what} hung (no answer in {HANG_SECONDS} s)")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@functools.lru_cache(maxsize=1)
def pristine() -> Path:
    """A tiny trained run (and its data and cache), built once per process."""
    from textcls.train.loop import train

    root = Path(tempfile.mkdtemp(prefix="textcls-fuzz-"))
    data = write_tsv(root / "train.tsv", sst2_slice(60))
    cfg = tiny_config(data, None, root / "run", data={"cache_dir": str(root / "cache"), "valid_fraction": 0.2})
    cfg.train.max_steps = 2
    train(cfg, quiet=True)
    return root


# --------------------------------------------------------------------------- damage

_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**70) | st.floats(allow_nan=False)
                     | st.text(max_size=8) | st.sampled_from(["0", "1", "x" * 64, "model.safetensors"]),
                     lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch, max_size=3),
                     max_leaves=6)
KEYS = ["step", "epoch", "position", "total_steps", "best", "best_step", "bad_evals", "loss_window", "model_sha256",
        "sha256", "pending_sha256", "base", "kind", "format_version", "textcls_version", "metric", "batches_per_step",
        "world_size", "rows", "skipped_lines", "labels", "source", "model", "vocab", "pre_tokenizer", "normalizer"]
DAMAGE = st.one_of(
    st.tuples(st.just("json"), _json),
    st.tuples(st.just("edit"), st.sampled_from(KEYS), _json),
    st.tuples(st.just("drop"), st.sampled_from(KEYS)),
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("bytes"), st.binary(max_size=64)),
    st.sampled_from([("empty",), ("devzero",), ("fifo",), ("folder",), ("missing",)]),
)


def damage(path: Path, how: tuple) -> None:
    kind = how[0]
    data = path.read_bytes() if path.is_file() else b""
    if kind in ("devzero", "fifo", "folder", "missing"):
        path.unlink(missing_ok=True)
        if kind == "devzero":
            os.symlink(os.devnull.replace("null", "zero"), path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        return
    if kind == "json":
        data = json.dumps(how[1]).encode()
    elif kind in ("edit", "drop"):
        try:
            obj = json.loads(data)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        if kind == "edit":
            obj[how[1]] = how[2]
        else:
            obj.pop(how[1], None)
        data = json.dumps(obj).encode()
    elif kind == "cut":
        data = data[:int(len(data) * how[1])]
    elif kind == "flip" and data:
        i = min(len(data) - 1, int(len(data) * how[1]))
        data = data[:i] + bytes([data[i] ^ how[2]]) + data[i + 1:]
    elif kind == "bytes":
        data = how[1]
    elif kind == "empty":
        data = b""
    path.write_bytes(data)


def rerecord(run: Path, name: str) -> None:
    """Record the damaged file's sha256 in run.json, so the checks behind the checksum are reached too."""
    info_path, path = run / "run.json", run / name
    try:
        info = json.loads(info_path.read_text())
        info["sha256"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
        info_path.write_text(json.dumps(info))
    except (OSError, ValueError, KeyError, TypeError):
        pass


# --------------------------------------------------------------------------- run directories

RUN_FILES = ["run.json", "last/state.json", "labels.json", "tokenizer.json", "config.yaml", "model.safetensors",
             "metrics.jsonl", "last/model.safetensors"]
RUN_CASES = st.tuples(st.sampled_from(RUN_FILES), DAMAGE, st.booleans())


def check_run_files(case) -> None:
    """Load a damaged copy of a run three ways (the run, its checkpoint state, its log): a result or a
    TextclsError with a message."""
    from textcls.run.load import load_run
    from textcls.run.store import read_state
    from textcls.train.logs import read_metrics

    name, how, record = case
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(shutil.copytree(pristine() / "run", Path(tmp) / "run", symlinks=True))
        damage(run / name, how)
        if record and (run / name).is_file() and name != "run.json":
            rerecord(run, name)
        for what, load in (("load_run", lambda: load_run(run)),
                           ("read_state", lambda: read_state(run / "last", ("step", "epoch", "position",
                                                                            "total_steps"))),
                           ("read_metrics", lambda: read_metrics(run / "metrics.jsonl"))):
            with no_hang(f"{what} after {how[0]} of {name}"):
                try:
                    load()
                except TextclsError as exc:
                    assert str(exc).strip(), f"{what}: an empty message"


# --------------------------------------------------------------------------- the tokenized cache

CACHE_FILES = ["datasets/*/data.arrow", "datasets/*/meta.json", "tokenizers/*.json", "tokenizers/*.sha256"]
CACHE_CASES = st.tuples(st.sampled_from(CACHE_FILES), DAMAGE)


def check_cache(case) -> None:
    """Prepare the data over a damaged copy of the cache: the same tokenizer, labels and token ids as from a
    sound cache (the damage is rebuilt), or a TextclsError."""
    from textcls.data.pipeline import prepare_data

    pattern, how = case
    root = pristine()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(shutil.copytree(root / "cache", Path(tmp) / "cache", symlinks=True))
        cfg = tiny_config(root / "train.tsv", None, root / "run", data={"cache_dir": str(cache),
                                                                        "valid_fraction": 0.2})
        sound = _sound_data()
        for path in sorted(cache.glob(pattern))[:1]:
            damage(path, how)
        with no_hang(f"prepare_data after {how[0]} of {pattern}"):
            try:
                data = prepare_data(cfg)
            except TextclsError as exc:
                assert str(exc).strip()
                return
        assert data.labels == sound[0] and data.tokenizer.to_str() == sound[1]
        assert data.train["input_ids"] == sound[2] and data.valid["input_ids"] == sound[3]


@functools.lru_cache(maxsize=1)
def _sound_data():
    from textcls.data.pipeline import prepare_data

    root = pristine()
    cfg = tiny_config(root / "train.tsv", None, root / "run", data={"cache_dir": str(root / "cache"),
                                                                    "valid_fraction": 0.2})
    data = prepare_data(cfg)
    return data.labels, data.tokenizer.to_str(), data.train["input_ids"], data.valid["input_ids"]


TARGETS = {"run_files": (RUN_CASES, check_run_files), "cache": (CACHE_CASES, check_cache)}

FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@FAST
@given(RUN_CASES)
def test_damaged_run_files_give_a_result_or_a_textcls_error(case):
    check_run_files(case)


@FAST
@given(CACHE_CASES)
def test_a_damaged_cache_is_rebuilt_or_refused(case):
    check_cache(case)
