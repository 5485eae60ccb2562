"""Augmented copies of training texts for distillation (Sun et al. 2019; TinyBERT's data augmentation, simplified
to words): each word of a copy is, with `probability`, masked (the teacher tokenizer's mask or unknown token),
replaced by a word of the training vocabulary, or deleted, one of the three alike.

Deterministic: copy c of the texts comes from a generator seeded with (seed, c), so the same texts, seed and
settings give the same copies in every run (a resumed run rebuilds them and finds its teacher cache)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def training_vocabulary(texts: Sequence[str]) -> list[str]:
    """The distinct whitespace-separated words of `texts`, sorted (the order must not depend on hashing)."""
    return sorted({word for text in texts for word in text.split()})


def augment_text(text: str, rng: np.random.Generator, probability: float, mask_token: str,
                 vocabulary: Sequence[str]) -> str:
    """One augmented copy of `text`; never empty (a text whose words were all deleted becomes the mask token)."""
    words = text.split()
    chosen = rng.random(len(words)) < probability
    actions = rng.integers(0, 3, size=len(words))  # 0 mask, 1 replace, 2 delete
    picks = rng.integers(0, max(1, len(vocabulary)), size=len(words))
    out = []
    for word, change, action, pick in zip(words, chosen, actions, picks):
        if not change:
            out.append(word)
        elif action == 0 or not vocabulary:
            out.append(mask_token)
        elif action == 1:
            out.append(vocabulary[pick])
    return " ".join(out) if out else mask_token


def augment_texts(texts: Sequence[str], copies: int, probability: float, seed: int, mask_token: str,
                  vocabulary: Sequence[str]) -> list[str]:
    """`copies` augmented copies of every text: copy 1 of all texts, then copy 2, ... (copies x len(texts))."""
    out: list[str] = []
    for copy in range(1, copies + 1):
        rng = np.random.default_rng([seed, copy])
        out.extend(augment_text(text, rng, probability, mask_token, vocabulary) for text in texts)
    return out
