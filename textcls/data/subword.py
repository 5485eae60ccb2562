"""A deterministic merge learner for the wordpiece and BPE vocabularies.

The `tokenizers` trainers break ties between equally frequent pairs in hash-map order, which is
seeded per process: on SST-2 one process in four or so learned a different 8,000-piece vocabulary
from the same file, and the vocabulary moves a trained model as much as a new seed does. This
learner does the same job (Sennrich et al. 2016's merges over word counts; for wordpiece the
non-initial symbols carry `##`, for BPE the last carries `</w>`) with one order for ties: the pair
whose (left, right) strings sort first. The learned vocabulary and merges are then handed to the
`tokenizers` models, which do the encoding.

Cost: counting words runs the normalizer over the texts in blocks and the pre-tokenizer over each
distinct space-separated chunk; each merge
revisits only the words that hold the merged pair (an index from pair to words, a max-heap of pair
counts refreshed lazily: a pair's count only falls until it is merged, so a stale entry is re-pushed
when it reaches the top).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable

from tokenizers import normalizers, pre_tokenizers

WORDPIECE_PREFIX = "##"
BPE_SUFFIX = "</w>"


@dataclass
class Merges:
    tokens: list[str]  # the alphabet (sorted) then each merged token in the order it was learned
    merges: list[tuple[str, str]]


def count_words(texts: Iterable[str], normalizer: normalizers.Normalizer, pre_tokenizer: pre_tokenizers.PreTokenizer,
                block: int = 2000) -> Counter[str]:
    """How often each pre-tokenized word occurs.

    The normalizer turns every run of whitespace into one space, and every pre-tokenizer step splits
    there, so the space-separated chunks of the normalized text are counted first (in blocks of
    texts joined by a space) and the pre-tokenizer then runs once per distinct chunk.
    """
    chunks: Counter[str] = Counter()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == block:
            chunks.update(normalizer.normalize_str(" ".join(batch)).split(" "))
            batch.clear()
    if batch:
        chunks.update(normalizer.normalize_str(" ".join(batch)).split(" "))
    chunks.pop("", None)
    counts: Counter[str] = Counter()
    for chunk, n in chunks.items():
        for word, _ in pre_tokenizer.pre_tokenize_str(chunk):
            counts[word] += n
    return counts


def _symbols(word: str, style: str) -> list[str]:
    if style == "wordpiece":
        return [word[0], *(WORDPIECE_PREFIX + ch for ch in word[1:])]
    return [*word[:-1], word[-1] + BPE_SUFFIX]


def _joined(left: str, right: str, style: str) -> str:
    return left + (right[len(WORDPIECE_PREFIX):] if style == "wordpiece" else right)


def learn_merges(word_counts: dict[str, int], budget: int, min_frequency: int, style: str) -> Merges:
    """The alphabet of `word_counts` plus up to `budget - len(alphabet)` merged tokens.

    `style` is "wordpiece" or "bpe". A pair is merged only while it occurs at least `min_frequency`
    times; among pairs with the same count the one whose strings sort first wins.
    """
    ordered = sorted(w for w in word_counts if w)
    freq = [word_counts[w] for w in ordered]
    alphabet = sorted({s for w in ordered for s in _symbols(w, style)})
    tokens = list(alphabet)
    index = {t: i for i, t in enumerate(tokens)}
    words = [[index[s] for s in _symbols(w, style)] for w in ordered]

    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, syms in enumerate(words):
        for pair in zip(syms, syms[1:]):
            counts[pair] += freq[wi]
            where[pair].add(wi)
    heap = [(-c, tokens[a], tokens[b], a, b) for (a, b), c in counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(tokens) < budget and heap:
        neg, left, right, a, b = heapq.heappop(heap)
        current = counts.get((a, b), 0)
        if current != -neg:  # stale: the count fell since this entry was pushed
            if current > 0:
                heapq.heappush(heap, (-current, left, right, a, b))
            continue
        if current < max(min_frequency, 1):
            break
        new = _joined(left, right, style)
        if new not in index:  # "a"+"##bc" and "ab"+"##c" both make "abc"
            index[new] = len(tokens)
            tokens.append(new)
        merged = index[new]
        merges.append((left, right))
        fresh: set[tuple[int, int]] = set()
        for wi in where.pop((a, b)):
            syms = words[wi]
            out, hits = _merge_word(syms, a, b, merged)
            if not hits:  # the pair left this word in an earlier merge
                continue
            # Only the pairs next to a merge change: old pairs at k-1, k, k+1 around each hit k, new
            # pairs on either side of each merged symbol.
            for k in {k + d for k in hits for d in (-1, 0, 1) if 0 <= k + d < len(syms) - 1}:
                counts[syms[k], syms[k + 1]] -= freq[wi]
            for j in {j + d for j in _positions(hits) for d in (-1, 0) if 0 <= j + d < len(out) - 1}:
                pair = (out[j], out[j + 1])
                counts[pair] += freq[wi]
                where[pair].add(wi)
                fresh.add(pair)
            words[wi] = out
        counts.pop((a, b), None)
        for pair in fresh:  # the heap orders by (count, strings), so the order of pushes does not matter
            if counts[pair] > 0:
                heapq.heappush(heap, (-counts[pair], tokens[pair[0]], tokens[pair[1]], *pair))
    return Merges(tokens=tokens, merges=merges)


def _merge_word(syms: list[int], a: int, b: int, merged: int) -> tuple[list[int], list[int]]:
    """`syms` with each non-overlapping (a, b) from the left replaced by `merged`, and where they were."""
    hits, k = [], 0
    last = len(syms) - 1
    while True:
        try:
            k = syms.index(a, k, last)
        except ValueError:
            break
        if syms[k + 1] == b:
            hits.append(k)
            k += 2
        else:
            k += 1
    if not hits:
        return syms, hits
    out, start = [], 0
    for k in hits:
        out += syms[start:k]
        out.append(merged)
        start = k + 2
    out += syms[start:]
    return out, hits


def _positions(hits: list[int]) -> list[int]:
    """Where the merged symbols sit in the new word: each earlier hit shortened the word by one."""
    return [k - n for n, k in enumerate(hits)]
