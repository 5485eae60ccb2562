"""Transitional: the overwrite/resume policy moved to textcls/run/prepare.py."""

from pathlib import Path

from textcls.config import Config
from textcls.run.layout import is_run_dir  # noqa: F401
from textcls.run.prepare import RUNTIME_KEYS, check_resume_config, replace_old_run, resumed_config  # noqa: F401
from textcls.run.prepare import prepare_run_dir as _prepare
from textcls.train import distributed
from textcls.train.progress import console


def prepare_run_dir(cfg: Config, run_dir: Path, resume: bool) -> tuple[Config, bool]:
    say = (lambda m: console.print(m, highlight=False, soft_wrap=True)) if distributed.is_main() else None
    return _prepare(cfg, run_dir, resume, say)
