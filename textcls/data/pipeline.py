"""Load -> clean -> tokenize (`datasets.map(batched=True)`) -> cached Arrow with input_ids, length, label.

The cache key covers the data file (path, size, mtime), every data option that changes the
result, and the tokenizer's JSON, so an unchanged second run memory-maps the Arrow file and does
not re-read or re-tokenize the text. The trained tokenizer is cached the same way.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional

import numpy as np
from tokenizers import Tokenizer

from textcls import __version__
from textcls.config import Config, DataConfig
from textcls.data.labels import LabelNamer, build_labels, label_ids
from textcls.data.overlap import Containment, text_key
from textcls.data.readers import Record, detect_format, has_header, iter_records
from textcls.data.tokenizer import CLS, SEP, TRAINER_VERSION, encode_batch_safely, load_tokenizer, train_tokenizer
from textcls.errors import DataError
from textcls.io import (
    atomic_write_json,
    atomic_write_text,
    check_regular_file,
    make_temp_dir,
    process_exists,
    read_regular_text,
    sha256_file,
)
from textcls.progress import WorkProgress

if TYPE_CHECKING:
    import datasets

log = logging.getLogger("textcls")


@functools.lru_cache(maxsize=1)
def hf_datasets():
    """The `datasets` module, imported on first use (it takes half a second, which `predict` does not need),
    with its progress bars and logging off."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets

# Data options that change the tokenized result (and so the cache key).
_DATA_KEYS = ("format", "header", "delimiter", "text_columns", "label_column", "label_names",
              "label_index_base", "task", "label_delimiter", "max_length", "truncation", "head_tokens",
              "encoding", "on_bad_lines")


def cache_root(cfg: DataConfig | None = None) -> Path:
    """textcls's cache: `data.cache_dir`, else TEXTCLS_CACHE, else ~/.cache/textcls."""
    root = (cfg and cfg.cache_dir) or os.environ.get("TEXTCLS_CACHE") or Path.home() / ".cache" / "textcls"
    return Path(root)


_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime, ctime, inode) -> sha256, so a file is hashed once a process


