"""Tokenizers built with HuggingFace `tokenizers`, trained on the training texts only.

Every type shares one normalizer (optional NFKC, lowercase, accent stripping) and one
pre-tokenizer: every CJK character becomes its own piece (unless `split_cjk: false`, where the
subword model learns multi-character pieces from runs of CJK text), then text splits on whitespace
and punctuation. `[CLS]`/`[SEP]` are added by `encode_batch` in data/pipeline.py, not here, so that
truncation can keep the end of a document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from textcls.config import TokenizerConfig
from textcls.errors import CheckpointError, ConfigError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]  # ids 0..4 in every trained vocabulary

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
    steps = [pre_tokenizers.Split(Regex(CJK), behavior="isolated")] if cfg.split_cjk else []
    steps += [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    if cfg.type == "char":
        steps.append(pre_tokenizers.Split(Regex(r"."), behavior="isolated"))
    return pre_tokenizers.Sequence(steps)


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    """Train a tokenizer of `cfg.type` on `texts`; special tokens get ids 0..4."""
    common = dict(vocab_size=cfg.vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    if cfg.type == "wordpiece":
        longest = 100 if cfg.split_cjk else 1000  # an unsplit CJK clause is one "word"
        tok = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=longest))
        trainer = trainers.WordPieceTrainer(min_frequency=cfg.min_frequency, **common)
        tok.decoder = decoders.WordPiece()
    elif cfg.type == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix="</w>"))
        trainer = trainers.BpeTrainer(min_frequency=cfg.min_frequency, end_of_word_suffix="</w>", **common)
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
    elif cfg.type == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(unk_token=UNK, **common)
    elif cfg.type in ("word", "char"):
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(min_frequency=cfg.min_frequency, **common)
    else:  # config validation makes this unreachable
        raise ConfigError(f"unknown tokenizer type {cfg.type!r}")
    tok.normalizer = _normalizer(cfg)
    tok.pre_tokenizer = _pre_tokenizer(cfg)
    try:
        tok.train_from_iterator(_batched(texts), trainer=trainer)
    except Exception as exc:  # tokenizers raises a bare Exception, e.g. when vocab_size is too small
        raise ConfigError(f"training the {cfg.type} tokenizer failed ({exc}); try a larger `tokenizer.vocab_size` "
                          "or another `tokenizer.type`") from None
    tok = _canonical_ids(tok)
    for i, special in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(special) != i:
            raise ConfigError(f"tokenizer training put {special} at id {tok.token_to_id(special)}, expected {i}")
    return tok


def _canonical_ids(tok: Tokenizer) -> Tokenizer:
    """Renumber the vocabulary deterministically: specials first, then by token (by score for unigram).

    The `tokenizers` trainers number the vocabulary in hash-map order, which differs between
    processes; fixed ids remove that difference. They also break frequency ties at the vocabulary
    cutoff in that order, so on large corpora the wordpiece/bpe vocabulary itself can differ by a few
    tokens between processes: reproducibility across machines needs the saved tokenizer.json
    (`tokenizer.path`); on one machine the tokenizer is cached per training file.
    """
    spec = json.loads(tok.to_str())
    model = spec["model"]
    specials = set(SPECIAL_TOKENS)
    if isinstance(model.get("vocab"), dict):
        rest = sorted(t for t in model["vocab"] if t not in specials)
        model["vocab"] = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *rest])}
    elif isinstance(model.get("vocab"), list):  # unigram: [[piece, score], ...], id = position
        pieces = {p: score for p, score in model["vocab"]}
        rest = sorted((p for p in pieces if p not in specials), key=lambda p: (-pieces[p], p))
        model["vocab"] = [[p, pieces[p]] for p in [*SPECIAL_TOKENS, *rest] if p in pieces]
        model["unk_id"] = SPECIAL_TOKENS.index(UNK)
    for added in spec.get("added_tokens", []):
        if added["content"] in specials:
            added["id"] = SPECIAL_TOKENS.index(added["content"])
    return Tokenizer.from_str(json.dumps(spec))


def _batched(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_tokenizer(path: Path | str) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"tokenizer file {path} does not exist; check the path (a run directory has one)")
    try:
        tok = Tokenizer.from_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"tokenizer file {path} does not exist") from None
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise CheckpointError(f"tokenizer file {path} cannot be loaded ({exc}); it must be a tokenizer.json") from None
    check_special_tokens(tok, str(path))
    return tok


def check_special_tokens(tok: Tokenizer, source: str) -> None:
    for special in (PAD, UNK, CLS, SEP):
        if tok.token_to_id(special) is None:
            raise CheckpointError(f"tokenizer file {source} has no {special} token; textcls needs "
                                  f"{', '.join(SPECIAL_TOKENS)}")


def special_ids(tok: Tokenizer) -> dict[str, int]:
    return {s: tok.token_to_id(s) for s in SPECIAL_TOKENS if tok.token_to_id(s) is not None}
