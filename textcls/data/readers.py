"""Readers for labelled and unlabelled text files: CSV, TSV, JSONL (or a JSON array of objects), fastText
and plain text.

Every reader yields `Record`s with the 1-based line number the record starts on, so every error
names the file and line. Files are decoded strictly (invalid UTF-8 is an error that names the byte
offset), a UTF-8 BOM is dropped and CRLF line ends are accepted.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import logging
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from textcls.config import DataConfig
from textcls.errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "fasttext", "txt")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
            ".ndjson": "jsonl", ".ft": "fasttext", ".fasttext": "fasttext", ".txt": "txt"}
FASTTEXT_PREFIX = "__label__"
log = logging.getLogger("textcls")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Record:
    line: int
    text: str
    text_pair: Optional[str] = None
    labels: list[str] = field(default_factory=list)  # empty when the file has no labels
    label_set: bool = False  # the labels came as a JSON list: [] is a multilabel row with none of the labels
    kept: dict = field(default_factory=dict)  # the `keep` columns iter_records was asked for, by name (predict --echo)


def detect_format(path: str, cfg: DataConfig) -> str:
    """The format named in the config, else the one the suffix implies; fastText is sniffed in .txt."""
    if cfg.format:
        return cfg.format
    if path == "-":
        return "txt"
    suffix = Path(path).suffix.lower()
    fmt = SUFFIXES.get(suffix)
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {suffix or '(none)'}; set `data.format` "
            f"to one of {', '.join(FORMATS)}"
        )
    if fmt == "txt":
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(FASTTEXT_PREFIX) + 3)
        except FileNotFoundError:
            raise DataError(
                f"data file {path} does not exist; check the path in the config or on the command line") from None
        except IsADirectoryError:
            raise DataError(f"data file {path} is a directory; pass a file") from None
        except OSError as exc:
            raise DataError(f"data file {path} cannot be read: {exc.strerror}") from None
        if head.lstrip(b"\xef\xbb\xbf").startswith(FASTTEXT_PREFIX.encode()):
            return "fasttext"
    return fmt


class _StrictLines:
    """Decode a binary stream line by line, reporting the byte offset of invalid bytes."""

    def __init__(self, raw: io.BufferedIOBase, path: str, encoding: str):
        self.raw, self.path, self.encoding = raw, path, encoding
        try:
            info = codecs.lookup(encoding)
        except LookupError:
            info = None
        if info is None or not info._is_text_encoding:  # e.g. base64 and rot13 are codecs, not encodings
            raise DataError(f"{path}: unknown text encoding {encoding!r} in `data.encoding`; use e.g. utf-8, gbk, "
                            "latin-1") from None
        self.utf8 = info.name in ("utf-8", "utf-8-sig")  # any spelling: utf8, UTF_8, ...
        self.decoder = info.incrementaldecoder(errors="strict")
        self.offset = 0
        self.first = True

    def __iter__(self) -> Iterator[str]:
        # Lines are split after decoding: in UTF-16/32 a byte 0x0A is not a line end.
        pending = ""
        split_any = False
        for chunk in self.raw:
            if self.first:
                self.first = False
                if chunk.startswith(b"\xef\xbb\xbf") and self.utf8:
                    self.offset += 3
                    chunk = chunk[3:]
            *lines, pending = (pending + self._decode(chunk)).split("\n")
            split_any = split_any or bool(lines)
            for line in lines:
                yield line + "\n"
            self.offset += len(chunk)
        tail = pending + self._decode(b"", final=True)  # the last line, and a character cut off at the end
        if not split_any and "\r" in tail:  # no line feed in the whole file: classic Mac line ends
            *lines, tail = tail.split("\r")
            for line in lines:
                yield line + "\n"
        if tail:
            yield tail

    def _decode(self, chunk: bytes, final: bool = False) -> str:
        pending = len(self.decoder.getstate()[0])  # bytes of a character split across chunks
        try:
            return self.decoder.decode(chunk, final)
        except UnicodeError as exc:  # UnicodeDecodeError, or e.g. utf-16 without a BOM
            start = self.offset - pending + max(getattr(exc, "start", 0), 0)
            reason = getattr(exc, "reason", None) or str(exc)
            raise DataError(
                f"{self.path}: invalid {self.encoding} at byte offset {start} ({reason}); convert the file to UTF-8 "
                "or set `data.encoding` to the file's encoding (e.g. gbk, latin-1)"
            ) from None


def _open_lines(path: str, encoding: str) -> Iterator[str]:
    if path == "-":
        yield from _StrictLines(sys.stdin.buffer, "<stdin>", encoding)
        return
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {path} does not exist; check the path in the config or on the command line")
    if p.is_dir():
        raise DataError(f"data file {path} is a directory; pass a file")
    try:
        handle = open(p, "rb")
    except OSError as exc:
        raise DataError(f"data file {path} cannot be read: {exc.strerror}") from None
    with handle:
        yield from _StrictLines(handle, path, encoding)


class _Columns:
    """Resolve configured columns (names or indexes) against a header."""

    def __init__(self, path: str, cfg: DataConfig, header: Optional[list[str]], labelled: bool):
        self.path = path
        wanted = list(cfg.text_columns) + ([cfg.label_column] if labelled else [])
        self.indexes = [self._index(c, header) for c in wanted]
        self.n_text = len(cfg.text_columns)
        self.labelled = labelled

    def _index(self, column: Union[str, int], header: Optional[list[str]]) -> int:
        if isinstance(column, int):
            if column < 0:
                raise DataError(f"{self.path}: column index {column} is negative; columns are counted from 0")
            return column
        if header is None:
            raise DataError(
                f"{self.path}: column {column!r} is given by name but the file is read without a header; "
                "set `data.header: true` or give columns as 0-based indexes"
            )
        if header.count(column) > 1:
            raise DataError(f"{self.path}: the header names column {column!r} {header.count(column)} times; rename "
                            "the columns apart or give columns as 0-based indexes (with `data.header: true`)")
        if column not in header:
            hint = _delimiter_hint(header)
            raise DataError(
                f"{self.path}: column {column!r} not found in the header (columns: "
                f"{', '.join(repr(h[:40]) for h in header[:20])}{', ...' if len(header) > 20 else ''}); "
                f"fix `data.text_columns` / `data.label_column`{hint}"
            )
        return header.index(column)


def _delimiter_hint(header: list[str]) -> str:
    """When the whole header is one field holding another delimiter, the delimiter is probably wrong."""
    if len(header) == 1:
        for name, char, fmt in (("tab", "\t", "tsv"), ("comma", ",", "csv"), ("semicolon", ";", "csv"),
                                ("pipe", "|", "csv")):
            if char in header[0]:
                return (f"; the header looks {name}-separated: set `data.format: {fmt}` or "
                        f"`data.delimiter: {char!r}`")
    return ""


def has_header(cfg: DataConfig) -> bool:
    """Whether a CSV/TSV file's first line is its header: `data.header`, else whether a column is named."""
    return cfg.header if cfg.header is not None else any(isinstance(c, str) for c in [*cfg.text_columns,
                                                                                       cfg.label_column])


