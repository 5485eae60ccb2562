"""Writing a run while it trains: the best weights swapped in safely, `last/` and step checkpoints kept
or cleared, temp files of a killed run removed. (What goes inside a checkpoint is the trainer's concern:
textcls/train/checkpoint.py.)

The best weights (`model.safetensors` + its checksum in run.json) are swapped so that a kill at any
moment leaves a loadable pair; with `train.save_total_limit: N`, step checkpoints `checkpoint-{step}/`
are copies of `last/` at that step, the N newest kept, plus the best step's."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import torch

from textcls.errors import CheckpointError
from textcls.io import MAX_RUN_FILE_BYTES, make_temp_dir, read_regular_text, recover_dir
from textcls.run.info import STATE_KEY, check_checksum, read_run_info, write_run_info
from textcls.run.layout import (
    LAST,
    NEXT_WEIGHTS,
    STALE_TEMP_DIR,
    STALE_TEMP_FILE,
    STATE,
    STEP_CHECKPOINT_RE,
    WEIGHTS,
    step_checkpoint,
)
from textcls.run.weights import save_weights


def save_best(run_dir: Path, model: torch.nn.Module, keys: set[str] | None = None, **info) -> None:
    """Write `model.safetensors` and record its sha256 in run.json; a kill at any moment leaves a
    weights file whose checksum run.json accepts (the old pair, or the new one as `pending_sha256`).
    `keys`: store only these tensors (an adapter run; `info["base"]` names its base in both records)."""
    old = read_run_info(run_dir).get("sha256", {}).get(WEIGHTS)
    tmp = run_dir / NEXT_WEIGHTS
    state = model.state_dict()
    digest = save_weights(state if keys is None else {k: v for k, v in state.items() if k in keys}, tmp)
    base = {"base": info["base"]} if "base" in info else {}
    write_run_info(run_dir, sha256={WEIGHTS: old} if old else {}, pending_sha256={WEIGHTS: digest}, **base)
    os.replace(tmp, run_dir / WEIGHTS)
    write_run_info(run_dir, sha256={WEIGHTS: digest}, **info)


def has_checkpoint(path: Path) -> bool:
    """Whether `path` (e.g. run/last) holds a complete checkpoint, after undoing an interrupted swap."""
    return (recover_dir(path) / STATE).exists()


def remove_stale_temp(run_dir: Path) -> None:
    """Delete temp folders/files a killed run left behind (`.last.*`, `.model.safetensors.next`, and the
    `.NAME.*.tmp` files of atomic writes)."""
    if not run_dir.exists():
        return
    for child in run_dir.iterdir():
        if STALE_TEMP_DIR.fullmatch(child.name) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif STALE_TEMP_FILE.fullmatch(child.name) and child.is_file():
            child.unlink(missing_ok=True)


def step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """`checkpoint-{step}/` folders, oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*")
             if p.is_dir() and (m := STEP_CHECKPOINT_RE.fullmatch(p.name))]
    return sorted(found)


def keep_step_checkpoint(run_dir: Path, step: int, limit: int, best_step: int | None) -> None:
    """Copy `last/` (just written at `step`) to `checkpoint-{step}/`, then keep the `limit` newest step
    checkpoints and the best step's, deleting the others. Files are hard-linked when possible: `last/`
    is only ever replaced by a rename, never modified in place, so the links stay valid."""
    target = step_checkpoint(run_dir, step)
    if not target.exists():
        tmp = make_temp_dir(f".{target.name}.", run_dir)
        try:
            for src in (run_dir / LAST).iterdir():
                try:
                    os.link(src, tmp / src.name)
                except OSError:
                    shutil.copy2(src, tmp / src.name)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    found = step_checkpoints(run_dir)
    keep = {s for s, _ in found[-limit:]} | {best_step}
    for s, path in found:
        if s not in keep:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- a checkpoint's state.json

def read_state(path: Path, required: tuple[str, ...] = ()) -> dict:
    """The loop state of the checkpoint folder `path` (e.g. RUN/last), checked against the sha256 run.json
    records for last/state.json and against its schema; the `required` keys must be there."""
    if path.name == LAST:
        check_checksum(path.parent, STATE_KEY)
    try:
        state = json.loads(read_regular_text(path / STATE, CheckpointError, MAX_RUN_FILE_BYTES))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path / STATE} cannot be read ({str(exc)[:200]}); the checkpoint is damaged: "
                              f"delete {path} to start over") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path / STATE} is not a JSON object; the checkpoint is damaged: delete {path} to "
                              "start over")
    missing = [k for k in required if k not in state]
    problem = f"lacks {', '.join(missing)}" if missing else state_problem(state)
    if problem:
        raise CheckpointError(f"{path / STATE}: {problem}; the checkpoint is damaged: delete {path} to start over")
    return state


_COUNTS = ("step", "epoch", "position", "total_steps", "bad_evals")  # whole numbers >= 0
_POSITIVE = ("batches_per_step", "world_size")


def state_problem(state: dict) -> str | None:
    """What is wrong with a state.json's fields (naming the key), or None; absent keys are for the caller."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    for key in _COUNTS:
        if key in state and not (whole(state[key]) and state[key] >= 0):
            return f"key `{key}` must be a whole number >= 0, not {str(state[key])[:40]!r}"
    for key in _POSITIVE:
        if key in state and not (whole(state[key]) and state[key] >= 1):
            return f"key `{key}` must be a whole number >= 1"
    if state.get("best_step") is not None and not (whole(state["best_step"]) and state["best_step"] >= 0):
        return "key `best_step` must be a whole number >= 0 or null"
    if state.get("best") is not None and not number(state["best"]):
        return "key `best` must be a number or null"
    if "position" in state and "step" in state and whole(state.get("total_steps")) \
            and state["step"] > state["total_steps"]:
        return f"key `step` ({state['step']}) is past `total_steps` ({state['total_steps']})"
    window = state.get("loss_window", [0.0, 0])
    if not (isinstance(window, list) and len(window) == 2 and number(window[0]) and whole(window[1])
            and window[1] >= 0):
        return "key `loss_window` must be [sum of losses, number of steps]"
    for key in ("model_sha256", "ema_sha256"):
        value = state.get(key)
        if value is not None and not (isinstance(value, str) and len(value) == 64):
            return f"key `{key}` must be a sha256 (64 hex digits)"
    return None
