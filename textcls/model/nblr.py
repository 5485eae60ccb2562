"""A bag-of-n-grams classifier beside the transformer (`nblr:`), mixed into its probabilities.

NB-weighted logistic regression (Wang & Manning 2012, "NBSVM"): binary n-gram features scaled by
their naive-Bayes log-count ratios, then a logistic regression with L2 (full batch, L-BFGS). With
`normalize`, each text's binary vector is first scaled to unit length (divided by the square root of
its number of known n-grams), so a two-word phrase and a long review weigh alike. It trains
in seconds, reads every token of a long document, and errs where a small transformer trained from
scratch does not, so a share of its probabilities lifts an ensemble.

Text -> units (NFKC, optionally lowercased; each CJK character, each run of letters/digits, each other
symbol) -> n-grams of 1..max_order units, and with `chars` (lo, hi) the character n-grams of lo..hi characters
of each word of letters, marked at its ends (`<word>`, as fastText's subword units) -> the vocabulary's
indices. The character n-grams let a word seen once or never share weight with the words it is spelled
like ("criticized" with "criticism"). The run layer saves it
(textcls/run/nblr.py): weight (F, C) with the ratios folded in, bias (C), options and vocabulary.
"""

from __future__ import annotations

import collections
import logging
import re
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from textcls.data.tokenizer import CJK
from textcls.errors import ConfigError
from textcls.progress import WorkProgress

log = logging.getLogger("textcls")

# Python's `re` spells code points above U+FFFF \U000XXXXX; the tokenizer's pattern is Oniguruma's.
_CJK = CJK.replace(r"\x{20000}-\x{2a6df}", "\U00020000-\U0002a6df").replace(r"\x{2f800}-\x{2fa1f}",
                                                                          "\U0002f800-\U0002fa1f")
_UNIT = re.compile(_CJK + r"|\w+|[^\w\s]")
_PAIR = "\x1f"  # marks n-grams of the second text of a pair: the two texts have their own features
_CHAR = "\x1e"  # marks character n-grams: "<a" of a word is not the unit "<a"
_LETTERS = re.compile(r"[^\W\d_]{2,}")  # a word of two letters or more gets character n-grams (a CJK character
# is a unit of one character, so it gets none)
_MAX_PARAMETERS = 50_000_000  # classes x features; beyond it the vocabulary is cut to fit
_PRUNE_AT = 20_000_000  # distinct n-grams counted before those seen once are dropped (see build_vocab)


def units(text: str, lowercase: bool = True) -> list[str]:
    """The words n-grams are made of: each CJK character, each run of letters/digits, each other symbol."""
    text = unicodedata.normalize("NFKC", text)
    return _UNIT.findall(text.lower() if lowercase else text)


def char_ngrams(word: str, lo: int, hi: int) -> list[str]:
    """The character n-grams of lo..hi characters of `<word>`, without the whole `<word>` (the unit itself is
    already a feature)."""
    w = f"<{word}>"
    return [w[i:i + n] for n in range(lo, hi + 1) for i in range(len(w) - n + 1) if n < len(w)]


def ngrams(text: str, max_order: int, lowercase: bool = True, prefix: str = "",
           chars: Optional[tuple[int, int]] = None) -> set[str]:
    """The distinct n-grams (orders 1..max_order, units joined by spaces) of one text; with `chars` (lo, hi)
    also the character n-grams of each word of two letters or more."""
    u = units(text, lowercase)
    out = set()
    for n in range(1, max_order + 1):
        out.update(prefix + " ".join(u[i:i + n]) for i in range(len(u) - n + 1))
    if chars:
        mark = prefix + _CHAR
        for word in set(u):
            if _LETTERS.fullmatch(word):
                out.update(mark + g for g in char_ngrams(word, *chars))
    return out


def document_ngrams(text: str, pair: Optional[str], max_order: int, lowercase: bool,
                    chars: Optional[tuple[int, int]] = None) -> set[str]:
    grams = ngrams(text, max_order, lowercase, chars=chars)
    if pair is not None:
        grams |= ngrams(pair, max_order, lowercase, _PAIR, chars)
    return grams


