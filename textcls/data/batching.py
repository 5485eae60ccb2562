"""Length-bucketed batches and padding to the longest sequence in each batch.

Lengths come from the tokenized Arrow `length` column, never from the text. The batch order of an
epoch is a pure function of (seed, epoch), which is what makes mid-epoch resume exact: a resumed
run rebuilds the same order and skips the batches already done without reading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import datasets
import numpy as np
import torch


def lengths_of(ds: datasets.Dataset) -> np.ndarray:
    return np.asarray(ds.data.column("length").to_numpy() if not ds._indices else ds["length"], dtype=np.int64)


def _split_into_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int,
                        batch_tokens: Optional[int]) -> list[np.ndarray]:
    """Cut an ordered index array into batches of `batch_size` or of at most `batch_tokens` padded tokens."""
    if not batch_tokens:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches, start, longest = [], 0, 0
    for pos, idx in enumerate(order):
        longest_next = max(longest, int(lengths[idx]))
        if pos > start and longest_next * (pos - start + 1) > batch_tokens:
            batches.append(order[start:pos])
            start, longest_next = pos, int(lengths[idx])
        longest = longest_next
    if start < len(order):
        batches.append(order[start:])
    return batches


@dataclass
class BucketSampler:
    """Shuffle, sort by length within buckets of `bucket_batches` batches, batch, shuffle batches.

    `shuffle=False` gives fully length-sorted batches (for evaluation and prediction).
    """

    lengths: np.ndarray
    batch_size: int
    batch_tokens: Optional[int] = None
    shuffle: bool = True
    seed: int = 0
    bucket_batches: int = 50

    def batches(self, epoch: int = 0) -> list[np.ndarray]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return _split_into_batches(order, self.lengths, self.batch_size, self.batch_tokens)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n)
        bucket = self.batch_size * self.bucket_batches
        if self.batch_tokens:
            bucket = max(bucket, 1)
        out: list[np.ndarray] = []
        for start in range(0, n, bucket):
            chunk = order[start:start + bucket]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            out.extend(_split_into_batches(chunk, self.lengths, self.batch_size, self.batch_tokens))
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


def pad_batch(ids: list[list[int]], types: Optional[list[list[int]]] = None, pad_id: int = 0,
              multiple_of: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Pad to the longest sequence (rounded up to `multiple_of`); returns ids, mask, type ids."""
    longest = max(len(x) for x in ids)
    if multiple_of:
        longest = -(-longest // multiple_of) * multiple_of
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.bool)
    type_ids = torch.zeros((len(ids), longest), dtype=torch.long) if types is not None else None
    for i, row in enumerate(ids):
        input_ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, :len(row)] = True
        if type_ids is not None:
            type_ids[i, :len(row)] = torch.as_tensor(types[i], dtype=torch.long)
    return input_ids, mask, type_ids


def collate(ds: datasets.Dataset, indices: np.ndarray, num_labels: int, pad_id: int = 0,
            multiple_of: Optional[int] = None) -> Batch:
    rows = ds[indices.tolist()]
    types = rows.get("token_type_ids")
    input_ids, mask, type_ids = pad_batch(rows["input_ids"], types, pad_id, multiple_of)
    labels = None
    if "label" in rows:
        labels = torch.as_tensor(rows["label"], dtype=torch.long)
    elif "labels" in rows:
        labels = torch.zeros((len(indices), num_labels), dtype=torch.float32)
        for i, ids in enumerate(rows["labels"]):
            labels[i, ids] = 1.0
    return Batch(input_ids, mask, type_ids, labels, indices)


def iter_batches(ds: datasets.Dataset, sampler: BucketSampler, num_labels: int, epoch: int = 0,
                 start: int = 0, pad_id: int = 0, multiple_of: Optional[int] = None) -> Iterator[Batch]:
    """Batches of an epoch from position `start` on; the skipped batches are never read."""
    for indices in sampler.batches(epoch)[start:]:
        yield collate(ds, indices, num_labels, pad_id, multiple_of)
