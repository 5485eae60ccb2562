"""What the export and quantize commands share: the run's sample texts, a stand-alone tokenizer file, the
refusals of runs that are not one transformer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from tokenizers import Tokenizer, processors

from textcls.data.pipeline import labelled_rows, text_splits
from textcls.data.segment import SegmentingTokenizer
from textcls.data.tokenizer import CLS, SEP
from textcls.errors import CheckpointError, TextclsError
from textcls.model import TextClassifier
from textcls.model.ensemble import EnsembleClassifier
from textcls.run.load import Run

log = logging.getLogger("textcls")

SAMPLE_WORDS = 12  # words per built sample text


@dataclass
class Samples:
    """Texts (and second texts of pairs) to check or time a model on, with their (N, C) targets when labelled."""

    texts: list[str]
    pairs: Optional[list[str]]
    targets: Optional[np.ndarray]
    source: str  # where they come from, for the report


def run_samples(run: Run, data_file: Optional[str] = None, limit: Optional[int] = None) -> Samples:
    """`data_file`'s labelled rows, else the run's validation rows when its data files are still there,
    else texts built from the tokenizer's vocabulary (unlabelled)."""
    if data_file:
        rows, _ = labelled_rows(data_file, run.cfg.data, run.labels)
        return _cut(Samples(rows.texts, rows.pairs, rows.targets, data_file), limit)
    valid = None
    try:
        if run.cfg.data.train:  # an imported checkpoint has no data files
            _, valid = text_splits(run.cfg, run.labels)
    except (TextclsError, OSError) as exc:  # the training data moved or changed since: build texts instead
        log.info("the run's validation rows cannot be read (%s); using built texts", exc)
    if valid is not None and valid.texts:
        return _cut(Samples(valid.texts, valid.pairs, valid.targets, "the run's validation rows"), limit)
    return built_samples(run, limit or 32)


def built_samples(run: Run, count: int) -> Samples:
    """`count` texts of random vocabulary tokens, of several lengths (seeded)."""
    vocab = [t for t, _ in sorted(run.tokenizer.get_vocab().items(), key=lambda kv: kv[1])
             if not (t.startswith("[") and t.endswith("]"))]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(vocab, size=1 + (i * 5) % SAMPLE_WORDS * 3)) for i in range(count)]
    pairs = [" ".join(rng.choice(vocab, size=1 + i % SAMPLE_WORDS)) for i in range(count)] \
        if len(run.cfg.data.text_columns) == 2 else None
    return Samples(texts, pairs, None, "texts built from the vocabulary")


def _cut(samples: Samples, limit: Optional[int]) -> Samples:
    if limit is None or len(samples.texts) <= limit:
        return samples
    targets = None if samples.targets is None else samples.targets[:limit]
    return Samples(samples.texts[:limit], samples.pairs[:limit] if samples.pairs else None, targets, samples.source)


def single_model(run: Run, what: str, ensembles: bool = False) -> torch.nn.Module:
    """The run's one transformer (or, with `ensembles`, its ensemble of members that share one tokenizer, whose
    output is the members' mean probability); CheckpointError for what `what` cannot hold: another ensemble, or
    a run that mixes in the n-gram model."""
    if ensembles and isinstance(run.model, EnsembleClassifier):
        pass
    elif not isinstance(run.model, TextClassifier):
        if ensembles:
            raise CheckpointError(f"{run.path} is an ensemble whose members read the text with different tokenizers "
                                  f"(train.ensemble_variants), which one tokenizer.json cannot feed; {what} works "
                                  f"on one member (its folder under {run.path / 'members'})")
        raise CheckpointError(f"{run.path} is an ensemble; {what} works on a run of one model: export or quantize "
                              f"one member (its folder under {run.path / 'members'})")
    if run.nblr is not None:
        raise CheckpointError(
            f"{run.path} mixes the bag-of-n-grams model into its probabilities (nblr.json), which reads raw text in "
            f"Python and has no place in {what}; train the run with `nblr.weight: 0` to {what} it")
    return run.model


def standalone_tokenizer(run: Run, what: str) -> Tokenizer:
    """The run's tokenizer with textcls's `[CLS] a [SEP]` / `[CLS] a [SEP] b [SEP]` as its post-processor, so
    that `Tokenizer.encode` (or HF's tokenizer) gives the ids textcls feeds the model. The second text's
    token types are 1 where the model has two segment rows, else 0 (textcls adds row 0 to every token)."""
    tok = run.tokenizer
    if isinstance(tok, SegmentingTokenizer):
        raise CheckpointError(
            f"{run.path} cuts texts into words with {tok.segment} before its tokenizer (tokenizer.segment), which a "
            f"tokenizer.json cannot do; {what} is not possible for it")
    tok = Tokenizer.from_str(tok.to_str())
    pair_type = 1 if run.cfg.model.type_vocab_size > 1 else 0
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:{pair_type} {SEP}:{pair_type}",
        special_tokens=[(CLS, tok.token_to_id(CLS)), (SEP, tok.token_to_id(SEP))])
    tok.no_truncation()
    tok.no_padding()
    return tok
