"""What a resumable checkpoint (`last/`) holds: weights (safetensors), optimizer + scheduler + RNG
(torch.save, loaded with weights_only=True), and the loop position (JSON). Written to a temp folder,
then swapped. The run layer (textcls/run/store.py) keeps the best weights and the step checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from textcls.errors import CheckpointError, scrub
from textcls.io import atomic_write_json, make_temp_dir, recover_dir, replace_dir, sha256_file
from textcls.run.info import STATE_KEY, read_run_info, record_checksum
from textcls.run.layout import EMA_WEIGHTS, LAST, STATE, TRAINER_STATE, WEIGHTS
from textcls.run.load import load_state
from textcls.run.store import has_checkpoint, keep_step_checkpoint, read_state, remove_stale_temp, save_best  # noqa: F401
from textcls.run.weights import load_weights, write_weights


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
                    scheduler: Any, loop_state: dict, scaler: Any = None,
                    average: dict[str, torch.Tensor] | None = None, rng_ranks: list | None = None) -> None:
    """Write a complete checkpoint into `path` (e.g. run/last) atomically; `average`: the EMA weights;
    `rng_ranks`: every rank's RNG state under torchrun (each rank draws its own dropout masks)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(f".{path.name}.", path.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint in {path.parent} ({exc.strerror})") from None
    try:
        digest = write_weights(model.state_dict(), tmp / WEIGHTS)
        if average is not None:
            loop_state = {**loop_state, "ema_sha256": write_weights(average, tmp / EMA_WEIGHTS)}
        trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
        if rng_ranks and len(rng_ranks) > 1:
            trainer["rng_ranks"] = rng_ranks
        if scaler is not None:
            trainer["scaler"] = scaler.state_dict()
        _torch_save(trainer, tmp / TRAINER_STATE)
        atomic_write_json(tmp / STATE, {**loop_state, "model_sha256": digest})
        recorded = path.name == LAST  # run.json records last/state.json's sha256 (checked on resume)
        state_digest = sha256_file(tmp / STATE)
        if recorded and STATE_KEY in read_run_info(path.parent).get("sha256", {}):
            record_checksum(path.parent, STATE_KEY, state_digest, pending=True)  # a kill after the swap: both pass
        replace_dir(tmp, path)
        if recorded:
            record_checksum(path.parent, STATE_KEY, state_digest)
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


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any = None, required: tuple[str, ...] = ("step",),
                    average: torch.nn.Module | None = None, rank: int = 0, world: int = 1) -> dict:
    """Restore model, optimizer, scheduler and RNG from `path`; returns the loop state, which must hold the
    `required` keys. `average` (the EMA model) is restored from ema.safetensors. Rank `rank` of `world`
    takes its own RNG state when the checkpoint has one per rank for this world size."""
    path = recover_dir(path)
    if not (path / STATE).exists():
        raise CheckpointError(f"no resumable checkpoint in {path}; train without --resume to start over")
    loop_state = read_state(path, required)
    state = load_weights(path / WEIGHTS, loop_state.get("model_sha256"))
    load_state(model, state, str(path / WEIGHTS))
    if average is not None:
        if "ema_sha256" not in loop_state:
            raise CheckpointError(f"{path} was saved without `train.ema_decay`, which the run now sets; resume with "
                                  "the run's own config.yaml, or train without --resume")
        load_state(average, load_weights(path / EMA_WEIGHTS, loop_state["ema_sha256"]),
                   str(path / EMA_WEIGHTS))
    try:
        trainer = torch.load(path / TRAINER_STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        why = scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:200]
        raise CheckpointError(
            f"{path / TRAINER_STATE} cannot be loaded safely ({why}); it is damaged "
            "or was not written by textcls. Nothing in it was executed. Delete the run directory's last/ folder "
            "to start over"
        ) from None
    try:
        optimizer.load_state_dict(trainer["optimizer"])
        scheduler.load_state_dict(trainer["scheduler"])
        if scaler is not None and "scaler" in trainer:
            scaler.load_state_dict(trainer["scaler"])
        per_rank = trainer.get("rng_ranks")
        set_rng_state(per_rank[rank] if per_rank and len(per_rank) == world else trainer["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(
            f"{path / TRAINER_STATE} does not fit this run ({type(exc).__name__}: {exc}); the checkpoint is "
            "damaged or from another config"
        ) from None
    return loop_state