def _iter_delimited(path: str, cfg: DataConfig, fmt: str, labelled: bool,
                    bad_lines: list[int], keep: Sequence[Union[str, int]] = ()) -> Iterator[Record]:
    delimiter = cfg.delimiter or ("\t" if fmt == "tsv" else ",")
    header_line = has_header(cfg)
    # TSV files rarely quote; a stray " must stay part of the text (ChnSentiCorp has some).
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    reader = csv.reader(_open_lines(path, cfg.encoding), delimiter=delimiter, quoting=quoting, strict=fmt == "csv")
    header, columns, width = None, None, None
    try:
        for line, row in _rows(reader, path, fmt, cfg, bad_lines):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if header_line and header is None:
                header = [h.strip() for h in row]
                width = len(header)
                continue
            if columns is None:
                columns = _Columns(path, cfg, header, labelled)
                kept = [columns._index(c, header) for c in keep]
                width = width or len(row)
                needed = max(columns.indexes + kept) + 1
                if width < needed:
                    raise DataError(
                        f"{path}, line {line}: rows have {width} field(s) but the config uses column "
                        f"index {needed - 1}; check `data.delimiter` (reading with {delimiter!r}) and the columns"
                    )
            if len(row) != width:
                if cfg.on_bad_lines == "skip":
                    bad_lines.append(line)
                    continue
                raise DataError(
                    f"{path}, line {line}: expected {width} field(s) separated by {delimiter!r}, found "
                    f"{len(row)}; fix the line, or set `data.on_bad_lines: skip` to skip such lines"
                )
            fields = [row[i] for i in columns.indexes]
            texts = fields[: columns.n_text]
            labels = _split_labels(fields[-1], cfg) if labelled else []
            yield Record(line, texts[0], texts[1] if len(texts) > 1 else None, labels,
                         kept={str(c): row[i] for c, i in zip(keep, kept)})
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed {fmt.upper()} ({exc}); check the quoting") from None
    if header_line and header is None:
        raise DataError(f"{path} is empty: no header and no rows")


