"""Which columns of a data file hold the text and the label, for `textcls train FILE` and `textcls init FILE`.

`detect_columns(path)` returns the `data` keys (format, header, text_columns, label_column) that read the
file. The rules, on a sample of the first rows:

- fastText files (`__label__x text`) need no columns.
- A header (CSV/TSV) or JSON keys: a column named like a text (text, sentence, review, content, ...) is a
  text column, and of several the one with the longest average string is taken; a column named like a
  label (label, class, category, target, sentiment, y, ...) is the label column. Without such names
  the values decide, as below.
- By the values: a label-like column has few distinct short values (at most half the rows and at most
  100, 40 characters on average); a text-like column has mostly distinct values of 10 or more
  characters on average. One of each is detected; a headerless two-column file is read as the short-valued
  column (the label) and the long-valued one (the text).
- Anything else (no label-like column, no text-like column, several candidates) is ambiguous: a
  DataError lists the columns found and the flags that settle it (`--text-column`, `--label-column`).

Columns given by the user are kept; only the missing ones are detected.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from dataclasses import dataclass
from typing import Optional, Union

from textcls.config import DataConfig
from textcls.data.readers import detect_format
from textcls.errors import DataError

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "body", "title", "comment", "text_a",
              "tweet", "message", "utterance", "query", "question", "description", "abstract", "headline")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "sentiment", "y", "tag", "intent", "topic",
               "polarity", "rating", "stars")
SAMPLE_ROWS = 2000
Column = Union[str, int]


@dataclass
class ColumnProfile:
    name: Column  # the header name or key, or the 0-based index of a headerless file
    distinct: int
    rows: int
    mean_length: float
    example: str

    @property
    def label_like(self) -> bool:
        return 2 <= self.distinct <= min(100, max(2, self.rows // 2)) and self.mean_length <= 40

    @property
    def text_like(self) -> bool:
        return self.mean_length >= 10 and self.distinct >= 0.5 * self.rows and not self.label_like

    def describe(self) -> str:
        kind = "label-like" if self.label_like else "text-like" if self.text_like else "neither"
        return (f"{self.name!r} ({kind}: {self.distinct} distinct values, {self.mean_length:.0f} characters on "
                f"average, e.g. {self.example[:30]!r})")


def _column_value(flag: str) -> Column:
    """A command-line column: digits are a 0-based index, anything else a name."""
    return int(flag) if flag.isdigit() else flag


def detect_columns(path: str, text_columns: Optional[list[str]] = None, label_column: Optional[str] = None,
                   encoding: str = "utf-8") -> dict:
    """The `data` keys that read `path`: format, and for CSV/TSV/JSONL header, text_columns, label_column.
    Raises DataError when the file cannot be read or the columns are ambiguous."""
    given_text = [_column_value(c) for c in text_columns or []]
    given_label = _column_value(label_column) if label_column is not None else None
    fmt = detect_format(path, DataConfig(encoding=encoding))
    if fmt == "fasttext":
        return {"format": "fasttext"}
    if fmt == "txt":
        raise DataError(f"{path}: a plain text file has no labels; training needs a labelled file: CSV/TSV with a text "
                        "and a label column, JSONL with text and label keys, or fastText lines (`__label__x text`)")
    header, rows = _sample(path, fmt, encoding)
    if not rows:
        raise DataError(f"{path} has no rows to train on; check the file")
    if header is None and any(isinstance(c, str) for c in [*given_text, given_label] if c is not None):
        names = [c for c in [*given_text, given_label] if isinstance(c, str)]
        if all(n in rows[0] for n in names):  # the user names columns: the first row is the header
            header, rows = rows[0], rows[1:]
    names: list[Column] = list(header) if header is not None else list(range(len(rows[0])))
    profiles = [_profile(name, [r[i] for r in rows if i < len(r)]) for i, name in enumerate(names)]
    for column in [*given_text, given_label]:
        if column is not None and column not in names:
            raise DataError(f"{path}: there is no column {column!r}; the columns found are "
                            f"{_listing(profiles)}")
    label = given_label if given_label is not None else _label_column(path, profiles, header is not None, given_text)
    texts = given_text or [_text_column(path, profiles, header is not None, label)]
    out = {"format": fmt, "text_columns": texts, "label_column": label}
    if fmt != "jsonl":
        out["header"] = header is not None
    return out


def _sample(path: str, fmt: str, encoding: str) -> tuple[Optional[list[str]], list[list[str]]]:
    """(header or None, up to SAMPLE_ROWS rows of strings); JSONL keys act as a header."""
    try:
        handle = open(path, encoding=encoding, newline="")
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise DataError(f"data file {path} is a directory; pass a file") from None
    with handle:
        try:
            lines = [line for _, line in zip(range(SAMPLE_ROWS + 1), handle)]
        except UnicodeDecodeError:
            raise DataError(f"{path} is not valid {encoding}; convert it to UTF-8") from None
    lines = [line.lstrip("\ufeff") if i == 0 else line for i, line in enumerate(lines)]
    if fmt == "jsonl" and next((line for line in lines if line.strip()), "").lstrip().startswith("["):
        objects = [obj for _, obj in zip(range(SAMPLE_ROWS), _array_items(path, encoding)) if isinstance(obj, dict)]
        keys = list(dict.fromkeys(k for obj in objects for k in obj))
        return keys, [["" if obj.get(k) is None else str(obj.get(k)) for k in keys] for obj in objects]
    if fmt == "jsonl":
        objects = []
        for line in lines:
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise DataError(f"{path}: a line is not valid JSON; each line must be one JSON object") from None
                if isinstance(obj, dict):
                    objects.append(obj)
        keys = list(dict.fromkeys(k for obj in objects for k in obj))
        return keys, [["" if obj.get(k) is None else str(obj.get(k)) for k in keys] for obj in objects]
    delimiter = "\t" if fmt == "tsv" else ","
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    try:
        rows = [r for r in csv.reader(lines, delimiter=delimiter, quoting=quoting) if any(f.strip() for f in r)]
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {fmt.upper()} ({exc}); check the quoting") from None
    if len(rows) > 1 and _is_header(rows[0], rows[1:]):
        return [h.strip() for h in rows[0]], rows[1:]
    return None, rows


def _array_items(path: str, encoding: str) -> list:
    """The items of a JSON file that holds one array (read whole: an array has no lines to sample)."""
    try:
        with open(path, encoding=encoding) as handle:
            items = json.loads(handle.read().lstrip("\ufeff"))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not valid {encoding}; convert it to UTF-8") from None
    except ValueError:
        raise DataError(f"{path}: not valid JSON; a JSON data file holds one array of objects, or one object a "
                        "line (JSONL)") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: starts with [ but is not one JSON array of objects")
    return items


_IDENTIFIER = re.compile(r"^[A-Za-z_][\w .-]{0,30}$")


def _is_header(first: list[str], rest: list[list[str]]) -> bool:
    """A first row of known column names, or of short identifiers none of which recurs in its column."""
    lowered = [f.strip().lower() for f in first]
    if any(name in TEXT_NAMES or name in LABEL_NAMES for name in lowered):
        return True
    if not all(_IDENTIFIER.match(f.strip()) for f in first):
        return False
    columns = [{r[i] for r in rest if i < len(r)} for i in range(len(first))]
    return all(first[i] not in values for i, values in enumerate(columns))


def _profile(name: Column, values: list[str]) -> ColumnProfile:
    stripped = [v.strip() for v in values]
    mean = statistics.fmean(len(v) for v in stripped) if stripped else 0.0
    return ColumnProfile(name, len(set(stripped)), len(stripped), mean, stripped[0] if stripped else "")


def _named(profiles: list[ColumnProfile], names: tuple[str, ...]) -> list[ColumnProfile]:
    """The columns named one of `names`, in the order of `names` (the first is the most telling)."""
    by_name = {str(p.name).strip().lower(): p for p in profiles}
    return [by_name[n] for n in names if n in by_name]


def _label_column(path: str, profiles: list[ColumnProfile], has_names: bool, texts: list[Column]) -> Column:
    named = _named(profiles, LABEL_NAMES) if has_names else []
    if named:
        return named[0].name
    candidates = [p for p in profiles if p.label_like and p.name not in texts]
    if len(candidates) == 1:
        return candidates[0].name
    what = "no column looks like a label" if not candidates else "several columns look like labels"
    raise DataError(f"{path}: cannot tell the label column ({what}); the columns found are {_listing(profiles)}; "
                    f"pass --label-column {_flag_example(profiles, has_names)}")


def _text_column(path: str, profiles: list[ColumnProfile], has_names: bool, label: Column) -> Column:
    named = [p for p in (_named(profiles, TEXT_NAMES) if has_names else []) if p.name != label]
    if named:
        return max(named, key=lambda p: p.mean_length).name
    candidates = [p for p in profiles if p.text_like and p.name != label]
    if len(candidates) == 1 or (candidates and has_names):
        return max(candidates, key=lambda p: p.mean_length).name
    what = "no column looks like text" if not candidates else "several columns look like text"
    raise DataError(f"{path}: cannot tell the text column ({what}); the columns found are {_listing(profiles)}; "
                    f"pass --text-column {_flag_example(profiles, has_names)} (twice for a text pair)")


def _listing(profiles: list[ColumnProfile]) -> str:
    return "; ".join(p.describe() for p in profiles[:20]) + ("; ..." if len(profiles) > 20 else "")


def _flag_example(profiles: list[ColumnProfile], has_names: bool) -> str:
    return "NAME (a header name)" if has_names else "N (a 0-based column index; the file has no header)"
