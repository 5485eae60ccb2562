"""Rows whose text lies inside another row's text.

A treebank's training file (SST-2's, say) holds every phrase of its sentences as a row of its own: most rows
lie word for word inside a longer row. Rows held out from such a file at random are phrases of sentences
that are still trained on, so a model scores on them by memory; a file of new sentences gets no such help.
`data.valid_whole_texts` holds out whole texts instead (data/pipeline.py), and the recipe turns it on by
`inside_share` (recipe/rules.py).

Texts are compared as lower-cased words (runs of non-space characters): "b c" lies inside "a b c d", but not
inside "a bc d". A text without spaces (CJK, say) lies only inside an equal text.
"""

from __future__ import annotations

import collections
from typing import Optional, Sequence

import numpy as np

SHARE_SAMPLE = 2_000  # rows checked to estimate inside_share


def text_key(text: str, pair: Optional[str] = None) -> str:
    """A row's text as compared here: lower-cased words joined by single spaces, with a space at each end (so
    that `in` matches whole words); a pair's second text after a separator that no word contains."""
    key = " ".join(text.lower().split())
    if pair is not None:
        key += " \0 " + " ".join(pair.lower().split())
    return f" {key} "


class Containment:
    """Which rows lie inside which, for rows given by their `text_key`s."""

    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)
        self.rows_of: dict[str, list[int]] = collections.defaultdict(list)  # key -> rows with that text
        self.with_word: dict[str, list[int]] = collections.defaultdict(list)  # word -> rows that have it
        for i, key in enumerate(self.keys):
            self.rows_of[key].append(i)
            for word in set(key.split()):
                self.with_word[word].append(i)
        self.longest = max((len(k.split()) for k in self.keys), default=0)  # words: no longer span needs looking up

    def inside(self, i: int) -> bool:
        """Whether row i's text lies inside another row whose text differs from it."""
        key = self.keys[i]
        words = set(key.split())
        if not words:
            return False
        rarest = min(words, key=lambda w: len(self.with_word[w]))
        return any(self.keys[j] != key and key in self.keys[j] for j in self.with_word[rarest])

    def whole(self) -> list[int]:
        """The rows whose text lies inside no other row's different text."""
        return [i for i in range(len(self.keys)) if not self.inside(i)]

    def within_any(self, rows) -> list[int]:
        """The rows, other than `rows`, whose text lies inside one of theirs or equals one."""
        given = {int(i) for i in rows}
        return sorted({j for i in given for j in self.within(i)} - given)

    def within(self, i: int) -> list[int]:
        """The other rows whose text lies inside row i's text or equals it."""
        words = self.keys[i].split()
        found = []
        for start in range(len(words)):
            for end in range(start + 1, min(len(words), start + self.longest) + 1):
                found.extend(j for j in self.rows_of.get(f" {' '.join(words[start:end])} ", ()) if j != i)
        return sorted(set(found))


def inside_share(keys: Sequence[str], seed: int = 0, sample: int = SHARE_SAMPLE) -> float:
    """The share of rows whose text lies inside another row's different text, estimated on a seeded sample of
    `sample` rows (all rows when there are fewer)."""
    if not keys:
        return 0.0
    texts = Containment(keys)
    rows = np.arange(len(keys)) if len(keys) <= sample else \
        np.random.default_rng(seed).choice(len(keys), sample, replace=False)
    return float(np.mean([texts.inside(int(i)) for i in rows]))