def _rows(reader, path: str, fmt: str, cfg: DataConfig, bad_lines: list[int]) -> Iterator[tuple[int, list[str]]]:
    """(line the row starts on, row); a row the csv module cannot parse (a carriage return inside an unquoted
    field) is skipped with `data.on_bad_lines: skip`, else an error naming its line. An unclosed quote is
    always an error, at the line it opens: it swallowed the rest of the file."""
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise DataError(f"{path}, line {first}: a quote (\") opened on this line is never closed, so the "
                                "rest of the file was read as one field; close or remove it") from None
            if cfg.on_bad_lines == "skip":
                bad_lines.append(first)
                continue
            why = ("a carriage return (\\r) inside a field" if "new-line character" in str(exc)
                   else f"malformed {fmt.upper()} ({exc})")
            raise DataError(f"{path}, line {first}: {why}; fix the line, or set `data.on_bad_lines: skip` to skip "
                            "such lines") from None
        yield first, row


def _split_labels(value: str, cfg: DataConfig) -> list[str]:
    value = value.strip()
    if cfg.task == "multilabel":
        return [v.strip() for v in value.split(cfg.label_delimiter) if v.strip()]
    return [value] if value else []


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(rec: Record, path: str, found: list[int]) -> Record:
    """`rec` with unpaired UTF-16 surrogates (JSON escapes like \\ud800 with no partner: no character, and
    nothing can encode them) replaced by U+FFFD; `found` collects the lines."""
    values = [rec.text, rec.text_pair or "", *rec.labels]
    if all(v.isascii() or not _SURROGATE.search(v) for v in values):
        return rec
    if not found:
        log.warning("%s, line %d: the text holds an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape without "
                    "its partner), which is no character; replaced by U+FFFD", path, rec.line)
    found.append(rec.line)
    fix = lambda v: _SURROGATE.sub("\ufffd", v)  # noqa: E731
    rec.text = fix(rec.text)
    rec.text_pair = fix(rec.text_pair) if rec.text_pair is not None else None
    rec.labels = [fix(x) for x in rec.labels]
    return rec


def _iter_jsonl(path: str, cfg: DataConfig, labelled: bool, bad_lines: list[int],
                keep: Sequence[Union[str, int]] = ()) -> Iterator[Record]:
    surrogates: list[int] = []
    yield from (_without_surrogates(rec, path, surrogates)
                for rec in _iter_jsonl_raw(path, cfg, labelled, bad_lines, keep))
    if len(surrogates) > 1:
        log.warning("%s: %d lines held unpaired surrogates, replaced by U+FFFD (lines %s)", path, len(surrogates),
                    ", ".join(map(str, surrogates[:10])) + (", ..." if len(surrogates) > 10 else ""))


