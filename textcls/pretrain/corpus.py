"""The pretraining corpus: read documents, get the tokenizer, pack blocks, hold out a validation slice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
from tokenizers import Tokenizer, models

from textcls.config import Config
from textcls.data.tokenizer import CLS, SEP, load_tokenizer, train_tokenizer
from textcls.errors import DataError
from textcls.pretrain.data import iter_documents, tokenize_documents
from textcls.pretrain.packing import Blocks, pack_documents, pack_sop

log = logging.getLogger("textcls")


@dataclass
class Corpus:
    tokenizer: Tokenizer
    train: Blocks
    valid: Blocks
    documents: int
    tokens: int


def block_size(cfg: Config) -> int:
    return cfg.pretrain.block_size or cfg.data.max_length


def build_corpus(cfg: Config, tokenizer: Optional[Tokenizer] = None) -> Corpus:
    """Blocks for training and held-out evaluation; trains a tokenizer unless one is given or configured."""
    docs = list(iter_documents(cfg))
    if not docs:
        raise DataError("the pretraining files hold no text; check `pretrain.files` and `data.text_columns`")
    if tokenizer is None and cfg.tokenizer.path:
        tokenizer = load_tokenizer(cfg.tokenizer.path)
    if tokenizer is None:
        tokenizer = train_tokenizer((s for doc in docs for s in doc), cfg.tokenizer)
    # A reused tokenizer.json may be of another type than the config says: ask its model.
    tok_type = "wordpiece" if isinstance(tokenizer.model, models.WordPiece) else "other"
    segments = tokenize_documents(docs, tokenizer, tok_type)
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    size = block_size(cfg)
    if cfg.pretrain.sop:
        blocks = pack_sop(segments, size, cls_id, sep_id, cfg.train.seed)
    else:
        blocks = pack_documents(segments, size, cls_id, sep_id)
    train, valid = split_blocks(blocks, cfg.pretrain.valid_fraction, cfg.train.seed)
    tokens = sum(len(x) for x in blocks.ids)
    log.info("pretraining corpus: %d documents, %d blocks (%d held out), %d tokens",
             len(docs), len(blocks), len(valid), tokens)
    return Corpus(tokenizer, train, valid, len(docs), tokens)


def split_blocks(blocks: Blocks, fraction: float, seed: int) -> tuple[Blocks, Blocks]:
    """A fixed random `fraction` of the blocks held out (at least one when there are two or more)."""
    n = len(blocks)
    n_valid = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    order = np.random.default_rng([seed, 3]).permutation(n)
    return blocks.subset(np.sort(order[n_valid:])), blocks.subset(np.sort(order[:n_valid]))
