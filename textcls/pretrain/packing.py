"""Sequence packing: documents -> blocks of `block_size` tokens, so no compute goes to padding.

MLM only: consecutive documents are joined with `[SEP]` into one token stream that is cut into
`[CLS] ... [SEP]` blocks of exactly `block_size` tokens; only the last block may be shorter.
With sentence-order prediction, a document's sentences fill a block of at most `block_size` tokens
and are cut at a sentence boundary into `[CLS] A [SEP] B [SEP]`, B and A swapped half of the time
(ALBERT's SOP); documents with a single sentence are packed as MLM-only blocks (SOP label -100).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from textcls.data.batching import pad_batch
from textcls.pretrain.data import TokenizedSegment

IGNORE = -100  # label of positions/examples that carry no loss


@dataclass
class Blocks:
    ids: list[np.ndarray]  # each (T,) int64 with [CLS]/[SEP]
    types: list[np.ndarray]  # each (T,) segment ids
    starts: list[np.ndarray]  # each (T,) bool: the token begins a word
    sop: np.ndarray  # (N,) 0 = in order, 1 = swapped, -100 = no SOP example

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> "Blocks":
        return Blocks([self.ids[i] for i in index], [self.types[i] for i in index],
                      [self.starts[i] for i in index], self.sop[index])

    @staticmethod
    def concat(parts: list["Blocks"]) -> "Blocks":
        return Blocks([x for p in parts for x in p.ids], [x for p in parts for x in p.types],
                      [x for p in parts for x in p.starts], np.concatenate([p.sop for p in parts]))


def _wrap(body: np.ndarray, body_starts: np.ndarray, cls_id: int, sep_id: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([[cls_id], body, [sep_id]]).astype(np.int64)
    starts = np.concatenate([[True], body_starts, [True]]).astype(bool)
    starts[1] = True  # a block may begin inside a word cut by the previous block
    return ids, starts


def pack_documents(docs: list[list[TokenizedSegment]], block_size: int, cls_id: int, sep_id: int) -> Blocks:
    """Join documents with [SEP] and cut the stream into full `[CLS] ... [SEP]` blocks."""
    parts, part_starts = [], []
    for doc in docs:
        for seg in doc:
            parts.append(seg.ids)
            part_starts.append(seg.starts)
        parts.append(np.array([sep_id], dtype=np.int64))
        part_starts.append(np.array([True]))
    if not parts:
        return Blocks([], [], [], np.zeros(0, dtype=np.int64))
    stream = np.concatenate(parts[:-1])  # no separator after the last document: the block ends with [SEP]
    starts = np.concatenate(part_starts[:-1])
    body = block_size - 2
    ids_out, starts_out = [], []
    for i in range(0, len(stream), body):
        ids, st = _wrap(stream[i:i + body], starts[i:i + body], cls_id, sep_id)
        ids_out.append(ids)
        starts_out.append(st)
    types = [np.zeros(len(x), dtype=np.int64) for x in ids_out]
    return Blocks(ids_out, types, starts_out, np.full(len(ids_out), IGNORE, dtype=np.int64))


def _cut_long(doc: list[TokenizedSegment], budget: int) -> list[TokenizedSegment]:
    out = []
    for seg in doc:
        for i in range(0, len(seg.ids), budget):
            out.append(TokenizedSegment(seg.ids[i:i + budget], seg.starts[i:i + budget]))
    return out


def pack_sop(docs: list[list[TokenizedSegment]], block_size: int, cls_id: int, sep_id: int,
             seed: int) -> Blocks:
    """SOP blocks `[CLS] A [SEP] B [SEP]` (type ids 0 / 1) from multi-sentence documents, + packed singles."""
    rng = np.random.default_rng([seed, 7])  # the split points and swaps are fixed by the seed
    budget = block_size - 3
    ids_out, types_out, starts_out, labels = [], [], [], []
    singles: list[list[TokenizedSegment]] = []

    def emit(chunk: list[TokenizedSegment]) -> None:
        if len(chunk) < 2:
            singles.append(chunk)
            return
        k = int(rng.integers(1, len(chunk)))
        a = [np.concatenate([s.ids for s in chunk[:k]]), np.concatenate([s.starts for s in chunk[:k]])]
        b = [np.concatenate([s.ids for s in chunk[k:]]), np.concatenate([s.starts for s in chunk[k:]])]
        swapped = bool(rng.random() < 0.5)
        if swapped:
            a, b = b, a
        ids = np.concatenate([[cls_id], a[0], [sep_id], b[0], [sep_id]]).astype(np.int64)
        starts = np.concatenate([[True], a[1], [True], b[1], [True]]).astype(bool)
        ids_out.append(ids)
        starts_out.append(starts)
        types_out.append(np.concatenate([np.zeros(len(a[0]) + 2), np.ones(len(b[0]) + 1)]).astype(np.int64))
        labels.append(int(swapped))

    for doc in docs:
        chunk, n = [], 0
        for seg in _cut_long(doc, budget):
            if chunk and n + len(seg.ids) > budget:
                emit(chunk)
                chunk, n = [], 0
            chunk.append(seg)
            n += len(seg.ids)
        if chunk:
            emit(chunk)
    sop = Blocks(ids_out, types_out, starts_out, np.asarray(labels, dtype=np.int64))
    return Blocks.concat([sop, pack_documents(singles, block_size, cls_id, sep_id)])


@dataclass
class BlockBatch:
    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) bool
    token_type_ids: torch.Tensor  # (B, T) long
    starts: np.ndarray  # (B, T) bool word starts (False on padding)
    sop_labels: torch.Tensor  # (B,) long, -100 where there is no SOP example


def collate_blocks(blocks: Blocks, index: np.ndarray, pad_id: int) -> BlockBatch:
    ids = [blocks.ids[i].tolist() for i in index]
    types = [blocks.types[i].tolist() for i in index]
    input_ids, mask, type_ids = pad_batch(ids, types, pad_id)
    starts = np.zeros(tuple(input_ids.shape), dtype=bool)
    for row, i in enumerate(index):
        starts[row, :len(blocks.starts[i])] = blocks.starts[i]
    return BlockBatch(input_ids, mask, type_ids, starts, torch.as_tensor(blocks.sop[index], dtype=torch.long))