def build_vocab(docs: Iterable[set[str]], min_count: int, max_features: int) -> list[str]:
    """N-grams in at least `min_count` documents; the `max_features` most frequent (ties in string order).

    On a corpus with more than _PRUNE_AT distinct n-grams, those seen once so far are dropped whenever
    the count reaches it, so memory stays bounded; counts are then exact for all but the rarest n-grams."""
    counts: collections.Counter = collections.Counter()
    for grams in docs:
        counts.update(grams)
        if len(counts) > _PRUNE_AT:
            counts = collections.Counter({g: n for g, n in counts.items() if n > 1})
    kept = [(n, g) for g, n in counts.items() if n >= min_count]
    if len(kept) > max_features:
        kept.sort(key=lambda x: (-x[0], x[1]))
        kept = kept[:max_features]
    return sorted(g for _, g in kept)


def _bags(docs: Iterable[set[str]], index: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat feature indices, offsets): one bag of known n-grams per document, for F.embedding_bag."""
    flat: list[int] = []
    offsets: list[int] = []
    for grams in docs:
        offsets.append(len(flat))
        flat.extend(sorted(i for i in map(index.get, grams) if i is not None))
    return torch.tensor(flat, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def _csr_pair(flat: torch.Tensor, offsets: torch.Tensor, values: torch.Tensor,
              num_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (N, F) bags as a sparse CSR matrix with `values` per feature occurrence, and its (F, N) transpose."""
    n = len(offsets)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products of CSR and dense are stable
        warnings.simplefilter("ignore", UserWarning)
        x = torch.sparse_csr_tensor(torch.cat([offsets, torch.tensor([len(flat)])]), flat, values, (n, num_features),
                                    check_invariants=False)
        order = torch.argsort(flat, stable=True)
        rows = bag_rows(flat, offsets)
        crow = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(flat, minlength=num_features).cumsum(0)])
        x_t = torch.sparse_csr_tensor(crow, rows[order], values[order], (num_features, n), check_invariants=False)
    return x, x_t


