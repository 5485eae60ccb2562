"""The label vocabulary: taken from the training split (or a label-name file), saved as labels.json."""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path
from typing import Iterable

from textcls.config import DataConfig
from textcls.errors import CheckpointError, DataError
from textcls.io import atomic_write_json, read_regular_text

log = logging.getLogger("textcls")


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def read_label_names(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()  # a BOM (Windows editors) is not a name
    except FileNotFoundError:
        raise DataError(f"label-name file {path} (`data.label_names`) does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"label-name file {path} (`data.label_names`) cannot be read: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or "\t" in line.strip():
            what = "is blank (names are numbered by line, so a gap would shift them)" if not line.strip() \
                else "holds a tab (labels are one-line names without tabs)"
            raise DataError(f"label-name file {path} (`data.label_names`), line {number} {what}; fix that line")
    names = [unicodedata.normalize("NFC", line.strip()) for line in lines]
    if not names:
        raise DataError(f"label-name file {path} (`data.label_names`) is empty; write one label name per line")
    if len(set(names)) != len(names):
        raise DataError(f"label-name file {path} (`data.label_names`) repeats a name; names must be unique")
    return names


class LabelNamer:
    """Turns raw label values into label names (integer values index a label-name file)."""

    def __init__(self, cfg: DataConfig):
        self.names = read_label_names(cfg.label_names) if cfg.label_names else None
        self.base = cfg.label_index_base
        self.source = cfg.label_names

    def problem(self, value: str) -> str | None:
        """Why a label value names no label of the label-name file, or None."""
        if self.names is None or value in self.names:
            return None
        if not _is_int(value):
            return (f"label {value!r} is not a name in {self.source} (`data.label_names`); fix the label or add "
                    "the name to that file (a header row? set `data.header: true`)")
        n, base = len(self.names), self.base
        return (f"label {value} names no line of {self.source} ({n} names: with `data.label_index_base: {base}` the "
                f"values {base}..{base + n - 1} name them); set `data.label_index_base` to the value of the first "
                "line, or add the missing names to the file")

    def __call__(self, value: str) -> str:
        if self.names is None or value in self.names:
            return value
        if _is_int(value) and 0 <= int(value) - self.base < len(self.names):
            return self.names[int(value) - self.base]
        return value


def build_labels(train_labels: Iterable[list[str]], cfg: DataConfig) -> list[str]:
    """The ordered label list: the label-name file's order, else numeric or alphabetical order."""
    if cfg.label_names:
        return read_label_names(cfg.label_names)
    seen = {label for labels in train_labels for label in labels}
    if not seen:
        raise DataError(f"{cfg.train}: the training set has no labels")
    if len(seen) == 1 and cfg.task == "single":
        held = (f" (after `data.valid_fraction` {cfg.valid_fraction} held rows out: lower it or add rows)"
                if cfg.valid_fraction and not cfg.valid else "")
        raise DataError(f"{cfg.train}: every training row has the label {next(iter(seen))!r}{held}; a classifier "
                        "needs at least two labels. Check `data.label_column`, or list the labels in "
                        "`data.label_names`")
    _warn_near_duplicates(seen, cfg.train)
    if all(_is_int(s) for s in seen):  # numeric order; "0" and "00" are both 0, so the text breaks the tie
        return sorted(seen, key=lambda s: (int(s), s))
    return sorted(seen)  # never set order: it changes with PYTHONHASHSEED, and the label ids with it


def _warn_near_duplicates(labels: set[str], source) -> None:
    """Warn about labels that differ only in case or whitespace (`pos` and `Pos`): usually one class
    spelled two ways, which the classifier would learn as two."""
    groups: dict[str, list[str]] = {}
    for label in sorted(labels):
        groups.setdefault(" ".join(label.split()).casefold(), []).append(label)
    alike = [names for names in groups.values() if len(names) > 1]
    if alike:
        shown = "; ".join(" / ".join(repr(n) for n in names) for names in alike[:5])
        log.warning("%s: labels that differ only in case or whitespace are separate classes: %s%s; if they are one "
                    "class, spell them the same in the data", source, shown, " ..." if len(alike) > 5 else "")


def save_labels(labels: list[str], path: Path) -> None:
    atomic_write_json(path, labels)


def load_labels(path: Path) -> list[str]:
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path} is missing; is {path.parent} a textcls run directory?")
    try:
        labels = json.loads(read_regular_text(path, CheckpointError))
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} cannot be read ({str(exc)[:200]}); the run directory is damaged") from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(f"{path} must hold a JSON list of label names (strings); the run directory is "
                              f"damaged: restore the run's {path.name} or train again")
    if not labels:
        raise CheckpointError(f"{path} lists no labels; the run directory is damaged: restore the run's {path.name} "
                              "or train again")
    if len(set(labels)) != len(labels):
        twice = next(x for x in labels if labels.count(x) > 1)
        raise CheckpointError(f"{path} lists the label {twice!r} twice; the run directory is damaged: restore "
                              f"the run's {path.name} or train again")
    return labels


def label_ids(labels: list[str], index: dict[str, int], path: str, line: int,
              namer: "LabelNamer | None" = None) -> list[int]:
    out = []
    for label in labels:
        problem = namer.problem(label) if namer is not None and label not in index else None
        if problem:
            raise DataError(f"{path}, line {line}: {problem}")
        if label not in index:
            known = ", ".join(list(index)[:20])
            raise DataError(
                f"{path}, line {line}: label {label!r} never occurs in the training data (known labels: "
                f"{known}); fix the label or add examples of it to the training file"
            )
        out.append(index[label])
    return out
