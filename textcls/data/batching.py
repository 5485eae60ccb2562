"""Length-bucketed batches and padding to the longest sequence in each batch.

Lengths come from the tokenized Arrow `length` column, never from the text. The batch order of an
epoch is a pure function of (seed, epoch), which is what makes mid-epoch resume exact: a resumed
run rebuilds the same order and skips the batches already done without reading them.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np
import torch

if TYPE_CHECKING:
    import datasets


def _row_map(ds: datasets.Dataset) -> Optional[np.ndarray]:
    """Table rows behind a dataset with an indices mapping (e.g. after a split); None when rows are direct."""
    return None if ds._indices is None else ds._indices.column(0).to_numpy()


def lengths_of(ds: datasets.Dataset) -> np.ndarray:
    """The `length` column as int64, read from Arrow without touching the token ids or the text."""
    lengths = ds.data.column("length").to_numpy()
    rows = _row_map(ds)
    return np.asarray(lengths if rows is None else lengths[rows], dtype=np.int64)


def _split_into_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int,
                        batch_tokens: Optional[int]) -> list[np.ndarray]:
    """Cut an ordered index array into batches of `batch_size` or of at most `batch_tokens` padded tokens.

    With a token budget, a batch ends before the example that would push (rows x longest) over the
    budget; an example longer than the budget on its own gets a batch to itself.
    """
    if not batch_tokens:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches, start, longest = [], 0, 0
    for pos, length in enumerate(lengths[order].tolist()):
        longest_next = max(longest, length)
        if pos > start and longest_next * (pos - start + 1) > batch_tokens:
            batches.append(order[start:pos])
            start, longest_next = pos, length
        longest = longest_next
    if start < len(order):
        batches.append(order[start:])
    return batches


@dataclass
class BucketSampler:
    """Shuffle, sort by length within buckets of `bucket_batches` batches, batch, shuffle batches.

    `shuffle=False` gives fully length-sorted batches (for evaluation and prediction). With
    `multiple_of`, the token budget counts lengths rounded up the way the batch will be padded.
    """

    lengths: np.ndarray
    batch_size: int
    batch_tokens: Optional[int] = None
    shuffle: bool = True
    seed: int = 0
    bucket_batches: int = 50
    multiple_of: Optional[int] = None

    def batches(self, epoch: int = 0) -> list[np.ndarray]:
        n = len(self.lengths)
        padded = self.lengths if not self.multiple_of else -(-self.lengths // self.multiple_of) * self.multiple_of
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return _split_into_batches(order, padded, self.batch_size, self.batch_tokens)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n)
        bucket = self.batch_size * self.bucket_batches
        if self.batch_tokens:
            bucket = max(bucket, 1)
        out: list[np.ndarray] = []
        for start in range(0, n, bucket):
            chunk = order[start:start + bucket]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            out.extend(_split_into_batches(chunk, padded, self.batch_size, self.batch_tokens))
        perm = rng.permutation(len(out))
        return [out[i] for i in perm]

    def __len__(self) -> int:
        return len(self.batches(0))


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) bool, True on real tokens
    token_type_ids: Optional[torch.Tensor]  # (B, T) long, or None for single texts
    labels: Optional[torch.Tensor]  # (B,) long, (B, C) float multi-hot, or None
    indices: np.ndarray  # row indices in the dataset

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.token_type_ids),
                     move(self.labels), self.indices)

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def _pad_rows(flat: np.ndarray, starts: np.ndarray, lens: np.ndarray, pad_id: int,
              multiple_of: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows `flat[starts[i]:starts[i] + lens[i]]` padded to the longest (rounded up): (B, T) ids, (B, T) mask."""
    longest = int(lens.max())
    if multiple_of:
        longest = -(-longest // multiple_of) * multiple_of
    pos = np.arange(longest)
    mask = pos < lens[:, None]  # (B, T)
    gather = np.where(mask, starts[:, None] + pos, 0)
    ids = np.where(mask, flat[gather] if len(flat) else 0, pad_id)
    return ids, mask


def pad_batch(ids: list[list[int]], types: Optional[list[list[int]]] = None, pad_id: int = 0,
              multiple_of: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Pad to the longest sequence (rounded up to `multiple_of`); returns ids, mask, type ids."""
    lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum()))
    input_ids, mask = _pad_rows(flat, starts, lens, pad_id, multiple_of)
    type_ids = None
    if types is not None:
        flat_types = np.fromiter(itertools.chain.from_iterable(types), dtype=np.int64, count=int(lens.sum()))
        type_ids = torch.from_numpy(_pad_rows(flat_types, starts, lens, 0, multiple_of)[0])
    return torch.from_numpy(input_ids), torch.from_numpy(mask), type_ids


def _flat_list_column(ds: datasets.Dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of a list column; zero-copy views of a memory-mapped single-chunk column."""
    column = ds.data.column(name)
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return array.values.to_numpy(zero_copy_only=False), array.offsets.to_numpy()


class TokenTable:
    """Numpy views of a tokenized dataset, read once, so a batch is a few vectorized gathers.

    Reading `ds[indices]` per batch converts Arrow rows to Python lists and back; this instead
    keeps the flat id array and the row offsets of the Arrow list column and pads with numpy.
    """

    def __init__(self, ds: datasets.Dataset):
        names = ds.column_names
        self.rows = _row_map(ds)
        self.ids, self.offsets = _flat_list_column(ds, "input_ids")
        self.types = _flat_list_column(ds, "token_type_ids")[0] if "token_type_ids" in names else None
        self.label = ds.data.column("label").to_numpy() if "label" in names else None
        self.multi = _flat_list_column(ds, "labels") if "labels" in names and self.label is None else None

    def batch(self, indices: np.ndarray, num_labels: int, pad_id: int = 0,
              multiple_of: Optional[int] = None) -> Batch:
        rows = indices if self.rows is None else self.rows[indices]
        starts = self.offsets[rows]
        lens = self.offsets[rows + 1] - starts
        input_ids, mask = _pad_rows(self.ids, starts, lens, pad_id, multiple_of)
        type_ids = None
        if self.types is not None:
            type_ids = torch.from_numpy(_pad_rows(self.types, starts, lens, 0, multiple_of)[0].astype(np.int64))
        labels = None
        if self.label is not None:
            labels = torch.from_numpy(self.label[rows].astype(np.int64))
        elif self.multi is not None:
            values, offsets = self.multi
            which, present = _pad_rows(values, offsets[rows], offsets[rows + 1] - offsets[rows], 0, None)
            labels = torch.zeros((len(rows), num_labels), dtype=torch.float32)
            r, c = np.nonzero(present)
            labels[torch.from_numpy(r), torch.from_numpy(which[r, c].astype(np.int64))] = 1.0
        return Batch(torch.from_numpy(input_ids.astype(np.int64)), torch.from_numpy(mask), type_ids, labels,
                     np.asarray(indices))


_TABLES: dict[int, tuple[weakref.ref, TokenTable]] = {}


def token_table(ds: datasets.Dataset) -> TokenTable:
    """The dataset's TokenTable, built once per dataset object (datasets are immutable)."""
    hit = _TABLES.get(id(ds))
    if hit is not None and hit[0]() is ds:
        return hit[1]
    table = TokenTable(ds)
    key = id(ds)
    _TABLES[key] = (weakref.ref(ds, lambda _: _TABLES.pop(key, None)), table)
    return table


def collate(ds: datasets.Dataset, indices: np.ndarray, num_labels: int, pad_id: int = 0,
            multiple_of: Optional[int] = None) -> Batch:
    """One padded batch of dataset rows."""
    return token_table(ds).batch(np.asarray(indices), num_labels, pad_id, multiple_of)


def iter_batches(ds: datasets.Dataset, sampler: BucketSampler, num_labels: int, epoch: int = 0,
                 start: int = 0, pad_id: int = 0, multiple_of: Optional[int] = None) -> Iterator[Batch]:
    """Batches of an epoch from position `start` on; the skipped batches are never read."""
    table = token_table(ds)
    for indices in sampler.batches(epoch)[start:]:
        yield table.batch(indices, num_labels, pad_id, multiple_of)
