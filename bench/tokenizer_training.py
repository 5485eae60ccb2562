"""Tokenizer training: textcls's merge learner against the `tokenizers` trainer, time and reproducibility.

    PYTHONPATH=. python bench/tokenizer_training.py                 # 3 cases, 4 processes each
    PYTHONPATH=. python bench/tokenizer_training.py --processes 8 --copies 4

For each case both learners train the same vocabulary (size, min_frequency 2, textcls's normalizer
and pre-tokenizer) in `--processes` fresh processes, each with its own hash seed. Printed: the median
training time, how many different vocabularies the processes learned, and how many tokens the two
learners' vocabularies share. Cases: SST-2 train (wordpiece 8k), ChnSentiCorp train with multi-character
pieces (BPE 16k, `split_cjk: false`), and SST-2 + ChnSentiCorp + AG News test with `--copies` renamed
copies of the text, so that the number of distinct words grows with the corpus (wordpiece 32k).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from textcls.device import machine_summary

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CASES = {"sst2": ("wordpiece", 8000, True), "chnsenticorp": ("bpe", 16000, False), "mixed": ("wordpiece", 32000, True)}


def texts_of(case: str, copies: int) -> list[str]:
    def column(path: Path, name: str) -> list[str]:
        with open(path, encoding="utf-8", newline="") as handle:
            return [row[name] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]

    if case == "sst2":
        return column(DATA / "sst2" / "train.tsv", "sentence")
    if case == "chnsenticorp":
        return column(DATA / "chnsenticorp" / "train.tsv", "text_a")
    with open(DATA / "ag_news" / "test.csv", encoding="utf-8", newline="") as handle:
        news = [f"{title} {body}" for _, title, body in csv.reader(handle)]
    base = texts_of("sst2", 1) + texts_of("chnsenticorp", 1) + news
    return base + [" ".join(f"{w}x{c}" for w in t.split()) for c in range(1, copies) for t in base]


def train_once(case: str, learner: str, copies: int) -> dict:
    """One training in this process: seconds and a digest of the vocabulary (and its token set)."""
    from tokenizers import Tokenizer, models, trainers

    from textcls.config import TokenizerConfig
    from textcls.data import tokenizer as T

    kind, size, split_cjk = CASES[case]
    texts = texts_of(case, copies)
    cfg = TokenizerConfig(type=kind, vocab_size=size, split_cjk=split_cjk)
    start = time.perf_counter()
    if learner == "textcls":
        vocab = T.train_tokenizer(texts, cfg).get_vocab()
    else:
        model, trainer = ((models.WordPiece(unk_token=T.UNK), trainers.WordPieceTrainer) if kind == "wordpiece" else
                          (models.BPE(unk_token=T.UNK, end_of_word_suffix="</w>"), trainers.BpeTrainer))
        extra = {} if kind == "wordpiece" else {"end_of_word_suffix": "</w>"}
        tok = Tokenizer(model)
        tok.normalizer, tok.pre_tokenizer = T._normalizer(cfg), T._pre_tokenizer(cfg)
        tok.train_from_iterator(texts, trainer(vocab_size=size, min_frequency=cfg.min_frequency,
                                               special_tokens=T.SPECIAL_TOKENS, show_progress=False, **extra))
        vocab = tok.get_vocab()
    seconds = time.perf_counter() - start
    tokens = sorted(vocab)
    return {"seconds": seconds, "digest": hashlib.sha256("\n".join(tokens).encode()).hexdigest(), "tokens": tokens}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4, help="fresh processes per case and learner")
    parser.add_argument("--copies", type=int, default=4, help="renamed copies of the text in the mixed case")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--one", nargs=2, metavar=("CASE", "LEARNER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(machine_summary(), flush=True)  # the figures below belong to this machine
    if args.one:
        print(json.dumps(train_once(*args.one, args.copies)))
        return 0
    print(f"{'case':<14}{'learner':<12}{'median s':>10}{'vocabularies':>14}{'shared tokens':>15}")
    for case in args.cases:
        runs = {}
        for learner in ("textcls", "tokenizers"):
            runs[learner] = []
            for seed in range(args.processes):
                env = {**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(ROOT)}
                out = subprocess.run([sys.executable, __file__, "--one", case, learner, "--copies", str(args.copies)],
                                     env=env, capture_output=True, text=True, check=True).stdout
                runs[learner].append(json.loads(out))
        shared = len(set(runs["textcls"][0]["tokens"]) & set(runs["tokenizers"][0]["tokens"]))
        for learner, results in runs.items():
            print(f"{case:<14}{learner:<12}{statistics.median(r['seconds'] for r in results):>10.2f}"
                  f"{len({r['digest'] for r in results}):>14}{shared:>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
