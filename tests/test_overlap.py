"""Rows inside other rows (textcls/data/overlap.py), and the held-out split by whole texts that a treebank's
training file gets (`data.valid_whole_texts`)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import sst2_slice, tiny_config, write_tsv
from test_recipe import CPU2, choices, fake_step
from textcls.config import config_from_dict
from textcls.data.overlap import Containment, inside_share, text_key
from textcls.data.pipeline import _split_records, fold_text_splits, prepare_data, text_splits
from textcls.data.readers import Record
from textcls.errors import ConfigError
from textcls.recipe.rules import auto_recipe
from textcls.recipe.stats import data_stats


def treebank(sentences: int = 300, phrases: int = 5, seed: int = 0) -> list[tuple[str, str]]:
    """Real sentences (the SST-2 dev slice), each followed by `phrases` random word spans of it with its label,
    as a treebank's training file lists a sentence's phrases."""
    rng = np.random.default_rng(seed)
    rows = []
    for text, label in sst2_slice(sentences, "dev"):
        words = text.split()
        rows.append((text, label))
        for _ in range(phrases):
            size = int(rng.integers(1, max(2, len(words) // 2)))
            start = int(rng.integers(0, len(words) - size + 1))
            rows.append((" ".join(words[start:start + size]), label))
    return rows


def as_records(rows) -> list[Record]:
    return [Record(i + 2, text, None, [label]) for i, (text, label) in enumerate(rows)]


def keys(records) -> list[str]:
    return [text_key(r.text, r.text_pair) for r in records]


def test_a_text_lies_inside_another_by_whole_words_whatever_the_case_and_spacing():
    texts = Containment([text_key(t) for t in ["a b c d", "B  c", "bc", "x", "b c", "a b c d e", "好 的", "好"]])
    assert [texts.inside(i) for i in range(8)] == [True, True, False, False, True, False, False, True]
    assert texts.within(5) == [0, 1, 4]  # "a b c d", both spellings of "b c"; not "bc"
    assert texts.within(1) == [4]  # an equal text, not the row itself
    assert texts.within(3) == [] and not texts.inside(3)


def test_a_pair_lies_inside_a_pair_not_inside_one_text():
    texts = Containment([text_key("a b", "c d"), text_key("a b c d"), text_key("b", "c")])
    assert [texts.inside(i) for i in range(3)] == [False, False, True]
    assert texts.within(0) == [2] and texts.within(1) == []


def test_the_inside_share_of_a_treebank_and_of_distinct_sentences():
    rows = treebank(100, phrases=5)
    share = inside_share([text_key(t) for t, _ in rows])
    exact = np.mean([Containment([text_key(t) for t, _ in rows]).inside(i) for i in range(len(rows))])
    assert share == pytest.approx(exact) and share > 0.75  # five phrases per sentence, some are whole sentences
    assert inside_share([text_key(t) for t, _ in sst2_slice(300, "dev")]) < 0.05
    sampled = inside_share([text_key(t) for t, _ in rows], sample=200)
    assert abs(sampled - exact) < 0.1


@pytest.mark.parametrize("fold", [0, 1])
def test_whole_texts_are_held_out_and_their_phrases_leave_the_training_part(fold):
    records = as_records(treebank())
    (train, _), (held, _) = _split_records(records, [], 0.1, seed=3, fold=fold, whole_texts=True)
    texts = Containment(keys(records))
    whole = [i for i in range(len(records)) if not texts.inside(i)]
    held_keys, train_keys = keys(held), keys(train)
    assert not any(texts.inside(r.line - 2) for r in held)  # only whole texts are held out
    assert len(held) == pytest.approx(0.1 * len(whole), abs=2)
    assert not any(t in h for t in train_keys for h in held_keys)  # no training row lies inside a held-out text
    # only the held-out rows and the rows inside them leave the training part
    inside_held = {j for r in held for j in texts.within(r.line - 2)}
    assert {r.line - 2 for r in train} == set(range(len(records))) - {r.line - 2 for r in held} - inside_held
    labels = [r.labels[0] for r in held]
    assert 0.3 < labels.count("1") / len(labels) < 0.7  # stratified by label


def test_folds_of_whole_texts_are_disjoint_and_a_plain_split_leaks_phrases():
    records = as_records(treebank())
    folds = [_split_records(records, [], 0.1, seed=3, fold=k, whole_texts=True)[1][0] for k in (0, 1)]
    assert not {r.line for r in folds[0]} & {r.line for r in folds[1]}
    (train, _), (held, _) = _split_records(records, [], 0.1, seed=3)
    train_keys = keys(train)
    leaked = sum(any(h in t for t in train_keys) for h in keys(held))
    assert leaked > len(held) / 2  # why the option exists: most rows held out at random are phrases still trained on


def test_the_split_by_whole_texts_lines_up_for_the_tokenizer_the_ngram_model_and_the_folds(tmp_path):
    train_file = write_tsv(tmp_path / "train.tsv", treebank(120, phrases=4))
    cfg = tiny_config(train_file, None, tmp_path / "out", data={"valid_fraction": 0.2, "valid_whole_texts": True,
                                                                "cache_dir": str(tmp_path / "cache")})
    data = prepare_data(cfg)
    train_rows, valid_rows = text_splits(cfg, data.labels)
    assert len(train_rows.texts) == len(data.train) and len(valid_rows.texts) == len(data.valid) == 24
    assert list(valid_rows.targets.argmax(1)) == list(data.valid["label"])
    everything, parts = fold_text_splits(cfg, data.labels, [0])
    assert parts[0][1].texts == valid_rows.texts and parts[0][0].texts == train_rows.texts
    plain = prepare_data(tiny_config(train_file, None, tmp_path / "plain",
                                     data={"valid_fraction": 0.2, "cache_dir": str(tmp_path / "cache")}))
    assert len(plain.valid) == 120  # a fifth of all 600 rows: the cached split of the other option is not reused


def test_whole_texts_need_a_held_out_fraction():
    with pytest.raises(ConfigError, match="valid_whole_texts"):
        config_from_dict({"data": {"train": "t.tsv", "valid_whole_texts": True}})


def test_the_recipe_holds_out_whole_texts_when_most_rows_lie_inside_another():
    bank = data_stats(as_records(treebank()))
    chosen = choices(auto_recipe(bank, 600, CPU2, fake_step))
    assert chosen["data.valid_whole_texts"] is True
    whole = round(bank.rows * (1 - bank.inside_share))
    assert chosen["data.valid_fraction"] == pytest.approx(round(0.1 * whole) / whole, abs=2e-3)
    sentences = data_stats(as_records(sst2_slice(300, "dev")))
    plain = choices(auto_recipe(sentences, 600, CPU2, fake_step))
    assert "data.valid_whole_texts" not in plain and plain["data.valid_fraction"] == 0.1
