"""Resumable checkpoints in `last/`: weights (safetensors), optimizer + scheduler + RNG (torch.save,
loaded with weights_only=True), and the loop position (JSON). Written to a temp folder, then swapped."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from textcls.errors import CheckpointError
from textcls.io import atomic_write_json, recover_dir, replace_dir
from textcls.rundir import load_state, load_weights, write_weights

LOOP_KEYS = ("step", "epoch", "position")  # what the loop needs from state.json


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, loop_state: dict, scaler: Any = None) -> None:
    """Write a complete checkpoint into `path` (e.g. run/last) atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint in {path.parent} ({exc.strerror})") from None
    try:
        digest = write_weights(model.state_dict(), tmp / "model.safetensors")
        trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
        if scaler is not None:
            trainer["scaler"] = scaler.state_dict()
        _torch_save(trainer, tmp / "trainer_state.pt")
        atomic_write_json(tmp / "state.json", {**loop_state, "model_sha256": digest})
        replace_dir(tmp, path)
    except (OSError, SafetensorError) as exc:
        kept = "the previous checkpoint there is unchanged" if has_checkpoint(path) else "no checkpoint was saved"
        raise CheckpointError(
            f"cannot save the checkpoint {path} ({getattr(exc, 'strerror', None) or exc}); {kept}. "
            "Free disk space or fix the folder's permissions, then continue with --resume"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _torch_save(obj: Any, path: Path) -> None:
    try:
        torch.save(obj, path)
    except RuntimeError as exc:  # torch's zip writer reports a full disk as a RuntimeError
        raise OSError(f"writing {path.name} failed: {exc}") from exc


def has_checkpoint(path: Path) -> bool:
    """Whether `path` (e.g. run/last) holds a complete checkpoint, after undoing an interrupted swap."""
    return (recover_dir(path) / "state.json").exists()


def remove_leftovers(run_dir: Path) -> None:
    """Delete temp files and folders a killed process left behind (`.name.*.tmp`, `.last.*`)."""
    for child in run_dir.glob(".*"):
        if child.is_dir() and child.name.startswith(".last."):
            shutil.rmtree(child, ignore_errors=True)
        elif child.is_file() and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any = None) -> dict:
    """Restore model, optimizer, scheduler and RNG from `path`; returns the loop state."""
    path = recover_dir(path)
    if not (path / "state.json").exists():
        raise CheckpointError(f"no resumable checkpoint in {path}; train without --resume to start over")
    try:
        loop_state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / 'state.json'} cannot be read ({exc}); the checkpoint is damaged") from None
    missing = [k for k in LOOP_KEYS if k not in loop_state] if isinstance(loop_state, dict) else list(LOOP_KEYS)
    if missing:
        raise CheckpointError(f"{path / 'state.json'} lacks {', '.join(missing)}; the checkpoint is damaged")
    state = load_weights(path / "model.safetensors", loop_state.get("model_sha256"))
    load_state(model, state, str(path / "model.safetensors"))
    try:
        trainer = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise CheckpointError(
            f"{path / 'trainer_state.pt'} cannot be loaded safely ({str(exc).splitlines()[0][:200]}); it is damaged "
            "or was not written by textcls. Nothing in it was executed. Delete the run directory's last/ folder "
            "to start over"
        ) from None
    try:
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        if scaler is not None and "scaler" in trainer:
            scaler.load_state_dict(trainer["scaler"])
        set_rng_state(trainer["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(
            f"{path / 'trainer_state.pt'} does not fit this run ({type(exc).__name__}: {exc}); the checkpoint is "
            "damaged or from another config"
        ) from None
    return loop_state
