"""An ensemble run directory: `ensemble.json` (members, which have finished, their scores) and its members,
each an ordinary run directory under `members/`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from textcls.errors import CheckpointError
from textcls.io import read_regular_text
from textcls.run.layout import ENSEMBLE, MEMBERS, is_ensemble_dir

__all__ = ["MEMBERS", "is_ensemble_dir", "member_dirs", "member_name", "read_ensemble"]


def member_name(index: int | str) -> str:
    """Member `index`'s folder, relative to the ensemble's run directory (as ensemble.json lists it)."""
    return f"{MEMBERS}/{index}"


def read_ensemble(run_dir: Path) -> dict:
    path = run_dir / ENSEMBLE
    try:
        info = json.loads(read_regular_text(path, CheckpointError))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); the run directory is damaged") from None
    named = lambda names: all(isinstance(m, str) and re.fullmatch(rf"{MEMBERS}/\d+", m) for m in names)  # noqa: E731
    if not isinstance(info, dict) or not isinstance(info.get("members"), list) or \
            not isinstance(info.get("finished", []), list) or not named(info["members"]) \
            or not named(info.get("finished", [])):
        raise CheckpointError(f"{path} is not a textcls ensemble file (expected members and finished lists of "
                              f"{MEMBERS}/K folders); "
                              "the run directory is damaged")
    return info


def member_dirs(run_dir: Path) -> list[Path]:
    """The member run directories of a finished ensemble; a CheckpointError while any is unfinished."""
    info = read_ensemble(run_dir)
    members, finished = info["members"], set(info.get("finished", []))
    if not members or any(m not in finished for m in members):
        raise CheckpointError(
            f"{run_dir} is an ensemble whose training has not finished ({len(finished)} of {len(members)} members "
            f"done); continue it with `textcls train --output {run_dir} --resume`")
    return [run_dir / m for m in members]

