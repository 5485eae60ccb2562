"""textcls's own merge learner for wordpiece and BPE vocabularies (data/subword.py)."""

import random
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT, python_path, sst2_slice
from textcls.config import TokenizerConfig
from textcls.data.subword import count_words, learn_merges
from textcls.data.tokenizer import _normalizer, _pre_tokenizer, train_tokenizer


def reference_merges(word_counts: dict[str, int], budget: int, min_frequency: int, style: str) -> list[str]:
    """Plain BPE: recount every pair after every merge, take the most frequent, ties by the pair's strings."""
    def symbols(w):
        return [w[0], *("##" + c for c in w[1:])] if style == "wordpiece" else [*w[:-1], w[-1] + "</w>"]

    words = {w: symbols(w) for w in word_counts}
    tokens = sorted({s for syms in words.values() for s in syms})
    while len(tokens) < budget:
        pairs = Counter()
        for w, syms in words.items():
            for pair in zip(syms, syms[1:]):
                pairs[pair] += word_counts[w]
        if not pairs:
            break
        (left, right), count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        if count < min_frequency:
            break
        new = left + (right[2:] if style == "wordpiece" else right)
        if new not in tokens:
            tokens.append(new)
        for w, syms in words.items():
            out, i = [], 0
            while i < len(syms):
                if syms[i:i + 2] == [left, right]:
                    out.append(new)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[w] = out
    return tokens


@pytest.mark.parametrize("style", ["wordpiece", "bpe"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_counts_learn_what_recounting_learns(style, seed):
    """Random words over a 4-letter alphabet: many repeats ("aaaa"), overlaps and ties."""
    rng = random.Random(seed)
    counts = {"".join(rng.choice("abcd") for _ in range(rng.randint(1, 9))): rng.randint(1, 5) for _ in range(120)}
    for min_frequency in (1, 3):
        got = learn_merges(counts, 60, min_frequency, style).tokens
        assert got == reference_merges(counts, 60, min_frequency, style)


def test_sennrich_example_and_ties_go_to_the_pair_that_sorts_first():
    counts = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
    learned = learn_merges(counts, 100, 2, "bpe")
    # (e, s) and (s, t</w>) both occur 9 times: (e, s) sorts first; then es+t</w> (9), l+o (7), and of
    # the three pairs seen 6 times in "newest", (e, w) sorts before (n, e) and (w, est</w>)
    assert learned.merges[:4] == [("e", "s"), ("es", "t</w>"), ("l", "o"), ("e", "w")]
    assert learned.tokens[len(learned.tokens) - len(learned.merges):][:2] == ["es", "est</w>"]
    shuffled = dict(reversed(list(counts.items())))
    assert learn_merges(shuffled, 100, 2, "bpe") == learned
    assert len(learn_merges(counts, 100, 8, "bpe").merges) == 2  # only the two pairs seen 9 times


def test_the_budget_counts_the_alphabet_and_wordpiece_marks_inner_symbols():
    learned = learn_merges({"abab": 4, "ba": 1}, 6, 1, "wordpiece")
    assert learned.tokens[:4] == ["##a", "##b", "a", "b"]
    # all three pairs of "abab" occur 4 times and "#" sorts before letters: ##a+##b first, leaving
    # a ##b ##ab, whose ##b+##ab sorts before a+##b
    assert learned.tokens[4:] == ["##ab", "##bab"]


@pytest.mark.parametrize("options", [{}, {"split_cjk": False}, {"nfkc": False, "lowercase": False}])
def test_word_counts_from_blocks_equal_counts_per_text(options):
    texts = [s for s, _ in sst2_slice(50)] + ["服务很好, 价格 不错!", "  spaced\tout\n", "", "ＡＢＣ full-width",
                                             "no\u00a0break\u2003em\u200bzero\x1cfs", "酒店的服务很好,房间"]
    cfg = TokenizerConfig(**options)
    norm, pre = _normalizer(cfg), _pre_tokenizer(cfg)
    one_by_one = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    assert count_words(texts, norm, pre, block=7) == one_by_one
    assert one_by_one["em\u200bzero\x1cfs"] == 1  # not whitespace to the normalizer or the pre-tokenizer
    if not options:
        assert one_by_one["服"] == 2 and one_by_one["abc"] == 1


def test_training_texts_with_no_words_are_refused():
    from textcls.errors import ConfigError

    with pytest.raises(ConfigError, match="no words"):
        train_tokenizer(["", "   "], TokenizerConfig(type="bpe"))


def test_every_subword_type_learns_the_same_vocabulary_in_every_process():
    """The `tokenizers` wordpiece/BPE trainers break ties in per-process hash order (on full SST-2 one
    process in four learned another vocabulary) and its unigram trainer orders dropped characters the
    same way. Several processes with different hash seeds must write the same tokenizer.json."""
    script = ("import hashlib; from textcls.config import TokenizerConfig; "
              "from textcls.data.tokenizer import train_tokenizer; from conftest import sst2_slice; "
              "texts = [s for s, _ in sst2_slice(3000)] + ['这家酒店的服务很好', '價格不是太好', 'ĳ ǆ ß'] ; "
              "print(*(hashlib.sha256(train_tokenizer(texts, TokenizerConfig(type=k, vocab_size=1500)).to_str()"
              ".encode()).hexdigest() for k in ('wordpiece', 'bpe', 'unigram')))")
    outs = set()
    for seed in range(3):
        env = {"PYTHONPATH": python_path(ROOT / "tests"), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": str(seed)}
        outs.add(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                check=True).stdout)
    assert len(outs) == 1