def _file_identity(path: str) -> dict:
    """What a cache entry built from the file `path` is keyed by: its path and the sha256 of its content (a
    file edited in place with its size and mtime kept gets another key). A FIFO or device, which cannot be
    read twice, gets a key of its own each time: never reused."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {path} does not exist; check the path in the config or on the command line")
    if p.is_dir():
        raise DataError(f"data file {path} is a directory; pass a file")
    st = p.stat()
    if not stat.S_ISREG(st.st_mode):
        return {"path": str(p.resolve()), "unrepeatable": f"{os.getpid()}.{time.time_ns()}"}
    stamp = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if stamp not in _DIGESTS:
        try:
            _DIGESTS[stamp] = sha256_file(p)
        except OSError as exc:
            raise DataError(f"data file {path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    return {"path": stamp[0], "sha256": _DIGESTS[stamp]}


def _key(*parts: object) -> str:
    blob = json.dumps([__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- encoding


def truncate(ids: list[int], budget: int, how: str, head_tokens: int) -> list[int]:
    """Cut `ids` to `budget` tokens keeping the head, the tail, or `head_tokens` of the head + the tail."""
    if len(ids) <= budget:
        return ids
    if how == "tail":
        return ids[len(ids) - budget:]
    if how == "head+tail":
        head = min(head_tokens, budget)
        tail = budget - head
        return ids[:head] + (ids[len(ids) - tail:] if tail else [])
    return ids[:budget]


def encode_texts(tok: Tokenizer, texts: list[str], pairs: Optional[list[str]], max_length: int,
                 truncation: str = "head", head_tokens: int = 128) -> tuple[list[list[int]], list[list[int]]]:
    """Tokenize to `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`; returns (input_ids, token_type_ids)."""
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    first = [e.ids for e in encode_batch_safely(tok, texts, add_special_tokens=False)]
    if pairs is None:
        ids = [[cls_id, *truncate(a, max_length - 2, truncation, head_tokens), sep_id] for a in first]
        return ids, [[0] * len(x) for x in ids]
    second = [e.ids for e in encode_batch_safely(tok, pairs, add_special_tokens=False)]
    all_ids, all_types = [], []
    budget = max_length - 3
    for a, b in zip(first, second):
        if len(a) + len(b) > budget:  # longest first: each side keeps at least half the budget it needs
            keep_a = min(len(a), max(budget // 2, budget - len(b)))
            a = truncate(a, keep_a, truncation, head_tokens)
            b = truncate(b, budget - keep_a, truncation, head_tokens)
        all_ids.append([cls_id, *a, sep_id, *b, sep_id])
        all_types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
    return all_ids, all_types


def _encode_map(tok: Tokenizer, cfg: DataConfig, has_pairs: bool):
    def fn(batch: dict) -> dict:
        ids, types = encode_texts(tok, batch["text"], batch["text_pair"] if has_pairs else None,
                                  cfg.max_length, cfg.truncation, cfg.head_tokens)
        out = {"input_ids": ids, "length": [len(x) for x in ids]}
        if has_pairs:
            out["token_type_ids"] = types
        return out
    return fn


# --------------------------------------------------------------------------- splits


Records = tuple[list[Record], list[int]]  # rows, and the line numbers of skipped ones


@dataclass
class SplitInfo:
    path: str
    rows: int
    skipped_lines: list[int]


def _records_to_dataset(records: list[Record], labels_of: Optional[Callable[[list[Record]], dict]],
                        has_pairs: bool) -> datasets.Dataset:
    columns: dict = {"text": [r.text for r in records], "line": [r.line for r in records]}
    if has_pairs:
        columns["text_pair"] = [r.text_pair or "" for r in records]
    if labels_of is not None:
        columns.update(labels_of(records))
    return hf_datasets().Dataset.from_dict(columns)


def _label_columns(path: str, cfg: DataConfig, labels: list[str]):
    namer = LabelNamer(cfg)
    index = {name: i for i, name in enumerate(labels)}

    def fn(records: list[Record]) -> dict:
        ids = [label_ids([namer(x) for x in r.labels], index, path, r.line, namer) for r in records]
        if cfg.task == "multilabel":
            return {"labels": ids}
        return {"label": [i[0] for i in ids]}
    return fn


def _read_all(path: str, cfg: DataConfig, labelled: bool) -> Records:
    skipped: list[int] = []
    records = list(iter_records(path, cfg, labelled=labelled, bad_lines=skipped))
    if not records:
        raise DataError(f"{path} has no usable rows" + (f" ({len(skipped)} skipped)" if skipped else "")
                        + "; check the file and the `data` section of the config")
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else "")
        log.warning("%s: skipped %d bad line(s) (data.on_bad_lines: skip): %s", path, len(skipped), shown)
    return records, skipped


def tokenize_file(path: str, cfg: DataConfig, tok: Tokenizer, labels: Optional[list[str]],
                  read: Optional[Callable[[], Records]] = None, part: Optional[dict] = None,
                  quiet: bool = True) -> tuple[datasets.Dataset, SplitInfo]:
    """Tokenize one labelled file into a cached Arrow dataset (reused when nothing changed).

    `labels=None` means "take the label list from this file" (the training split); it is then
    stored in the cache entry's metadata. `part` names a subset of the rows that `read` returns
    (a `data.valid_fraction` split) and is part of the cache key. `quiet=False`: progress on stderr
    while the rows are tokenized (not when the cache is reused).
    """
    ident = _file_identity(path)
    data_opts = {k: getattr(cfg, k) for k in _DATA_KEYS}
    if part:
        data_opts["part"] = part
    if cfg.label_names:
        data_opts["label_names_file"] = _file_identity(cfg.label_names)
    tok_hash = hashlib.sha256(tok.to_str().encode()).hexdigest()
    entry = cache_root(cfg) / "datasets" / _key("split", ident, data_opts, tok_hash, labels)
    if (entry / "meta.json").exists():
        reused = _reuse_entry(entry, tok.get_vocab_size(), labels)
        if isinstance(reused, str):  # a damaged cache entry is rebuilt, never trusted
            log.warning("%s: the tokenized cache entry %s is damaged (%s); rebuilding it", path, entry, reused)
            shutil.rmtree(entry, ignore_errors=True)
        else:
            log.info("%s: reusing tokenized cache %s", path, entry)
            ds, meta = reused
            return ds, SplitInfo(path, meta["rows"], meta["skipped_lines"])
    records, skipped = read() if read is not None else _read_all(path, cfg, labelled=True)
    if labels is None:
        namer = LabelNamer(cfg)
        _check_first_row(path, cfg, records)
        labels = build_labels(([namer(x) for x in r.labels] for r in records), cfg)
    has_pairs = len(cfg.text_columns) == 2
    raw = _records_to_dataset(records, _label_columns(path, cfg, labels), has_pairs)
    what = f"tokenizing {path}" + (f" ({part['rows']} rows)" if part and part.get("rows") else "")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphaned_builds(entry)
        tmp = make_temp_dir(f"{entry.name}.{os.getpid()}.", entry.parent)
    except OSError as exc:
        raise DataError(_cache_problem(entry.parent, exc)) from None
    try:  # nothing that could take a signal between the folder's making and this block
        with WorkProgress(what, len(records), enabled=not quiet, unit="rows") as progress:
            raw.map(_counted(_encode_map(tok, cfg, has_pairs), progress), batched=True, batch_size=1000,
                    remove_columns=[c for c in ("text", "text_pair") if c in raw.column_names],
                    cache_file_name=str(tmp / "data.arrow"), new_fingerprint=entry.name)
        atomic_write_json(tmp / "meta.json", {"rows": len(records), "skipped_lines": skipped,
                                              "labels": labels, "source": ident,
                                              "sha256": sha256_file(tmp / "data.arrow")})
        _publish_entry(tmp, entry)
    except OSError as exc:  # pyarrow reports a full disk as an OSError without errno
        raise DataError(_cache_problem(entry.parent, exc)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ds = hf_datasets().Dataset.from_file(str(entry / "data.arrow"))
    return ds, SplitInfo(path, len(records), skipped)


def _counted(fn: Callable[[dict], dict], progress: WorkProgress) -> Callable[[dict], dict]:
    """`fn` for `datasets.map(batched=True)` that advances `progress` by each batch's rows."""
    def counted(batch: dict) -> dict:
        out = fn(batch)
        progress.advance(len(batch["text"]))
        return out
    return counted


