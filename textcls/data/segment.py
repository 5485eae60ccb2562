"""Chinese word segmentation ahead of the tokenizer (`tokenizer.segment: jieba`).

Chinese is written without spaces, so a subword tokenizer either isolates every character
(`tokenizer.split_cjk: true`) or learns its pieces from whole clauses (`false`). A segmenter first
cuts the text into dictionary words: jieba's dictionary (349,046 words with frequencies, counted on
large corpora: knowledge from outside the training set) plus an HMM for words it lacks, through
rjieba, its Rust port (a wheel, no cache files, about 17 times faster than the Python package). The
cut text, words joined by spaces, then goes through the tokenizer's own normalizer and
pre-tokenizer, whose whitespace split keeps each word apart; with `split_cjk: false` the subword
model learns pieces within words only.

A tokenizer.json has no place for a Python-side step, so the segmenter is recorded in it as an inert
first pre-tokenizer rule: a split on a marker made of Unicode noncharacters, which text does not
hold. `with_segmenter` reads that rule back from a loaded tokenizer.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

from tokenizers import Tokenizer, pre_tokenizers

from textcls.config.optional import INSTALL_HINT, SEGMENTERS
from textcls.errors import CheckpointError

_MARK = "\ufdd0"  # a Unicode noncharacter: never in text that means anything
def cutter(name: str) -> Callable[[str], str]:
    """A function from a text to the same text with its words separated by spaces (ImportError when
    the segmenter's package is missing)."""
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}")
    import rjieba

    def cut(text: str) -> str:
        return " ".join(rjieba.cut(text))
    return cut


def marker_rule(name: str) -> pre_tokenizers.PreTokenizer:
    """The inert pre-tokenizer rule that records segmenter `name` in a tokenizer.json."""
    return pre_tokenizers.Split(f"{_MARK}segment={name}{_MARK}", behavior="isolated")


def recorded_segmenter(tok: Tokenizer) -> Optional[str]:
    """The segmenter a tokenizer.json records in its first pre-tokenizer rule, if any."""
    pre = json.loads(tok.to_str()).get("pre_tokenizer") or {}
    first = pre["pretokenizers"][0] if pre.get("type") == "Sequence" and pre["pretokenizers"] else pre
    pattern = first.get("pattern", {}).get("String", "") if first.get("type") == "Split" else ""
    prefix = f"{_MARK}segment="
    return pattern[len(prefix):-1] if pattern.startswith(prefix) and pattern.endswith(_MARK) else None


class SegmentingTokenizer:
    """A `tokenizers.Tokenizer` that cuts each text into words before encoding it. Everything other
    than `encode` and `encode_batch` (vocabulary, `to_str`, `token_to_id`...) is the wrapped tokenizer's."""

    def __init__(self, tokenizer: Tokenizer, segment: str):
        self.tokenizer, self.segment = tokenizer, segment
        self.cut = cutter(segment)

    def encode(self, text: str, *args, **kwargs):
        return self.tokenizer.encode(self.cut(text), *args, **kwargs)

    def encode_batch(self, texts: list[str], *args, **kwargs):
        return self.tokenizer.encode_batch([self.cut(t) for t in texts], *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)


def with_segmenter(tok: Tokenizer, source: str = "the tokenizer") -> Tokenizer | SegmentingTokenizer:
    """`tok` wrapped in the segmenter its tokenizer.json records, or `tok` itself if it records none."""
    name = recorded_segmenter(tok)
    if name is None:
        return tok
    if name not in SEGMENTERS:
        raise CheckpointError(f"{source} asks for the word segmenter {name!r}, which this textcls does not have "
                              f"(it has {', '.join(SEGMENTERS)}); upgrade textcls or retrain without "
                              "`tokenizer.segment`")
    try:
        return SegmentingTokenizer(tok, name)
    except ImportError:
        raise CheckpointError(f"{source} cuts Chinese text into words with {name} (`tokenizer.segment: {name}`), "
                              f"whose package is not installed here; {INSTALL_HINT}") from None
