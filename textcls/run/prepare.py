"""Before training: a new run, a resumed one, or one replacing an old run (the overwrite/resume policy).

`prepare_run_dir` decides (and deletes nothing); `replace_old_run` removes an old run's files just
before the new run writes its first, so a run that fails on its input leaves the old one intact.
`--resume` continues the saved plan: `check_resume_config` refuses a CONFIG or `--set` that would
change it, and `resumed_config` takes only the runtime keys from the command line.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from textcls.config import Config, config_from_dict, config_to_dict, read_yaml
from textcls.errors import CheckpointError, ConfigError
from textcls.run.info import read_run_info
from textcls.run.layout import CONFIG, LAST, LOCK, RUN_ENTRY, TOKENIZER, is_run_dir
from textcls.run.store import has_checkpoint, remove_stale_temp


def prepare_run_dir(cfg: Config, run_dir: Path, resume: bool,
                    announce: Optional[Callable[[str], None]] = None) -> tuple[Config, bool]:
    """The config to train with and whether a checkpoint is resumed; deletes nothing.

    `--resume` with no checkpoint yet (the run was killed before its first save) starts the run over.
    `announce` prints a message (the training layer passes its console on rank 0).
    A run that `output.overwrite` replaces is removed by `replace_old_run` just before the new run
    writes its first file, so a new run that fails on its input leaves the old one as it was.
    """
    saved = run_dir / CONFIG
    is_run = is_run_dir(run_dir)
    if is_run:
        remove_stale_temp(run_dir)
    if resume and has_checkpoint(run_dir / LAST):
        if not is_run:
            raise CheckpointError(f"cannot resume: {run_dir} has no {CONFIG} and {TOKENIZER}; train without "
                                  "--resume first")
        read_run_info(run_dir)  # refuses a run directory written by an incompatible textcls
        return resumed_config(cfg, saved), True
    if resume:
        if is_run:
            cfg = resumed_config(cfg, saved)
            cfg.output.overwrite = True  # only the files of the interrupted run are there
        if announce is not None:
            announce(f"{run_dir} has no checkpoint to resume yet; starting the run from step 0")
    if run_dir.exists() and any(c.name != LOCK for c in run_dir.iterdir()):
        if not is_run:
            raise ConfigError(f"output directory {run_dir} exists and is not empty; pick another --output")
        if not cfg.output.overwrite:
            raise ConfigError(
                f"output directory {run_dir} already holds a run; continue it with --resume, pick another "
                "--output, or pass --set output.overwrite=true to replace it"
            )
        foreign = sorted(c.name for c in run_dir.iterdir() if not RUN_ENTRY.fullmatch(c.name) and c.name != LOCK)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ConfigError(
                f"output.overwrite would replace the run in {run_dir}, but the folder also holds {shown}, which "
                "textcls did not write; nothing was deleted. Give the run an --output folder of its own"
            )
    return cfg, False


def replace_old_run(run_dir: Path) -> None:
    """Remove the files of the run that `output.overwrite` replaces (checked by prepare_run_dir).

    A symlink is removed, not followed; config.yaml and tokenizer.json go last, so a folder left
    half-cleared by an error still reads as a run that the next `output.overwrite` replaces."""
    if not is_run_dir(run_dir):
        return
    markers = (CONFIG, TOKENIZER)  # what is_run_dir looks for: removed last
    entries = sorted((c for c in run_dir.iterdir() if RUN_ENTRY.fullmatch(c.name)), key=lambda c: c.name in markers)
    try:
        for child in entries:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    except OSError as exc:
        raise CheckpointError(f"cannot remove the old run's {exc.filename or run_dir} ({exc.strerror or exc}); "
                              "fix its permissions or remove it by hand, then train again") from None


# Keys that say how, not what, to train: a resumed run takes them from the config it is given.
RUNTIME_KEYS = ("train.device", "train.num_threads", "train.ensemble_workers", "train.eval_batch_size",
                "data.cache_dir")


def resumed_config(given: Config, saved: Path) -> Config:
    """The run's saved config, with the runtime keys of the `given` one."""
    cfg = config_from_dict(read_yaml(saved), source=str(saved))
    for key in RUNTIME_KEYS:
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, getattr(getattr(given, section), name))
    return cfg


def check_resume_config(cfg: Config, run_dir: Path, command: str = "train") -> None:
    """Refuse `--resume` with a CONFIG or `--set` that differs from the run's saved config.yaml.

    Resuming continues the saved plan exactly (steps, schedule, data order), so a changed key would
    be ignored. Exempt: the runtime keys (taken from `cfg`), the output keys (the directory is named
    on the command line) and `train.grad_accum` (set on resume to keep the saved global batch).
    """
    saved = run_dir / CONFIG
    if not saved.is_file():
        return
    ours = _flat(config_to_dict(cfg))
    theirs = _flat(config_to_dict(config_from_dict(read_yaml(saved), source=str(saved))))
    exempt = {*RUNTIME_KEYS, "train.grad_accum"}
    changed = [k for k in sorted(set(ours) | set(theirs))
               if not k.startswith("output.") and k not in exempt and ours.get(k) != theirs.get(k)]
    if changed:
        shown = "; ".join(f"`{k}` is {ours.get(k)!r} here but {theirs.get(k)!r} in the run" for k in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise ConfigError(
            f"cannot resume {run_dir} with a different config: {shown}{more}. --resume continues the saved run "
            f"exactly as planned; resume with `textcls {command} --output {run_dir} --resume` (no CONFIG, no --set), "
            "or start a new run in another --output"
        )


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
