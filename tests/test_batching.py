"""Length-bucketed batching: reproducible, complete, within the token budget, lengths from Arrow."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from textcls.config import TokenizerConfig
from textcls.data.batching import BucketSampler, TokenTable, collate, iter_batches, lengths_of, pad_batch
from textcls.data.tokenizer import _pre_tokenizer


def _lengths(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(3, 90, n)


def _as_lists(batches: list[np.ndarray]) -> list[list[int]]:
    return [b.tolist() for b in batches]


@pytest.mark.parametrize("batch_tokens", [None, 600])
def test_same_seed_same_batches_other_seed_or_epoch_other_order(batch_tokens):
    lengths = _lengths()
    a = BucketSampler(lengths, 16, batch_tokens, seed=3)
    b = BucketSampler(lengths.copy(), 16, batch_tokens, seed=3)
    assert _as_lists(a.batches(2)) == _as_lists(b.batches(2))
    assert _as_lists(a.batches(0)) != _as_lists(a.batches(1))
    assert _as_lists(a.batches(0)) != _as_lists(BucketSampler(lengths, 16, batch_tokens, seed=4).batches(0))


@pytest.mark.parametrize("batch_tokens,multiple_of", [(None, None), (500, None), (500, 8), (64, None)])
def test_every_example_exactly_once_per_epoch(batch_tokens, multiple_of):
    lengths = _lengths(437)
    sampler = BucketSampler(lengths, 16, batch_tokens, seed=1, multiple_of=multiple_of)
    for epoch in range(3):
        seen = np.concatenate(sampler.batches(epoch))
        assert np.array_equal(np.sort(seen), np.arange(len(lengths)))
    assert len(sampler) == len(sampler.batches(0))


@pytest.mark.parametrize("multiple_of", [None, 8])
def test_token_budget_holds_unless_one_example_exceeds_it(multiple_of):
    lengths = _lengths(600)
    lengths[[5, 77]] = 300  # longer than the budget on their own
    budget = 256
    sampler = BucketSampler(lengths, 32, budget, seed=0, multiple_of=multiple_of)
    for batch in sampler.batches(0):
        longest = lengths[batch].max()
        if multiple_of:
            longest = -(-longest // multiple_of) * multiple_of
        if len(batch) == 1:
            continue
        assert len(batch) * longest <= budget, (batch, lengths[batch])
    singles = [b for b in sampler.batches(0) if lengths[b].max() > budget]
    assert sorted(int(b[0]) for b in singles) == [5, 77] and all(len(b) == 1 for b in singles)


def test_buckets_keep_similar_lengths_together():
    lengths = _lengths(3200)
    sampler = BucketSampler(lengths, 32, seed=0)
    padded = sum(len(b) * lengths[b].max() for b in sampler.batches(0))
    random_batches = np.random.default_rng(0).permutation(len(lengths)).reshape(-1, 32)
    padded_random = sum(32 * lengths[b].max() for b in random_batches)
    assert padded < 0.75 * padded_random


def _dataset(n: int = 120, pairs: bool = False, multilabel: bool = False, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    ids = [[2, *rng.integers(5, 50, rng.integers(1, 30)).tolist(), 3] for _ in range(n)]
    columns = {"input_ids": ids, "length": [len(x) for x in ids]}
    if pairs:
        columns["token_type_ids"] = [[0] * (len(x) // 2) + [1] * (len(x) - len(x) // 2) for x in ids]
    if multilabel:
        columns["labels"] = [sorted(rng.choice(4, rng.integers(0, 3), replace=False).tolist()) for _ in ids]
    else:
        columns["label"] = rng.integers(0, 3, n).tolist()
    return datasets.Dataset.from_dict(columns)


def _reference(ds: datasets.Dataset, indices: np.ndarray, num_labels: int, multiple_of=None):
    """The slow, obvious path: read rows as Python lists and pad them one by one."""
    rows = ds[indices.tolist()]
    longest = max(len(x) for x in rows["input_ids"])
    if multiple_of:
        longest = -(-longest // multiple_of) * multiple_of
    ids = torch.zeros(len(indices), longest, dtype=torch.long)
    types = torch.zeros(len(indices), longest, dtype=torch.long)
    for i, row in enumerate(rows["input_ids"]):
        ids[i, :len(row)] = torch.tensor(row)
        if "token_type_ids" in rows:
            types[i, :len(row)] = torch.tensor(rows["token_type_ids"][i])
    if "label" in rows:
        labels = torch.tensor(rows["label"])
    else:
        labels = torch.zeros(len(indices), num_labels)
        for i, which in enumerate(rows["labels"]):
            labels[i, which] = 1.0
    return ids, types, labels


@pytest.mark.parametrize("pairs,multilabel", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("multiple_of", [None, 8])
def test_batches_match_the_rows_and_pad_to_multiple(pairs, multilabel, multiple_of):
    ds = _dataset(pairs=pairs, multilabel=multilabel)
    views = [ds, ds.select(np.random.default_rng(1).permutation(len(ds))[:70])]  # the second has an index map
    for view in views:
        sampler = BucketSampler(lengths_of(view), 16, seed=2)
        batches = list(iter_batches(view, sampler, 4, epoch=1, multiple_of=multiple_of))
        assert sum(len(b.indices) for b in batches) == len(view)
        for batch in batches:
            ids, types, labels = _reference(view, batch.indices, 4, multiple_of)
            assert torch.equal(batch.input_ids, ids) and batch.input_ids.dtype == torch.long
            assert torch.equal(batch.attention_mask, ids != 0)
            assert torch.equal(batch.labels, labels)
            assert (batch.token_type_ids is not None) == pairs
            if pairs:
                assert torch.equal(batch.token_type_ids, types)
            if multiple_of:
                assert batch.input_ids.shape[1] % multiple_of == 0
                assert batch.input_ids.shape[1] - multiple_of < int(batch.attention_mask.sum(1).max())
            else:
                assert batch.input_ids.shape[1] == int(batch.attention_mask.sum(1).max())


def test_resume_start_skips_batches_without_changing_the_rest():
    ds = _dataset(200)
    sampler = BucketSampler(lengths_of(ds), 16, seed=5)
    full = [b.indices.tolist() for b in iter_batches(ds, sampler, 3, epoch=2)]
    resumed = [b.indices.tolist() for b in iter_batches(ds, sampler, 3, epoch=2, start=4)]
    assert resumed == full[4:]


def test_lengths_come_from_the_arrow_length_column():
    ds = _dataset(50)
    marked = ds.remove_columns("length").add_column("length", list(range(100, 150)))  # not len(input_ids)
    assert lengths_of(marked).tolist() == list(range(100, 150))
    picked = marked.select([7, 3, 40])
    assert lengths_of(picked).tolist() == [107, 103, 140]
    assert lengths_of(picked).dtype == np.int64


def test_pad_batch_and_single_collate():
    ids, mask, types = pad_batch([[2, 7, 3], [2, 3]], [[0, 0, 1], [0, 0]], pad_id=0, multiple_of=8)
    assert ids.tolist() == [[2, 7, 3, 0, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0, 0, 0]]
    assert mask.sum(1).tolist() == [3, 2] and types[0, :3].tolist() == [0, 0, 1]
    ds = _dataset(10)
    batch = collate(ds, np.array([4, 1]), 3)
    assert batch.input_ids[0, :len(ds[4]["input_ids"])].tolist() == ds[4]["input_ids"]
    assert TokenTable(ds).batch(np.array([4, 1]), 3).labels.tolist() == [ds[4]["label"], ds[1]["label"]]


def test_pre_tokenizer_splits_words_not_letters():
    # Regression: a raw-string CJK class made the tokenizer isolate a, d, f and digits, which
    # doubled the lengths (and the compute) of English text.
    pieces = _pre_tokenizer(TokenizerConfig()).pre_tokenize_str("hide new secretions 2024 价格")
    assert [p for p, _ in pieces] == ["hide", "new", "secretions", "2024", "价", "格"]


def test_token_table_is_built_once_per_dataset():
    from textcls.data.batching import token_table

    ds = _dataset(30)
    assert token_table(ds) is token_table(ds)
    other = ds.select(range(10))
    assert token_table(other) is not token_table(ds)
    assert collate(other, np.array([2]), 3).input_ids[0, :len(ds[2]["input_ids"])].tolist() == ds[2]["input_ids"]
