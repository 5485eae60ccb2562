"""Whole words from sub-tokens: which tokens make up each word, and a score per word.

A word is a unit of the text as a reader sees it: a run of letters and digits, one other symbol, or one
CJK character (the units of the NB-LR model, textcls/model/nblr.py). Tokens are mapped to words through
their character offsets, so every tokenizer (wordpiece, BPE, unigram, word, char, an imported one)
gives the same words for the same text; a token that spans several words (a BPE piece of two CJK
characters) counts for each. Without offsets the words are read from the tokens' markers: wordpiece's
`##` continues a word, BPE's `Ġ` and unigram's `▁` start one, `</w>` ends one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

# Python's spelling of textcls.data.tokenizer.CJK: ideographs (+ extensions A-B), compatibility
# ideographs, kana, hangul syllables.
CJK = ("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
       "\U00020000-\U0002a6df\U0002f800-\U0002fa1f]")
_WORD = re.compile(CJK + r"|(?:(?!" + CJK + r")\w)+|[^\w\s]")
CONTINUES = "##"  # wordpiece: this token continues the word before it
STARTS = ("Ġ", "▁")  # byte-level BPE and unigram (sentencepiece): this token starts a word
ENDS = "</w>"  # textcls BPE: this token ends a word
_SPECIAL = re.compile(r"^(\[[A-Z]+\]|<[a-z]+>)$")
UNKNOWN = "\ufffd"  # how a special token in the text ([UNK]) is shown


@dataclass
class Word:
    text: str
    start: int  # character span in the text the tokens were read from
    end: int
    tokens: list[int] = field(default_factory=list)  # indices of the tokens that make it up


def words_from_offsets(text: str, offsets: Sequence[tuple[int, int]]) -> list[Word]:
    """The words of `text` that tokens cover, each with the tokens whose (start, end) spans overlap it."""
    words = [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
    starts = np.array([w.start for w in words], dtype=np.int64)
    for i, (a, b) in enumerate(offsets):
        if b <= a:
            continue
        first = max(int(np.searchsorted(starts, a, side="right")) - 1, 0)  # the word holding or before a
        for w in words[first:]:
            if w.start >= b:
                break
            if w.end > a:
                w.tokens.append(i)
    return [w for w in words if w.tokens]


def words_from_tokens(tokens: Sequence[str]) -> tuple[str, list[Word]]:
    """(a text rebuilt from the tokens, its words) from the tokens' markers alone.

    `##x` continues the word; `Ġx`/`▁x` starts one and then unmarked tokens continue it; `x</w>` ends
    it; with no markers at all each token is a word. CJK characters and symbols are then split off as
    in `words_from_offsets`."""
    start_marked = any(t.startswith(STARTS) for t in tokens)
    end_marked = any(t.endswith(ENDS) for t in tokens)
    offsets: list[tuple[int, int]] = []
    text, ended = "", True
    for token in tokens:
        piece = token
        if _SPECIAL.match(piece):  # [UNK], <unk>: one word of its own, shown as one symbol
            piece, new, token = UNKNOWN, True, UNKNOWN + ENDS
        elif piece.startswith(CONTINUES) and len(piece) > len(CONTINUES):
            piece, new = piece[len(CONTINUES):], False
        elif piece.startswith(STARTS):
            piece, new = piece[1:], True
        elif start_marked or end_marked:
            new = ended or not text  # a BPE word goes on until its </w>; a marked word until the next mark
        else:
            new = True  # a wordpiece word's first piece, or a word-level token
        ended = token.endswith(ENDS)
        if piece.endswith(ENDS):
            piece = piece[:-len(ENDS)]
        if new and text:
            text += " "
        offsets.append((len(text), len(text) + len(piece)))
        text += piece
    return text, words_from_offsets(text, offsets)


def word_scores(token_scores: np.ndarray, words: Sequence[Word]) -> np.ndarray:
    """(W,) the mean of each word's token scores, from (N,) scores of the tokens."""
    token_scores = np.asarray(token_scores, dtype=np.float64)
    return np.array([token_scores[w.tokens].mean() for w in words], dtype=np.float64)


def encoding_words(text: str, tokens: Sequence[str],
                   offsets: Optional[Sequence[tuple[int, int]]]) -> tuple[str, list[Word]]:
    """(the text the words are spans of, the words): from the offsets when the tokenizer gives them,
    else from the tokens' markers."""
    if offsets is not None and len(offsets) == len(tokens) and any(b > a for a, b in offsets):
        return text, words_from_offsets(text, offsets)
    return words_from_tokens(tokens)
