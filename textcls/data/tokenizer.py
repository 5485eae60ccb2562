"""Tokenizers built with HuggingFace `tokenizers`, trained on the training texts only.

Every type shares one normalizer (optional NFKC, lowercase, accent stripping) and one
pre-tokenizer: every CJK character becomes its own piece (unless `split_cjk: false`, where the
subword model learns multi-character pieces from runs of CJK text), then text splits on whitespace
and punctuation. With `segment: jieba` a word segmenter cuts the text first (data/segment.py).
`[CLS]`/`[SEP]` are added by `encode_batch` in data/pipeline.py, not here, so that truncation can keep
the end of a document.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from textcls.config import TokenizerConfig
from textcls.data.segment import SegmentingTokenizer, cutter, marker_rule, with_segmenter
from textcls.data.subword import BPE_SUFFIX, count_words, learn_merges
from textcls.errors import CheckpointError, ConfigError, TextclsError
from textcls.io import MAX_RUN_FILE_BYTES, read_regular_text

log = logging.getLogger("textcls")
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]  # ids 0..4 in every trained vocabulary
# Part of the cache key of trained tokenizers: bump when training gives another vocabulary for the
# same texts and options (2: wordpiece/BPE from data/subword.py, deterministic unigram order).
TRAINER_VERSION = 2

# CJK Unified Ideographs (+ extensions A-B), compatibility ideographs, kana, hangul syllables.
# `tokenizers` compiles this with Oniguruma, which reads code points above U+FFFF as \x{...}
# (a `\U0002...` escape would put the letters U, a, d, f and digits into the class).
CJK = (r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
       r"\x{20000}-\x{2a6df}\x{2f800}-\x{2fa1f}]")


def _normalizer(cfg: TokenizerConfig) -> normalizers.Normalizer:
    steps = []
    if cfg.nfkc:
        steps.append(normalizers.NFKC())
    if cfg.lowercase:
        steps.append(normalizers.Lowercase())
    if cfg.strip_accents:
        steps += [normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()]
    steps.append(normalizers.Replace(Regex(r"\s+"), " "))
    return normalizers.Sequence(steps)


def _pre_tokenizer(cfg: TokenizerConfig) -> pre_tokenizers.PreTokenizer:
    steps = [marker_rule(cfg.segment)] if cfg.segment != "none" else []
    if cfg.split_cjk:
        steps.append(pre_tokenizers.Split(Regex(CJK), behavior="isolated"))
    steps += [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    if cfg.type == "char":
        steps.append(pre_tokenizers.Split(Regex(r"."), behavior="isolated"))
    return pre_tokenizers.Sequence(steps)


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer | SegmentingTokenizer:
    """Train a tokenizer of `cfg.type` on `texts`; special tokens get ids 0..4.

    Wordpiece and BPE vocabularies come from textcls's own merge learner (data/subword.py), whose
    ties do not depend on the process; unigram, word and char use the `tokenizers` trainers. With
    `cfg.segment` the texts are cut into words first, and so is every text the result encodes.
    """
    normalizer, pre_tokenizer = _normalizer(cfg), _pre_tokenizer(cfg)
    if cfg.segment != "none":
        texts = map(cutter(cfg.segment), texts)
    if cfg.type in ("wordpiece", "bpe"):
        counts = count_words(texts, normalizer, pre_tokenizer)
        learned = learn_merges(counts, cfg.vocab_size - len(SPECIAL_TOKENS), cfg.min_frequency, cfg.type)
        vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *learned.tokens])}
        if cfg.type == "wordpiece":
            longest = 100 if cfg.split_cjk else 1000  # an unsplit CJK clause is one "word"
            tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=longest))
            tok.decoder = decoders.WordPiece()
        else:
            tok = Tokenizer(models.BPE(vocab, learned.merges, unk_token=UNK, end_of_word_suffix=BPE_SUFFIX))
            tok.decoder = decoders.BPEDecoder(suffix=BPE_SUFFIX)
        tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
        tok.add_special_tokens(SPECIAL_TOKENS)
        if len(vocab) == len(SPECIAL_TOKENS):
            raise ConfigError(f"the training texts hold no words to learn a {cfg.type} vocabulary from; "
                              "check `data.train` and `data.text_columns`")
    else:
        common = dict(vocab_size=cfg.vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
        if cfg.type == "unigram":
            tok = Tokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(unk_token=UNK, **common)
        elif cfg.type in ("word", "char"):
            tok = Tokenizer(models.WordLevel(unk_token=UNK))
            trainer = trainers.WordLevelTrainer(min_frequency=cfg.min_frequency, **common)
        else:  # config validation makes this unreachable
            raise ConfigError(f"unknown tokenizer type {cfg.type!r}")
        tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
        try:
            tok.train_from_iterator(_batched(texts), trainer=trainer)
        except Exception as exc:  # tokenizers raises a bare Exception, e.g. when vocab_size is too small
            raise ConfigError(f"training the {cfg.type} tokenizer failed ({exc}); try a larger "
                              "`tokenizer.vocab_size` or another `tokenizer.type`") from None
    tok = _canonical_ids(tok)
    if tok.get_vocab_size() > cfg.vocab_size:
        log.warning("`tokenizer.vocab_size` %d is below what a %s tokenizer of these texts needs: it keeps the %d "
                    "special tokens and every character it saw, %d entries in all; raise `tokenizer.vocab_size` to "
                    "at least %d to control the size", cfg.vocab_size, cfg.type, len(SPECIAL_TOKENS),
                    tok.get_vocab_size(), tok.get_vocab_size())
    for i, special in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(special) != i:
            raise ConfigError(f"tokenizer training put {special} at id {tok.token_to_id(special)}, expected {i}")
    return SegmentingTokenizer(tok, cfg.segment) if cfg.segment != "none" else tok


def _canonical_ids(tok: Tokenizer) -> Tokenizer:
    """Renumber the vocabulary deterministically: specials first, then by token (by score for unigram).

    The `tokenizers` trainers number the vocabulary in hash-map order, which differs between
    processes; fixed ids remove that difference (wordpiece and BPE vocabularies are learned by
    data/subword.py for the same reason). Unigram scores are rounded to 1e-5, below which the
    trainer's sums differ between runs, and `_dropped_characters_in_order` undoes its hash order
    for characters the model dropped.
    """
    spec = json.loads(tok.to_str())
    model = spec["model"]
    specials = set(SPECIAL_TOKENS)
    if isinstance(model.get("vocab"), dict):
        rest = sorted(t for t in model["vocab"] if t not in specials)
        model["vocab"] = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *rest])}
    elif isinstance(model.get("vocab"), list):  # unigram: [[piece, score], ...], id = position
        pieces = _dropped_characters_in_order({p: score for p, score in model["vocab"] if p not in specials})
        pieces = {p: round(score, 5) for p, score in pieces.items()}
        rest = sorted(pieces, key=lambda p: (-pieces[p], p))
        model["vocab"] = [[p, 0.0] for p in SPECIAL_TOKENS] + [[p, pieces[p]] for p in rest]
        model["unk_id"] = SPECIAL_TOKENS.index(UNK)
    for added in spec.get("added_tokens", []):
        if added["content"] in specials:
            added["id"] = SPECIAL_TOKENS.index(added["content"])
    return Tokenizer.from_str(json.dumps(spec))


def _dropped_characters_in_order(pieces: dict[str, float], step: float = 1e-4) -> dict[str, float]:
    """The unigram trainer keeps every character; those its model dropped get the lowest score plus
    0, 1, 2... times 1e-4, handed out in hash-map order. Hand the same scores out in sorted order."""
    low = min(pieces.values(), default=0.0)
    steps = {p: (s - low) / step for p, s in pieces.items() if len(p) == 1 and -1e-9 < s - low < step * len(pieces)}
    tail = sorted(p for p, k in steps.items() if abs(k - round(k)) < 1e-6)
    ks = sorted(round(steps[p]) for p in tail)
    if not ks or set(ks) != set(range(ks[-1] + 1)):
        return pieces  # not the trainer's pattern: leave the scores alone
    return {**pieces, **{p: low + k * step for p, k in zip(tail, ks)}}


def _batched(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_tokenizer(path: Path | str) -> Tokenizer | SegmentingTokenizer:
    """A tokenizer.json (a regular file of bounded size), tried on a few probe texts: a file whose
    pre-tokenizer regex fails or backtracks without end is refused here, not in the middle of a run."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"tokenizer file {path} does not exist; check the path (a run directory has one)")
    text = read_regular_text(path, CheckpointError, MAX_RUN_FILE_BYTES)
    try:
        tok = Tokenizer.from_str(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a bare Exception on malformed JSON or a bad regex; a Rust panic is a BaseException
        raise CheckpointError(f"tokenizer file {path} cannot be loaded ({_first_line(exc)}); it must be a "
                              "tokenizer.json written by textcls (or `tokenizers`)") from None
    check_special_tokens(tok, str(path))
    encode_batch_safely(tok, PROBE_TEXTS, f"tokenizer file {path}")
    return with_segmenter(tok, f"tokenizer file {path}")


# Texts that make a catastrophically backtracking pre-tokenizer regex give up (Oniguruma's retry limit
# turns into a Rust panic), tried once at load.
PROBE_TEXTS = ["a" * 64 + "!", " " * 64 + "x", "1" * 64 + "a", "ab" * 32 + "\n", "é中a1 ,." * 8]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def encode_batch_safely(tok, texts: list[str], source: str = "the run's tokenizer", **kwargs):
    """`tok.encode_batch(texts, **kwargs)`, with a failure inside `tokenizers` (a Rust panic, e.g. a regex
    that exceeds Oniguruma's retry limit; pyo3 raises those as a BaseException) as a CheckpointError."""
    try:
        return tok.encode_batch(texts, **kwargs)
    except (KeyboardInterrupt, SystemExit, TextclsError):
        raise
    except BaseException as exc:
        raise CheckpointError(f"{source} failed to tokenize a text ({_first_line(exc)}); its pre-tokenizer or "
                              "normalizer is broken (a regex that backtracks without end?): use a tokenizer.json "
                              "written by textcls, or train again") from None


def check_special_tokens(tok: Tokenizer, source: str) -> None:
    for special in (PAD, UNK, CLS, SEP):
        if tok.token_to_id(special) is None:
            raise CheckpointError(f"tokenizer file {source} has no {special} token; textcls needs "
                                  f"{', '.join(SPECIAL_TOKENS)}")


def special_ids(tok: Tokenizer) -> dict[str, int]:
    return {s: tok.token_to_id(s) for s in SPECIAL_TOKENS if tok.token_to_id(s) is not None}