def _reuse_entry(entry: Path, vocab_size: int, labels: Optional[list[str]]):
    """(dataset, meta) of a cache entry that passes its checks: the sha256 meta.json records for data.arrow,
    and token ids, lengths and label ids in range; else why it fails, as a string."""
    try:
        check_regular_file(entry / "data.arrow", DataError)  # a FIFO would block the hash below
        meta = json.loads(read_regular_text(entry / "meta.json", DataError, 1 << 30))
        if not isinstance(meta, dict) or not isinstance(meta.get("rows"), int) \
                or not isinstance(meta.get("skipped_lines"), list) or not isinstance(meta.get("labels"), list):
            return "meta.json is not what textcls writes"
        if meta.get("sha256") != sha256_file(entry / "data.arrow"):
            return "data.arrow does not match the sha256 in meta.json"
        ds = hf_datasets().Dataset.from_file(str(entry / "data.arrow"))
        problem = _dataset_problem(ds, meta, vocab_size, len(labels if labels is not None else meta["labels"]))
        return problem or (ds, meta)
    except Exception as exc:  # pyarrow, datasets and json fail in many ways on a damaged file
        return f"{type(exc).__name__}: {str(exc)[:120]}"


def _dataset_problem(ds: datasets.Dataset, meta: dict, vocab_size: int, num_labels: int) -> Optional[str]:
    """Why a tokenized split cannot be right (token ids outside the vocabulary, lengths that disagree,
    label ids outside the label list), or None."""
    import pyarrow.compute as pc

    if len(ds) != meta["rows"]:
        return f"{len(ds)} rows where meta.json says {meta['rows']}"
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    for name in ("input_ids", "token_type_ids"):
        if name not in table.column_names:
            continue
        column = table.column(name)
        lengths = pc.list_value_length(column)
        if name == "input_ids" and pc.all(pc.equal(lengths, table.column("length"))).as_py() not in (True, None):
            return "token counts that disagree with their `length` column"
        bounds = pc.min_max(pc.list_flatten(column)).as_py()
        top = vocab_size if name == "input_ids" else 2
        if bounds["min"] is not None and (bounds["min"] < 0 or bounds["max"] >= top):
            return f"{name} outside 0..{top - 1}"
    for name in ("label", "labels"):
        if name in table.column_names:
            column = table.column(name)
            values = pc.list_flatten(column) if name == "labels" else column
            bounds = pc.min_max(values).as_py()
            if bounds["min"] is not None and (bounds["min"] < 0 or bounds["max"] >= num_labels):
                return f"label ids outside 0..{num_labels - 1}"
    return None