def _iter_jsonl_raw(path: str, cfg: DataConfig, labelled: bool, bad_lines: list[int],
                    keep: Sequence[Union[str, int]] = ()) -> Iterator[Record]:
    """One JSON object a line, or (a `.json` file as often written) one JSON array of objects: item N of
    the array is record N, and errors name the item."""
    numbered = enumerate(_open_lines(path, cfg.encoding), start=1)
    first = next(((n, line) for n, line in numbered if line.strip()), None)
    if first is None:
        return
    where = "line"
    objects: Iterator[tuple[int, Any]]
    if first[1].lstrip().startswith("["):
        where, objects = "item", enumerate(_json_array(path, first[1] + "".join(line for _, line in numbered)), 1)
    else:
        objects = _json_lines(path, cfg, itertools.chain([first], numbered), bad_lines)
    for line_no, obj in objects:
        if not isinstance(obj, dict):
            what = "each item of the array" if where == "item" else "each line"
            raise DataError(f"{path}, {where} {line_no}: {what} must be a JSON object, got {type(obj).__name__}")
        keys = list(cfg.text_columns) + ([cfg.label_column] if labelled else []) + list(keep)
        missing = [k for k in keys if str(k) not in obj]
        if missing:
            if cfg.on_bad_lines == "skip":
                bad_lines.append(line_no)
                continue
            raise DataError(
                f"{path}, {where} {line_no}: key(s) {', '.join(repr(str(k)) for k in missing)} missing (keys "
                f"present: {', '.join(repr(k) for k in obj)}); fix `data.text_columns` / `data.label_column`"
            )
        texts = [obj[str(k)] for k in cfg.text_columns]
        texts = ["" if t is None else str(t) for t in texts]
        labels: list[str] = []
        value = obj[str(cfg.label_column)] if labelled else None
        if isinstance(value, list):
            labels = [_json_label(v, path, line_no, where) for v in value]
        elif value is not None:
            labels = _split_labels(_json_label(value, path, line_no, where), cfg)
        yield Record(line_no, texts[0], texts[1] if len(texts) > 1 else None, labels, isinstance(value, list),
                     {str(k): obj[str(k)] for k in keep})


def _json_lines(path: str, cfg: DataConfig, numbered: Iterator[tuple[int, str]],
                bad_lines: list[int]) -> Iterator[tuple[int, Any]]:
    for line_no, line in numbered:
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except (ValueError, RecursionError) as exc:  # also too-long integers and too-deep nesting
            if cfg.on_bad_lines == "skip":
                bad_lines.append(line_no)
                continue
            why = f"{exc.msg}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
            raise DataError(f"{path}, line {line_no}: not valid JSON ({why})") from None


def _json_array(path: str, text: str) -> list:
    """The items of a file that holds one JSON array."""
    try:
        items = json.loads(text)
    except (ValueError, RecursionError) as exc:
        why = f"{exc.msg}, line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else \
            str(exc)[:80]
        raise DataError(f"{path}: not valid JSON ({why}); a JSON data file holds one array of objects, "
                        "or one object a line (JSONL)") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: starts with [ but is not one JSON array; a JSON data file holds one array of "
                        "objects, or one object a line (JSONL)")
    return items