def bag_sizes(flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(N,) the number of features in each document's bag."""
    return torch.diff(offsets, append=torch.tensor([len(flat)]))


def bag_rows(flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(len(flat),) the document each feature occurrence belongs to."""
    return torch.repeat_interleave(torch.arange(len(offsets)), bag_sizes(flat, offsets))


def unit_scales(flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-feature weights for F.embedding_bag that scale each bag's binary vector to unit length: 1/sqrt(size)."""
    sizes = bag_sizes(flat, offsets)
    return torch.repeat_interleave(sizes.clamp_min(1).double().rsqrt().float(), sizes)


def nb_ratios(flat: torch.Tensor, offsets: torch.Tensor, targets: torch.Tensor, num_features: int,
              alpha: float = 1.0) -> torch.Tensor:
    """(F, C) log-count ratios, one class against the rest: log(p_c / |p_c|) - log(q_c / |q_c|), where p_c
    (q_c) counts each n-gram over the documents of class c (of the other classes), plus `alpha`."""
    doc = bag_rows(flat, offsets)
    pos = torch.stack([torch.bincount(flat, targets[doc, c].double(), minlength=num_features)
                       for c in range(targets.shape[1])], 1)  # (F, C), one class at a time: memory stays O(nnz)
    total = torch.bincount(flat, minlength=num_features).double()[:, None]
    p, q = pos + alpha, total - pos + alpha
    return (torch.log(p / p.sum(0)) - torch.log(q / q.sum(0))).float()


@dataclass
class NblrModel:
    """The fitted model: feature index, (F, C) weights (ratios folded in), (C,) bias and its options."""

    vocab: list[str]
    weight: torch.Tensor
    bias: torch.Tensor
    max_order: int
    lowercase: bool
    task: str = "single"
    normalize: bool = False  # each text's vector scaled to unit length (fit_nblr_model)
    chars: Optional[tuple[int, int]] = None  # character n-grams of lo..hi characters of each word (ngrams)

    def __post_init__(self):
        self.index = {g: i for i, g in enumerate(self.vocab)}

    def logits(self, texts: list[str], pairs: Optional[list[str]] = None) -> torch.Tensor:
        """(N, C) logits of raw texts (and their pairs)."""
        docs = (document_ngrams(t, pairs[i] if pairs else None, self.max_order, self.lowercase, self.chars)
                for i, t in enumerate(texts))
        flat, offsets = _bags(docs, self.index)
        scales = unit_scales(flat, offsets) if self.normalize else None
        return F.embedding_bag(flat, self.weight, offsets, mode="sum", per_sample_weights=scales) + self.bias

    def probabilities(self, texts: list[str], pairs: Optional[list[str]] = None) -> np.ndarray:
        """(N, C) probabilities: softmax, or sigmoid per label for multilabel."""
        with torch.no_grad():
            z = self.logits(texts, pairs)
        return (torch.sigmoid(z) if self.task == "multilabel" else torch.softmax(z, -1)).numpy().astype(np.float32)


def fit_nblr_model(texts: list[str], pairs: Optional[list[str]], targets: np.ndarray, task: str = "single",
                    max_order: int = 3, min_count: int = 2, max_features: int = 1_000_000, c: float = 1.0,
                    lowercase: bool = True, max_iter: int = 300, quiet: bool = True,
                    normalize: bool = False, chars: Optional[Sequence[int]] = None) -> NblrModel:
    """Fit on N texts with (N, C) 0/1 targets (one 1 per row unless multilabel). `quiet=False`: progress
    on stderr for its three phases (counting n-grams, the features of each text, L-BFGS).

    Minimizes mean loss + |W|^2 / (2 c N), the objective of scikit-learn's LogisticRegression(C=c) divided
    by c N, over W (F, C) with logits x (W * R) + b, R the NB ratios and x the binary n-gram vector
    (`normalize`: divided by its length)."""
    chars = (int(chars[0]), int(chars[1])) if chars else None  # a config's [lo, hi]

    def docs(progress: WorkProgress) -> Iterable[set[str]]:  # made twice, for counting and the bags: not held
        for i, t in enumerate(texts):
            yield document_ngrams(t, pairs[i] if pairs else None, max_order, lowercase, chars)
            if (i + 1) % 1000 == 0 or i + 1 == len(texts):
                progress.update(i + 1)

    num_classes = targets.shape[1]
    with WorkProgress("NB-LR counting n-grams", len(texts), enabled=not quiet, unit="texts") as progress:
        vocab = build_vocab(docs(progress), min_count, min(max_features, max(1, _MAX_PARAMETERS // num_classes)))
    if not vocab:
        raise ConfigError(f"no n-gram occurs in {min_count} or more of the {len(texts)} training texts, so the n-gram "
                          "model has no features; lower `nblr.min_count` or set `nblr.weight: 0`")
    with WorkProgress("NB-LR n-gram features", len(texts), enabled=not quiet, unit="texts") as progress:
        flat, offsets = _bags(docs(progress), {g: i for i, g in enumerate(vocab)})
    y = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    ratios = nb_ratios(flat, offsets, y, len(vocab))
    scales = unit_scales(flat, offsets) if normalize else torch.ones(len(flat))
    x, x_t = _csr_pair(flat, offsets, scales, len(vocab))
    w = torch.zeros(len(vocab), num_classes)
    b = torch.zeros(num_classes)
    if task == "single":  # start from the class priors
        b = torch.log(y.mean(0).clamp_min(1e-6))
    classes = y.argmax(1)
    chosen = F.one_hot(classes, num_classes).float()  # single-label targets as the loss reads them
    penalty = 1.0 / (2.0 * c * len(texts))
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=10, tolerance_grad=1e-7,
                                  tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        """The objective and its gradients, written out (autograd through embedding_bag's backward is 30x slower
        than the sparse products): d loss / d logits is (p - y) / N per row, and d / dW = X^T that."""
        z = x @ (w * ratios) + b  # (N, C)
        if task == "multilabel":
            loss = F.binary_cross_entropy_with_logits(z, y)
            g = (torch.sigmoid(z) - y) / z.numel()
        else:
            loss = F.cross_entropy(z, classes)
            g = (torch.softmax(z, -1) - chosen) / len(z)
        w.grad = (x_t @ g) * ratios + 2.0 * penalty * w
        b.grad = g.sum(0)
        return loss + penalty * (w * w).sum()

    with WorkProgress(f"NB-LR fitting (L-BFGS on {len(vocab):,} n-grams)", None, enabled=not quiet) as progress:
        optimizer.step(closure)
        progress.finish(f"{optimizer.state[w].get('n_iter', 0)} iterations")
    log.info("nblr model: %d features, %d L-BFGS iterations", len(vocab), optimizer.state[w].get("n_iter", 0))
    return NblrModel(vocab, (w * ratios).detach(), b.detach(), max_order, lowercase, task, normalize, chars)
