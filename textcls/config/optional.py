"""Optional packages that a config can ask for, and how to install them. The config checks ask here (at
load time, with every other problem); the code that uses a package imports it when it runs."""

from __future__ import annotations

import importlib.util

SEGMENTERS = {"jieba": "rjieba"}  # `tokenizer.segment` -> the package that implements it
INSTALL_HINT = "pip install 'textcls[zh]' (or pip install rjieba)"


def segmenter_available(name: str) -> bool:
    """Whether the package behind segmenter `name` is installed (False for an unknown name)."""
    package = SEGMENTERS.get(name)
    return package is not None and importlib.util.find_spec(package) is not None
