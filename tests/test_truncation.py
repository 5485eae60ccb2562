"""Long documents: head / tail / head+tail truncation, and window-averaged prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from conftest import run_cli, tiny_config, tiny_model
from textcls.config import config_from_dict
from textcls.data.pipeline import encode_texts, truncate
from textcls.data.tokenizer import CLS, SEP, train_tokenizer
from textcls.predict import predict_probabilities, predict_windowed, window_starts
from textcls.run.load import Run, build_model, load_run

IDS = list(range(100, 120))  # 20 tokens


@pytest.mark.parametrize("how, head, expected", [
    ("head", 128, IDS[:8]),
    ("tail", 128, IDS[-8:]),
    ("head+tail", 3, IDS[:3] + IDS[-5:]),
    ("head+tail", 8, IDS[:8]),       # head_tokens >= budget: only the head
    ("head+tail", 0, IDS[-8:]),      # no head: only the tail
])
def test_truncate_keeps_the_right_tokens(how, head, expected):
    assert truncate(IDS, 8, how, head) == expected


@pytest.mark.parametrize("how", ["head", "tail", "head+tail"])
def test_truncate_leaves_short_input_alone(how):
    assert truncate(IDS[:5], 8, how, 2) == IDS[:5]
    assert truncate(IDS[:8], 8, how, 2) == IDS[:8]


def _word_tokenizer(words: list[str]) -> Tokenizer:
    cfg = config_from_dict({"tokenizer": {"type": "word", "vocab_size": 1000, "min_frequency": 1}}).tokenizer
    return train_tokenizer([" ".join(words)], cfg)


WORDS = [f"w{i}" for i in range(30)]  # one token each


def test_encode_texts_head_tail_adds_specials_around_the_kept_tokens():
    tok = _word_tokenizer(WORDS)
    word_ids = [tok.token_to_id(w) for w in WORDS]
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    (ids,), (types,) = encode_texts(tok, [" ".join(WORDS)], None, max_length=12, truncation="head+tail",
                                    head_tokens=4)
    assert ids == [cls_id, *word_ids[:4], *word_ids[-6:], sep_id] and types == [0] * 12
    (ids,), _ = encode_texts(tok, [" ".join(WORDS)], None, max_length=12, truncation="tail")
    assert ids == [cls_id, *word_ids[-10:], sep_id]
    (ids,), _ = encode_texts(tok, ["w1 w2"], None, max_length=12, truncation="head+tail", head_tokens=4)
    assert ids == [cls_id, word_ids[1], word_ids[2], sep_id]


def test_encode_texts_pair_budget_is_shared_and_truncated_per_side():
    tok = _word_tokenizer(WORDS)
    (ids,), (types,) = encode_texts(tok, [" ".join(WORDS[:20])], [" ".join(WORDS[20:])], max_length=15,
                                    truncation="tail")
    # budget 12: the second text (10 tokens) keeps 6 (half), the first keeps its last 6
    assert len(ids) == 15 and types == [0] * 8 + [1] * 7
    assert ids[1:7] == [tok.token_to_id(w) for w in WORDS[14:20]]
    assert ids[8:14] == [tok.token_to_id(w) for w in WORDS[24:30]]


def test_window_starts_cover_the_document():
    assert window_starts(5, 8, 4) == [0]
    assert window_starts(8, 8, 4) == [0]
    assert window_starts(20, 8, 4) == [0, 4, 8, 12]
    assert window_starts(21, 8, 4) == [0, 4, 8, 12, 13]
    assert window_starts(20, 8, 8) == [0, 8, 12]


def _run(max_length: int = 10) -> Run:
    cfg = config_from_dict({"data": {"max_length": max_length}, "model": tiny_model(),
                            "tokenizer": {"type": "word"}})
    tok = _word_tokenizer(WORDS)
    torch.manual_seed(0)
    model = build_model(cfg, tok, 3).eval()
    return Run(Path("."), cfg, tok, ["a", "b", "c"], model)


def test_long_document_gets_the_average_of_its_windows():
    run = _run(max_length=10)  # windows of 8 words
    long_doc = " ".join(WORDS[:20])
    short = ["w1 w2 w3", " ".join(WORDS[:8])]
    got = predict_windowed(run, [short[0], long_doc, short[1]], stride=4, batch_size=2)
    windows = [" ".join(WORDS[s:s + 8]) for s in (0, 4, 8, 12)]
    expected_long = predict_probabilities(run, windows).mean(0)
    np.testing.assert_allclose(got[1], expected_long, atol=1e-5)
    np.testing.assert_allclose(got[[0, 2]], predict_probabilities(run, short), atol=1e-5)
    assert not np.allclose(got[1], predict_probabilities(run, [long_doc])[0], atol=1e-4)  # not plain truncation


def test_cli_chunk_long(tmp_path, sst2_files):
    from textcls.train.loop import train

    train_file, valid_file = sst2_files
    cfg = tiny_config(train_file, valid_file, tmp_path / "run", data={"max_length": 12})
    cfg.train.max_steps = 2
    train(cfg, quiet=True)
    run = load_run(tmp_path / "run")
    texts = [" ".join(["a fine , funny and moving film"] * 6), "a dull movie"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    proc = run_cli("predict", str(tmp_path / "run"), str(tmp_path / "in.txt"), "--chunk-long", "--stride", "5",
                   "--input-format", "txt", "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = predict_windowed(run, texts, stride=5)
    for row, probs in zip(rows, expected):
        got = {item["label"]: item["probability"] for item in row["top_k"]}
        assert got == pytest.approx({run.labels[i]: float(p) for i, p in enumerate(probs)}, abs=1e-5)
    proc = run_cli("predict", str(tmp_path / "run"), str(tmp_path / "in.txt"), "--chunk-long", "--stride", "11")
    assert proc.returncode == 2 and "--stride 11 is longer than a window (10 tokens)" in proc.stderr
