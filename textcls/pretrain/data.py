"""Unlabelled text for pretraining: documents from plain text or labelled files, tokenized with word starts.

A document is one line of a plain-text file, or one row of a CSV/TSV/JSONL/fastText file (its
`data.text_columns`; a text pair counts as two sentences of one document). Labels are never read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tokenizers import Tokenizer

from textcls.config import Config
from textcls.data.readers import iter_records
from textcls.errors import DataError

# Split after sentence-final punctuation, keeping it with its sentence: Latin marks only before
# whitespace (so "3.5" and "e.g.x" stay whole), CJK marks anywhere.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；…])\s*")


def pretrain_files(cfg: Config) -> list[str]:
    files = list(cfg.pretrain.files) or ([cfg.data.train] if cfg.data.train else [])
    if not files:
        raise DataError("no pretraining text: set `pretrain.files` (a list of files) or `data.train` in the config")
    for path in files:  # checked up front: format detection opens .txt files before the reader would say it
        if not Path(path).is_file():
            what = "is a directory" if Path(path).is_dir() else "does not exist"
            raise DataError(f"pretraining file {path} {what}; check `pretrain.files` in the config")
    return files


def iter_documents(cfg: Config) -> Iterator[list[str]]:
    """Each document as its list of sentences (one sentence when it has no sentence-final punctuation)."""
    for path in pretrain_files(cfg):
        for rec in iter_records(path, cfg.data, labelled=False, allow_empty=True):
            sentences = split_sentences(rec.text)
            if rec.text_pair:
                sentences += split_sentences(rec.text_pair)
            if sentences:
                yield sentences


def split_sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


@dataclass
class TokenizedSegment:
    ids: np.ndarray  # (n,) int64 token ids, no special tokens
    starts: np.ndarray  # (n,) bool, True where a token begins a word


def word_starts(tokens: list[str], word_ids: list, tokenizer_type: str) -> np.ndarray:
    """True on the first piece of each word.

    wordpiece: a piece starting with `##` continues the word before it (every CJK character is its
    own pre-token, so it is always a word). Other types: a new `word_ids()` entry starts a word.
    """
    if tokenizer_type == "wordpiece":
        return np.array([not t.startswith("##") for t in tokens], dtype=bool)
    starts = np.ones(len(word_ids), dtype=bool)
    for i in range(1, len(word_ids)):
        starts[i] = word_ids[i] is None or word_ids[i] != word_ids[i - 1]
    return starts


def tokenize_documents(docs: list[list[str]], tok: Tokenizer, tokenizer_type: str,
                       batch: int = 2000) -> list[list[TokenizedSegment]]:
    """Tokenize every sentence of every document (no special tokens); empty sentences are dropped."""
    flat = [s for doc in docs for s in doc]
    encoded: list[TokenizedSegment] = []
    for i in range(0, len(flat), batch):
        for enc in tok.encode_batch(flat[i:i + batch], add_special_tokens=False):
            encoded.append(TokenizedSegment(np.asarray(enc.ids, dtype=np.int64),
                                            word_starts(enc.tokens, enc.word_ids, tokenizer_type)))
    out, pos = [], 0
    for doc in docs:
        segs = [s for s in encoded[pos:pos + len(doc)] if len(s.ids)]
        pos += len(doc)
        if segs:
            out.append(segs)
    return out
