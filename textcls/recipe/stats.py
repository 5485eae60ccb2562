"""The statistics of a training file that the automatic recipe decides by (textcls/recipe/rules.py).

Token lengths here are pre-tokens: runs of letters/digits, single punctuation marks and single CJK
characters, as textcls's tokenizers split text before learning sub-words (data/tokenizer.py). A base
model's own tokenizer gives exact lengths instead (`token_lengths`).
"""

from __future__ import annotations

import collections
import re
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from textcls.data.overlap import inside_share, text_key
from textcls.data.readers import Record

# The CJK ranges of data/tokenizer.py (Python's re spells code points above U+FFFF as \U...).
CJK_CHAR = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
                      "\U00020000-\U0002a6df\U0002f800-\U0002fa1f]")
PRE_TOKEN = re.compile(f"{CJK_CHAR.pattern}|[^\\W_]+|[^\\w\\s]|_", re.UNICODE)


def pre_tokens(text: str) -> int:
    """The number of pre-tokens in `text` (see the module docstring)."""
    return sum(1 for _ in PRE_TOKEN.finditer(text))


@dataclass(frozen=True)
class DataStats:
    rows: int
    classes: dict[str, int]  # label -> rows, most frequent first
    pairs: bool  # two text columns
    length_p50: float  # tokens per row (both texts of a pair), percentiles
    length_p95: float
    length_p99: float
    length_mean: float
    chars: int  # characters of text in all rows
    cjk_share: float  # CJK characters / non-space characters
    duplicate_rate: float  # share of rows whose text occurs in an earlier row
    inside_share: float = 0.0  # share of rows whose text lies inside another row's (data/overlap.py; a sample)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def imbalance(self) -> float:
        """Rows of the most frequent class / rows of the least frequent."""
        counts = list(self.classes.values())
        return max(counts) / max(1, min(counts))

    @property
    def cjk(self) -> bool:
        return self.cjk_share >= 0.3

    def summary(self) -> dict:
        """A flat mapping for config.yaml's `recipe.stats` and the start-of-run lines."""
        out = asdict(self)
        out["classes"] = dict(self.classes)
        out.update(num_classes=self.num_classes, imbalance=round(self.imbalance, 2))
        for key in ("length_p50", "length_p95", "length_p99", "length_mean", "cjk_share", "duplicate_rate",
                    "inside_share"):
            out[key] = round(float(out[key]), 3)
        return out


def data_stats(records: Iterable[Record], count: Callable[[str], int] = pre_tokens) -> DataStats:
    """The statistics of labelled records; `count` gives a text's token count (pre-tokens by default)."""
    labels: collections.Counter = collections.Counter()
    lengths, seen, keys = [], set(), []
    chars = cjk = non_space = duplicates = 0
    pairs = False
    for rec in records:
        labels.update(rec.labels or ["?"])
        text = rec.text if rec.text_pair is None else f"{rec.text}\n{rec.text_pair}"
        pairs = pairs or rec.text_pair is not None
        lengths.append(count(rec.text) + (count(rec.text_pair) if rec.text_pair is not None else 0))
        chars += len(text)
        non_space += len(text) - text.count(" ")
        cjk += len(CJK_CHAR.findall(text))
        key = text_key(rec.text, rec.text_pair)
        duplicates += key in seen
        seen.add(key)
        keys.append(key)
    rows = len(lengths)
    p50, p95, p99 = np.percentile(lengths, [50, 95, 99]) if lengths else (0.0, 0.0, 0.0)
    return DataStats(rows, dict(labels.most_common()), pairs, float(p50), float(p95), float(p99),
                     float(np.mean(lengths)) if lengths else 0.0, chars, cjk / max(1, non_space),
                     duplicates / max(1, rows), inside_share(keys))


def token_lengths(records: list[Record], encode: Callable[[list[str]], list[int]]) -> Optional[np.ndarray]:
    """Exact token counts (both texts of a pair) from a tokenizer's batch encoder; None without rows."""
    if not records:
        return None
    lengths = np.asarray(encode([r.text for r in records]), dtype=np.int64)
    if any(r.text_pair is not None for r in records):
        lengths += np.asarray(encode([r.text_pair or "" for r in records]), dtype=np.int64)
    return lengths