def _json_label(value: Any, path: str, line: int, where: str = "line") -> str:
    """A JSON label as text: strings as they are, true/false, integers (1 and 1.0 alike) and other numbers."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    raise DataError(f"{path}, {where} {line}: a label must be a string or a number (a list of them for several), got "
                    f"{json.dumps(value)[:60]}")


def _iter_fasttext(path: str, cfg: DataConfig, labelled: bool) -> Iterator[Record]:
    empty: list[int] = []
    yield from _iter_fasttext_lines(path, cfg, labelled, empty)
    if len(empty) > 1:
        log.warning("%s: %d lines had an empty `%s` (lines %s)", path, len(empty), FASTTEXT_PREFIX,
                    ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else ""))


def _iter_fasttext_lines(path: str, cfg: DataConfig, labelled: bool, empty: list[int]) -> Iterator[Record]:
    for line_no, line in enumerate(_open_lines(path, cfg.encoding), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        tokens = line.split(" ")
        labels = []
        i = 0
        while i < len(tokens) and (tokens[i].startswith(FASTTEXT_PREFIX) or tokens[i] == ""):
            if tokens[i] == FASTTEXT_PREFIX and labelled:  # `__label__` with no name: not a class called ""
                if not empty:
                    log.warning("%s, line %d: `%s` with no label name after it is ignored (a space too many?)",
                                path, line_no, FASTTEXT_PREFIX)
                empty.append(line_no)
            elif tokens[i]:
                labels.append(tokens[i][len(FASTTEXT_PREFIX):])
            i += 1
        yield Record(line_no, " ".join(tokens[i:]), None, labels if labelled else [])


def _iter_txt(path: str, cfg: DataConfig) -> Iterator[Record]:
    for line_no, line in enumerate(_open_lines(path, cfg.encoding), start=1):
        yield Record(line_no, line.rstrip("\r\n"))


def iter_records(path: str, cfg: DataConfig, labelled: bool = True, allow_empty: bool = False,
                 bad_lines: Optional[list[int]] = None, keep: Sequence[Union[str, int]] = ()) -> Iterator[Record]:
    """Yield the records of one file, checking texts and labels; `bad_lines` collects skipped lines. `keep`:
    other columns (CSV/TSV names or indexes, JSONL keys) each record carries in `kept`, by name."""
    fmt = detect_format(path, cfg)
    bad_lines = bad_lines if bad_lines is not None else []
    if keep and fmt not in ("csv", "tsv", "jsonl"):
        raise DataError(f"{path}: a {fmt} file has no columns besides the text, so {', '.join(map(repr, keep))} "
                        "cannot be read from it; give a CSV, TSV or JSONL input")
    if fmt in ("csv", "tsv"):
        records = _iter_delimited(path, cfg, fmt, labelled, bad_lines, keep)
    elif fmt == "jsonl":
        records = _iter_jsonl(path, cfg, labelled, bad_lines, keep)
    elif fmt == "fasttext":
        records = _iter_fasttext(path, cfg, labelled)
    else:
        if labelled:
            raise DataError(
                f"{path}: plain text files have no labels, so they can only be used with `predict` "
                "(or `pretrain`); use csv, tsv, jsonl or fastText (`__label__x text`) for training data"
            )
        records = _iter_txt(path, cfg)
    for rec in records:
        rec.labels = [unicodedata.normalize("NFC", x) for x in rec.labels]  # one class however "café" is encoded
        if not allow_empty and (not rec.text.strip() or (rec.text_pair is not None and not rec.text_pair.strip())):
            if cfg.on_bad_lines == "skip":
                bad_lines.append(rec.line)
                continue
            raise DataError(
                f"{path}, line {rec.line}: the text is empty; remove the line or set "
                "`data.on_bad_lines: skip` to skip such lines"
            )
        broken = next((x for x in rec.labels if "\t" in x or "\n" in x or "\r" in x), None)
        if broken is not None:
            raise DataError(f"{path}, line {rec.line}: the label {broken!r} holds a tab or a line break; labels are "
                            "one-line names (check the quoting of the label column)")
        if labelled and not rec.labels and not (cfg.task == "multilabel" and rec.label_set):
            if cfg.on_bad_lines == "skip":
                bad_lines.append(rec.line)
                continue
            raise DataError(
                f"{path}, line {rec.line}: the label is missing; every training and evaluation row needs one"
            )
        if labelled and cfg.task == "single" and len(rec.labels) > 1:
            raise DataError(
                f"{path}, line {rec.line}: {len(rec.labels)} labels on one example; set `data.task: multilabel` "
                "for multi-label data"
            )
        yield rec
