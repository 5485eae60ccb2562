"""Resumable checkpoints in `last/`: weights (safetensors), optimizer + scheduler + RNG (torch.save,
loaded with weights_only=True), and the loop position (JSON). Written to a temp folder, then swapped.

Also: the best weights (`model.safetensors` + its checksum in run.json, swapped so that a kill at
any moment leaves a loadable pair) and, with `train.save_total_limit: N`, step checkpoints
`checkpoint-{step}/` (copies of `last/` at that step, the N newest kept, plus the best step's)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from textcls.errors import CheckpointError
from textcls.io import atomic_write_json, make_temp_dir, recover_dir, replace_dir
from textcls.rundir import load_state, load_weights, read_run_info, save_weights, write_run_info, write_weights

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
        digest = write_weights(model.state_dict(), tmp / "model.safetensors")
        if average is not None:
            loop_state = {**loop_state, "ema_sha256": write_weights(average, tmp / "ema.safetensors")}
        trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
        if rng_ranks and len(rng_ranks) > 1:
            trainer["rng_ranks"] = rng_ranks
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


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any = None, required: tuple[str, ...] = ("step",),
                    average: torch.nn.Module | None = None, rank: int = 0, world: int = 1) -> dict:
    """Restore model, optimizer, scheduler and RNG from `path`; returns the loop state, which must hold the
    `required` keys. `average` (the EMA model) is restored from ema.safetensors. Rank `rank` of `world`
    takes its own RNG state when the checkpoint has one per rank for this world size."""
    path = recover_dir(path)
    if not (path / "state.json").exists():
        raise CheckpointError(f"no resumable checkpoint in {path}; train without --resume to start over")
    try:
        loop_state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / 'state.json'} cannot be read ({exc}); the checkpoint is damaged") from None
    missing = [k for k in required if k not in loop_state] if isinstance(loop_state, dict) else list(required)
    if missing:
        raise CheckpointError(f"{path / 'state.json'} lacks {', '.join(missing)}; the checkpoint is damaged")
    state = load_weights(path / "model.safetensors", loop_state.get("model_sha256"))
    load_state(model, state, str(path / "model.safetensors"))
    if average is not None:
        if "ema_sha256" not in loop_state:
            raise CheckpointError(f"{path} was saved without `train.ema_decay`, which the run now sets; resume with "
                                  "the run's own config.yaml, or train without --resume")
        load_state(average, load_weights(path / "ema.safetensors", loop_state["ema_sha256"]),
                   str(path / "ema.safetensors"))
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
        per_rank = trainer.get("rng_ranks")
        set_rng_state(per_rank[rank] if per_rank and len(per_rank) == world else trainer["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        raise CheckpointError(
            f"{path / 'trainer_state.pt'} does not fit this run ({type(exc).__name__}: {exc}); the checkpoint is "
            "damaged or from another config"
        ) from None
    return loop_state


def save_best(run_dir: Path, model: torch.nn.Module, keys: set[str] | None = None, **info) -> None:
    """Write `model.safetensors` and record its sha256 in run.json; a kill at any moment leaves a
    weights file whose checksum run.json accepts (the old pair, or the new one as `pending_sha256`).
    `keys`: store only these tensors (an adapter run; `info["base"]` names its base in both records)."""
    name = "model.safetensors"
    old = read_run_info(run_dir).get("sha256", {}).get(name)
    tmp = run_dir / f".{name}.next"
    state = model.state_dict()
    digest = save_weights(state if keys is None else {k: v for k, v in state.items() if k in keys}, tmp)
    base = {"base": info["base"]} if "base" in info else {}
    write_run_info(run_dir, sha256={name: old} if old else {}, pending_sha256={name: digest}, **base)
    os.replace(tmp, run_dir / name)
    write_run_info(run_dir, sha256={name: digest}, **info)


def remove_stale_temp(run_dir: Path) -> None:
    """Delete temp folders/files a killed run left behind (`.last.*`, `.model.safetensors.next`, and the
    `.NAME.*.tmp` files of atomic writes)."""
    if not run_dir.exists():
        return
    for child in run_dir.iterdir():
        if re.fullmatch(r"\.(last|checkpoint-\d+)\..+", child.name) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif (child.name.startswith(".model.safetensors.") or re.fullmatch(r"\..+\.tmp", child.name)) \
                and child.is_file():
            child.unlink(missing_ok=True)


def step_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """`checkpoint-{step}/` folders, oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*")
             if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return sorted(found)


def keep_step_checkpoint(run_dir: Path, step: int, limit: int, best_step: int | None) -> None:
    """Copy `last/` (just written at `step`) to `checkpoint-{step}/`, then keep the `limit` newest step
    checkpoints and the best step's, deleting the others. Files are hard-linked when possible: `last/`
    is only ever replaced by a rename, never modified in place, so the links stay valid."""
    target = run_dir / f"checkpoint-{step}"
    if not target.exists():
        tmp = make_temp_dir(f".{target.name}.", run_dir)
        try:
            for src in (run_dir / "last").iterdir():
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