def _remove_orphaned_builds(entry: Path) -> None:
    """Temp folders `KEY.PID.XXXX` of earlier builds of `entry` whose process is gone (killed with -9; a
    SIGTERM or Ctrl-C removes its own on the way out)."""
    for sibling in entry.parent.glob(f"{entry.name}.*.*"):
        pid = sibling.name.split(".")[1]
        if sibling.is_dir() and pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(sibling, ignore_errors=True)


def _publish_entry(tmp: Path, entry: Path) -> None:
    """Rename a built cache entry into place. Entries are named by their inputs, so an entry another run
    published meanwhile (two trainings started at once) holds the same rows: keep it, since that run may
    be reading it, and drop ours."""
    try:
        os.replace(tmp, entry)
    except OSError:
        if (entry / "meta.json").exists():
            return
        shutil.rmtree(entry, ignore_errors=True)  # a leftover without metadata: replace it
        os.replace(tmp, entry)


def _check_first_row(path: str, cfg: DataConfig, records: list[Record]) -> None:
    """Refuse a likely header read as data: columns by index, `data.header` unset, and line 1's label
    occurring nowhere else while every other label occurs at least twice."""
    if cfg.header is not None or not records or records[0].line != 1 or detect_format(path, cfg) not in ("csv", "tsv"):
        return
    if has_header(cfg) or len(records) < 4:  # `data.header` is unset here: columns by name mean a header
        return
    counts = collections.Counter(label for r in records for label in r.labels)
    first = records[0].labels
    if first and all(counts[x] == 1 for x in first) and all(n >= 2 for x, n in counts.items() if x not in first):
        raise DataError(
            f"{path}, line 1: its label {first[0]!r} occurs nowhere else, so the line looks like a header read as "
            "a row (columns are given by index and `data.header` is not set); set `data.header: true` to skip "
            "it, or `data.header: false` if it is a real row"
        )


def _cache_problem(folder: Path, exc: OSError) -> str:
    return (f"cannot write the tokenized-data cache in {folder} ({exc.strerror or exc}); free disk space or "
            "point `data.cache_dir` (or the TEXTCLS_CACHE variable) to a writable folder")


def split_labels(ds: datasets.Dataset) -> Optional[list[str]]:
    """The label list stored with a cached training split."""
    files = ds.cache_files
    if not files:
        return None
    meta = Path(files[0]["filename"]).parent / "meta.json"
    return json.loads(meta.read_text())["labels"] if meta.exists() else None


def get_tokenizer(cfg: Config, read: Optional[Callable[[], Records]] = None,
                  part: Optional[dict] = None, quiet: bool = True) -> Tokenizer:
    """Load `tokenizer.path`, else reuse a cached one trained on this training file, else train one.

    `read()` returns the training records (and skipped lines); prepare_data passes one that reads
    the file once for both the tokenizer and the tokenized split, and `part` when those records are
    the training part of a `data.valid_fraction` split. `quiet=False`: a line when training starts
    and one when it ends (the trainer gives no count to show a bar of).
    """
    if cfg.tokenizer.path:
        return load_tokenizer(cfg.tokenizer.path)
    ident = _file_identity(cfg.data.train)
    data_opts = {k: getattr(cfg.data, k) for k in ("format", "header", "delimiter", "text_columns",
                                                   "encoding", "on_bad_lines")}
    if part:
        data_opts["part"] = part
    key = _key("tok", TRAINER_VERSION, ident, data_opts, asdict(cfg.tokenizer))
    path = cache_root(cfg.data) / "tokenizers" / f"{key}.json"
    digest = path.with_suffix(".sha256")  # the tokenizer's checksum, written after it
    if path.exists():
        try:
            check_regular_file(path, DataError)
            if read_regular_text(digest, DataError, 1024).strip() != sha256_file(path):
                raise ValueError("it does not match its checksum")
            return load_tokenizer(path)
        except Exception as exc:  # damaged: trained again, never trusted
            log.warning("the cached tokenizer %s is damaged (%s); training it again", path, str(exc)[:120])
            for stale in (path, digest):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    t = cfg.tokenizer
    what = f"training a {t.type} tokenizer (vocab_size {t.vocab_size:,}) on {cfg.data.train}"
    with WorkProgress(what, None, enabled=not quiet) as progress:
        records, _ = read() if read is not None else _read_all(cfg.data.train, cfg.data, labelled=True)
        tok = train_tokenizer(_texts(records), t)
        progress.finish(f"{tok.get_vocab_size():,} tokens from {len(records):,} rows")
    try:
        atomic_write_text(path, tok.to_str())
        atomic_write_text(digest, sha256_file(path) + "\n")
    except OSError as exc:
        raise DataError(_cache_problem(path.parent, exc)) from None
    return tok


