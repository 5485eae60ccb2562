"""Property-based fuzzing: arbitrary files through the readers and arbitrary YAML / mappings through the
config loader give a result or a TextclsError, never another exception.

The strategies and checks here are shared with bench/fuzz.py, which runs >= 10,000 examples per target.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textcls.config import (
    AdapterConfig,
    Config,
    DataConfig,
    EmbeddingsConfig,
    ModelConfig,
    OutputConfig,
    SharingConfig,
    TokenizerConfig,
    TrainConfig,
    config_from_dict,
    read_yaml,
)
from textcls.data.readers import FORMATS, iter_records
from textcls.errors import TextclsError

SUFFIX = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "fasttext": ".txt", "txt": ".txt"}

# --------------------------------------------------------------------------- reader inputs

_chars = st.sampled_from(list("ab xyz\t,;\"'\\\r\n{}[]:_0123") + ["é", "€", "中", "\x00", "\ufeff", "__label__"])
_field = st.lists(_chars, max_size=8).map("".join)
_delimited = st.tuples(st.lists(st.lists(_field, max_size=4), max_size=8), st.sampled_from(["\t", ",", ";"]),
                       st.sampled_from(["\n", "\r\n"])).map(lambda t: t[2].join(t[1].join(r) for r in t[0]))
_json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _field,
                           lambda ch: st.lists(ch, max_size=3) | st.dictionaries(
                               st.sampled_from(["text", "label", "sentence", "x"]) | _field, ch, max_size=3),
                           max_leaves=8)
_jsonl = st.lists(_json_value.map(json.dumps) | _field, max_size=6).map("\n".join)
_fasttext = st.lists(st.tuples(st.lists(st.sampled_from(["__label__a", "__label__", "__label__b c", ""]), max_size=3),
                               _field).map(lambda t: " ".join([*t[0], t[1]])), max_size=6).map("\n".join)
_text = _delimited | _jsonl | _fasttext | _field


def _encode(text: str, how: str) -> bytes:
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if how == "latin-1":
        return text.encode("latin-1", errors="replace")
    if how == "cut":
        return text.encode("utf-8")[:-1]
    return text.encode("utf-8")


FILE_BYTES = st.binary(max_size=200) | st.tuples(_text, st.sampled_from(["utf-8", "bom", "latin-1", "cut"])).map(
    lambda t: _encode(*t))

DATA_OPTIONS = st.fixed_dictionaries({}, optional={
    "format": st.sampled_from([None, *FORMATS]),
    "header": st.sampled_from([None, True, False]),
    "delimiter": st.sampled_from([None, ",", "\t", ";", "ab", ""]),
    "text_columns": st.sampled_from([["text"], ["sentence"], [0], [1], [-1], [-5], [7], ["text", "x"], [0, 1]]),
    "label_column": st.sampled_from(["label", "x", 0, 1, 2, -1, -9]),
    "task": st.sampled_from(["single", "multilabel"]),
    "label_delimiter": st.sampled_from([",", " ", ""]),
    "encoding": st.sampled_from(["utf-8", "latin-1", "utf-16", "utf-8-sig", "gbk", "rot13", "base64", "nope"]),
    "on_bad_lines": st.sampled_from(["error", "skip"]),
})

READER_CASES = st.tuples(FILE_BYTES, st.sampled_from(FORMATS), DATA_OPTIONS, st.booleans(), st.booleans())


def check_reader(case) -> None:
    """Read bytes as a file of a format: records or a TextclsError."""
    data, fmt, options, labelled, allow_empty = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{SUFFIX[fmt]}"
        path.write_bytes(data)
        try:
            cfg = config_from_dict({"data": options}).data
            records = list(iter_records(str(path), cfg, labelled=labelled, allow_empty=allow_empty))
        except TextclsError:
            return
    for rec in records:
        assert isinstance(rec.text, str) and rec.line >= 1
        assert all(isinstance(label, str) for label in rec.labels)
        if labelled:
            assert rec.labels


# --------------------------------------------------------------------------- config inputs

SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
FIELDS = sorted({f.name for cls in (Config, DataConfig, TokenizerConfig, ModelConfig, SharingConfig, AdapterConfig,
                                    EmbeddingsConfig, TrainConfig, OutputConfig) for f in dataclasses.fields(cls)})
_key = st.sampled_from(FIELDS) | st.text(max_size=6) | st.integers() | st.none() | st.booleans()
_scalar = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(["auto", "cls", "gelu", "x.tsv", "-", "~", "~nobody_here/x", "5e-4", "nan", "1e999"]))
_value = st.recursive(_scalar, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(_key, ch, max_size=4),
                      max_leaves=16)
_section = st.dictionaries(st.sampled_from(FIELDS), _value, max_size=6) | _value
CONFIG_DICTS = _value | st.dictionaries(st.sampled_from(sorted(SECTIONS)) | _key, _section, max_size=6)
_dotted = st.tuples(st.sampled_from(sorted(SECTIONS)), st.sampled_from(FIELDS)).map(".".join)
OVERRIDES = st.lists(st.tuples(_dotted | st.text(max_size=6), st.text(max_size=10)).map("=".join)
                     | st.text(max_size=10), max_size=3)
CONFIG_CASES = st.tuples(CONFIG_DICTS, OVERRIDES)


def check_config_dict(case) -> None:
    raw, overrides = case
    try:
        cfg = config_from_dict(raw, overrides=tuple(overrides))
    except TextclsError:
        return
    assert isinstance(cfg, Config)


_yaml_tokens = st.sampled_from(
    ["data:", "model:", "train:", "tune:", "\n", "  ", "- ", "{", "}", "[", "]", ", ", ": ", "&a ", "*a", "!!str ",
     "!!python/object/apply:os.system ", "'", '"', "#", "2024-02-30", "1e5", ".nan", "~", "? ", "|", ">", "---\n",
     "...\n", "%YAML 1.1\n", "hidden_size", "lr", "\t", "\x00", "\ufeff", "9" * 5000, "[" * 200, "<<: *a"])
YAML_BYTES = (st.lists(_yaml_tokens | st.sampled_from(FIELDS) | st.text(max_size=4), max_size=30)
              .map(lambda parts: "".join(parts).encode("utf-8", errors="replace")) | st.binary(max_size=120))


def check_yaml(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(data)
        try:
            config_from_dict(read_yaml(path), source=str(path))
        except TextclsError:
            return


TARGETS = {"readers": (READER_CASES, check_reader), "config_dict": (CONFIG_CASES, check_config_dict),
           "yaml": (YAML_BYTES, check_yaml)}

FAST = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@FAST
@given(READER_CASES)
def test_readers_give_records_or_a_textcls_error(case):
    check_reader(case)


@FAST
@given(CONFIG_CASES)
def test_config_from_dict_gives_a_config_or_a_textcls_error(case):
    check_config_dict(case)


@FAST
@given(YAML_BYTES)
def test_yaml_files_give_a_config_or_a_textcls_error(data):
    check_yaml(data)
