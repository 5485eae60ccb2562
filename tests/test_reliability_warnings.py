"""Quieter surprises get a warning or a precise error: labels that differ only in case or whitespace, an empty
fastText label, a vocabulary size the tokenizer cannot keep to, an unclosed CSV quote (at the line it opens)."""

from __future__ import annotations

import logging

import pytest

from textcls.config import DataConfig, TokenizerConfig
from textcls.data.labels import build_labels
from textcls.data.readers import iter_records
from textcls.data.tokenizer import train_tokenizer
from textcls.errors import DataError


def test_labels_differing_only_in_case_or_whitespace_are_warned_about(caplog):
    cfg = DataConfig(train="t.tsv")
    with caplog.at_level(logging.WARNING, logger="textcls"):
        labels = build_labels([["pos"], ["Pos"], ["neg"], ["very good"], ["very  good"], ["other"]], cfg)
    assert labels == sorted(labels) and len(labels) == 6  # still separate classes: the data says so
    assert "'Pos' / 'pos'" in caplog.text and "'very  good' / 'very good'" in caplog.text
    assert "other" not in caplog.text.split("separate classes:")[1]


def test_distinct_labels_give_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="textcls"):
        build_labels([["pos"], ["neg"], ["neutral"]], DataConfig(train="t.tsv"))
    assert caplog.text == ""


def test_an_empty_fasttext_label_is_ignored_with_a_warning_naming_the_line(tmp_path, caplog):
    path = tmp_path / "d.txt"
    path.write_text("__label__a good\n__label__ __label__b bad\n__label__a fine\n__label__ __label__b meh\n")
    cfg = DataConfig(train=str(path), format="fasttext")
    with caplog.at_level(logging.WARNING, logger="textcls"):
        records = list(iter_records(str(path), cfg))
    assert [r.labels for r in records] == [["a"], ["b"], ["a"], ["b"]]
    assert "d.txt, line 2" in caplog.text and "2 lines had an empty" in caplog.text


def test_a_line_whose_only_label_is_empty_is_a_missing_label(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("__label__a good\n__label__ bad\n")
    with pytest.raises(DataError, match="line 2: the label is missing"):
        list(iter_records(str(path), DataConfig(train=str(path), format="fasttext")))


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_a_vocab_size_the_tokenizer_cannot_keep_to_is_warned_about(caplog, kind):
    texts = ["hello world abc xyz", "quick brown fox jumps"]
    with caplog.at_level(logging.WARNING, logger="textcls"):
        tok = train_tokenizer(texts, TokenizerConfig(type=kind, vocab_size=8, min_frequency=1))
    assert tok.get_vocab_size() > 8
    assert "`tokenizer.vocab_size` 8 is below" in caplog.text and f"{tok.get_vocab_size()} entries" in caplog.text


def test_a_vocab_size_that_is_kept_gives_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="textcls"):
        train_tokenizer(["hello world", "brown fox"], TokenizerConfig(type="wordpiece", vocab_size=200,
                                                                    min_frequency=1))
    assert "vocab_size" not in caplog.text


@pytest.mark.parametrize("line", [2, 4])
def test_an_unclosed_csv_quote_is_reported_at_the_line_it_opens(tmp_path, line):
    rows = ["good film,1", "bad,0", "ok,1", "fine,0", "meh,1"]
    rows[line - 2] = '"' + rows[line - 2]
    path = tmp_path / "q.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=rf"q.csv, line {line}: a quote .* is never closed"):
        list(iter_records(str(path), DataConfig(train=str(path), text_columns=["text"], label_column="label")))


def test_a_carriage_return_inside_a_tsv_field_is_skipped_or_named(tmp_path):
    path = tmp_path / "cr.tsv"
    path.write_bytes(b"sentence\tlabel\ngood film\t1\nbad\rthing\t0\nok\t1\nx\ry\rz\t1\nfine\t0\n")
    skip = DataConfig(train=str(path), text_columns=["sentence"], label_column="label", on_bad_lines="skip")
    bad: list[int] = []
    records = list(iter_records(str(path), skip, bad_lines=bad))
    assert [(r.line, r.text) for r in records] == [(2, "good film"), (4, "ok"), (6, "fine")]
    assert bad == [3, 5]
    strict = DataConfig(train=str(path), text_columns=["sentence"], label_column="label")
    with pytest.raises(DataError, match=r"cr.tsv, line 3: a carriage return"):
        list(iter_records(str(path), strict))