def _texts(records: list[Record]) -> Iterable[str]:
    for r in records:
        yield r.text
        if r.text_pair:
            yield r.text_pair


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    labels: list[str]
    train: datasets.Dataset
    valid: Optional[datasets.Dataset]


def prepare_data(cfg: Config, tokenizer: Optional[Tokenizer] = None, quiet: bool = True) -> PreparedData:
    """Tokenizer, label list, and tokenized train/valid splits for a training run.

    With `data.valid_fraction` the rows are split first: the tokenizer and the label list come from
    the training part only, as with a separate validation file. `quiet=False`: progress on stderr while
    the tokenizer trains and the rows are tokenized.
    """
    d = cfg.data
    if not d.train:
        raise DataError("no training file: set `data.train` in the config (or `--set data.train=FILE`)")
    _file_identity(d.train)
    read_once = functools.lru_cache(maxsize=1)(lambda: _read_all(d.train, d, labelled=True))
    held_out = None
    if d.valid_fraction and not d.valid:
        split_seed = _split_seed(cfg)
        part = {"valid_fraction": d.valid_fraction, "split_seed": split_seed, "split": "stratified",
                **({"fold": d.valid_fold} if d.valid_fold else {}),
                **({"whole_texts": True} if d.valid_whole_texts else {})}
        split = functools.lru_cache(maxsize=1)(
            lambda: _split_records(*read_once(), d.valid_fraction, split_seed, d.valid_fold, d.valid_whole_texts))
        read_train, held_out = (lambda: split()[0]), (part, lambda: split()[1])
        part = {**part, "rows": "train"}
    else:
        read_train, part = read_once, None
    if tokenizer is None:
        tokenizer = get_tokenizer(cfg, read_train, part, quiet)
    train, _ = tokenize_file(d.train, d, tokenizer, labels=None, read=read_train, part=part, quiet=quiet)
    labels = split_labels(train)
    valid = None
    if d.valid:
        valid, _ = tokenize_file(d.valid, d, tokenizer, labels=labels, quiet=quiet)
    elif held_out:
        part, read_held = held_out
        valid, _ = tokenize_file(d.train, d, tokenizer, labels=labels, part={**part, "rows": "valid"},
                                 read=lambda: _known_labels(read_held(), labels, d), quiet=quiet)
    if len(train) == 0:
        raise DataError(f"{d.train}: the training set is empty")
    return PreparedData(tokenizer, labels, train, valid)


@dataclass
class TextSplit:
    """Rows as raw text (and second texts of pairs) with (N, C) 0/1 label targets."""

    texts: list[str]
    pairs: Optional[list[str]]
    targets: np.ndarray


def text_splits(cfg: Config, labels: list[str]) -> tuple[TextSplit, Optional[TextSplit]]:
    """The training and validation rows of a run as text, in the order prepare_data tokenizes them
    (for models that read text, not token ids: textcls.model.nblr)."""
    d = cfg.data
    records = _read_all(d.train, d, labelled=True)
    if d.valid:
        train, valid = records, _read_all(d.valid, d, labelled=True)
    elif d.valid_fraction:
        train, held = _split_records(*records, d.valid_fraction, _split_seed(cfg), d.valid_fold, d.valid_whole_texts)
        valid = _known_labels(held, labels, d)
    else:
        train, valid = records, None
    return _text_split(train[0], d, labels, d.train), (_text_split(valid[0], d, labels, d.valid or d.train)
                                                      if valid else None)


def fold_text_splits(cfg: Config, labels: list[str],
                     folds: Iterable[int]) -> tuple[TextSplit, list[tuple[TextSplit, TextSplit]]]:
    """All rows of a `data.valid_fraction` run's training file as text, and (training part, held-out part) of each
    of `folds` (`data.valid_fold`), from one read of the file."""
    d = cfg.data
    records = _read_all(d.train, d, labelled=True)
    parts = []
    for fold in folds:
        train, held = _split_records(*records, d.valid_fraction, _split_seed(cfg), fold, d.valid_whole_texts)
        parts.append((_text_split(train[0], d, labels, d.train),
                      _text_split(_known_labels(held, labels, d)[0], d, labels, d.train)))
    return _text_split(_known_labels(records, labels, d)[0], d, labels, d.train), parts


