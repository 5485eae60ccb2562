"""Where a command may write what the user asked for (predictions, an evaluation report): never onto its own
input, and never onto a file of a run directory, which would destroy the run without a word."""

from __future__ import annotations

import os
from pathlib import Path

from textcls.errors import ConfigError
from textcls.run.layout import LOCK, RUN_ENTRY, is_run_dir


def check_output(output: Path | str | None, option: str, inputs: tuple[Path | str | None, ...] = (),
                 allowed: tuple[str, ...] = ()) -> None:
    """Refuse an `output` (named by `option`, e.g. --output) that is one of `inputs` or a run file: a file
    whose name a run directory uses (model.safetensors, config.yaml, ...) inside one, or anything below
    one of its folders (last/, members/, checkpoint-N/), except the `allowed` names (plot writes curves.png).
    Stdout ("-"), devices and FIFOs pass."""
    if output in (None, "-"):
        return
    path = Path(output)
    if path.exists() and not path.is_file():
        return  # a device or FIFO is written through; a folder fails with its own message
    real = Path(os.path.realpath(path))
    for given in inputs:
        if given in (None, "-"):
            continue
        if Path(given).exists() and os.path.realpath(given) == str(real):
            raise ConfigError(f"{option} {output} is the input file {given}: writing it would destroy the input "
                              f"before it is read; name another {option}")
    for folder in list(real.parents)[:4]:  # RUN/members/K/last/state.json is the deepest run file
        if is_run_dir(folder):
            inside = real.relative_to(folder).parts
            if (RUN_ENTRY.fullmatch(inside[0]) or inside[0] == LOCK) and "/".join(inside) not in allowed:
                raise ConfigError(f"{option} {output} is a file of the run directory {folder} "
                                  f"({'/'.join(inside)}); writing it would damage the run. Name a file outside "
                                  "the run directory, or one the run does not use")