def labelled_rows(path: str, cfg: DataConfig, labels: list[str]) -> tuple[TextSplit, list[int]]:
    """A labelled file's rows as text with their (N, C) targets, in the order tokenize_file reads them, and the
    line numbers of the bad lines skipped (`data.on_bad_lines: skip`)."""
    records, skipped = _read_all(path, cfg, labelled=True)
    return _text_split(records, cfg, labels, path), skipped


def _text_split(records: list[Record], cfg: DataConfig, labels: list[str], path: str) -> TextSplit:
    targets = np.zeros((len(records), len(labels)), dtype=np.float32)
    columns = _label_columns(path, cfg, labels)(records)
    for i, ids in enumerate(columns.get("labels") or [[x] for x in columns["label"]]):
        targets[i, ids] = 1.0
    pairs = [r.text_pair or "" for r in records] if len(cfg.text_columns) == 2 else None
    return TextSplit([r.text for r in records], pairs, targets)


def _split_seed(cfg: Config) -> int:
    return cfg.train.seed if cfg.data.split_seed is None else cfg.data.split_seed


def _split_records(records: list[Record], skipped: list[int], fraction: float, seed: int,
                   fold: int = 0, whole_texts: bool = False) -> tuple[Records, Records]:
    """(training part, held-out part), each in file order; the held-out part is a seeded random sample,
    stratified: `fraction` of each label set's rows (rounded; at least one of a label set with two or more
    rows), so that rare classes are evaluated and still trained on.

    `fold` k holds out the k-th such sample of the same seeded order: folds 0 .. 1/fraction - 1 are
    disjoint (but for label sets too small to give each fold a row) and together cover the rows.

    `whole_texts` (`data.valid_whole_texts`): the sample is drawn from the rows whose text lies inside no other
    row's, and the rows whose text lies inside a held-out text (or equals one) leave the training part and
    are not held out either: no held-out text is seen in part in training (textcls/data/overlap.py)."""
    rng = np.random.default_rng(seed)
    texts = _containment(tuple(text_key(r.text, r.text_pair) for r in records)) if whole_texts else None
    candidates = np.asarray(texts.whole() if texts is not None else range(len(records)), dtype=np.int64)
    groups: dict[tuple, list[int]] = collections.defaultdict(list)
    for i in candidates:
        groups[tuple(sorted(records[i].labels))].append(i)
    held = np.zeros(len(records), dtype=bool)
    for key in sorted(groups):
        rows = np.asarray(groups[key])
        start, end = (int(round(k * fraction * len(rows))) for k in (fold, fold + 1))
        if start == end and len(rows) >= 2 and fraction > 0:
            start, end = fold % len(rows), fold % len(rows) + 1
        held[rng.permutation(rows)[start:end]] = True
    if not held.any():
        held[candidates[rng.integers(len(candidates))]] = True
    trained = ~held
    if texts is not None:
        trained[texts.within_any(np.flatnonzero(held))] = False
    if not trained.any():
        inside = " (with the rows inside the held-out texts)" if texts is not None else ""
        raise DataError(f"data.valid_fraction {fraction} holds out all {len(records)} rows{inside}, leaving none to "
                        "train on; lower it (e.g. 0.1) or add rows")
    return ([r for r, t in zip(records, trained) if t], skipped), ([r for r, h in zip(records, held) if h], [])


@functools.lru_cache(maxsize=2)
def _containment(keys: tuple[str, ...]) -> Containment:
    """One Containment per file's rows: a run splits the same rows for the tokenizer, each fold and NB-LR."""
    return Containment(keys)


def _known_labels(rows: Records, labels: list[str], cfg: DataConfig) -> Records:
    """Held-out rows whose labels all occur in the training part (the others are left out, with a warning)."""
    namer, known = LabelNamer(cfg), set(labels)
    records, skipped = rows
    kept = [r for r in records if all(namer(x) in known for x in r.labels)]
    if len(kept) < len(records):
        lines = ", ".join(str(r.line) for r in records if not all(namer(x) in known for x in r.labels))
        log.warning("%s: %d held-out row(s) (data.valid_fraction) have a label that the training part lacks and "
                    "are left out of validation: line(s) %s", cfg.train, len(records) - len(kept), lines)
    if not kept:
        raise DataError(f"{cfg.train}: no held-out row (data.valid_fraction) has a label that occurs in the training "
                        "part; raise data.valid_fraction or add rows")
    return kept, skipped
