"""`tokenizer.segment: jieba`: Chinese cut into dictionary words before the tokenizer, in training,
in the saved tokenizer.json, and in every run that loads it."""

from __future__ import annotations

import dataclasses
import json
import sys
import unicodedata

import numpy as np
import pytest

rjieba = pytest.importorskip("rjieba")

from conftest import DATA, run_cli, tiny_config, write_tsv  # noqa: E402
from textcls.config import TokenizerConfig, config_from_dict, optional  # noqa: E402
from textcls.data.segment import SegmentingTokenizer, recorded_segmenter  # noqa: E402
from textcls.data.tokenizer import load_tokenizer, train_tokenizer  # noqa: E402
from textcls.errors import CheckpointError, ConfigError  # noqa: E402
from textcls.predict import predict_probabilities  # noqa: E402
from textcls.run.load import load_run  # noqa: E402
from textcls.train.loop import train  # noqa: E402


def chn_rows(n: int, split: str = "train") -> list[tuple[str, str]]:
    """The first n rows of the ChnSentiCorp slice in tests/data as (text, label)."""
    header, *lines = (DATA / "chnsenticorp" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:1 + n]
    text, label = header.split("\t").index("text_a"), header.split("\t").index("label")
    return [(fields[text], fields[label]) for fields in (line.split("\t") for line in lines)]


def pieces(tok, text: str) -> list[str]:
    return [p.removeprefix("##") for p in tok.encode(text, add_special_tokens=False).tokens]


def boundaries(parts: list[str]) -> set[int]:
    out, at = set(), 0
    for part in parts:
        at += len(part)
        out.add(at)
    return out


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    return [text for text, _ in chn_rows(1500)]


def test_segmented_wordpiece_never_crosses_a_word_boundary(reviews):
    """Every jieba word boundary is a piece boundary, and frequent words are whole pieces; without the
    segmenter, pieces learned from whole clauses do cross word boundaries."""
    cfg = TokenizerConfig(vocab_size=8000, split_cjk=False, segment="jieba")
    tok = train_tokenizer(reviews, cfg)
    plain = train_tokenizer(reviews, TokenizerConfig(vocab_size=8000, split_cjk=False))
    assert isinstance(tok, SegmentingTokenizer) and not isinstance(plain, SegmentingTokenizer)
    crossed = 0
    for text in reviews[:200]:
        text = unicodedata.normalize("NFKC", "".join(text.split())).lower()  # as the normalizer leaves it
        words = [w for w in rjieba.cut(text) if w.strip()]
        assert boundaries(words) <= boundaries(pieces(tok, text)), text
        crossed += not boundaries(words) <= boundaries(pieces(plain, text))
    assert crossed > 20
    assert {"酒店", "服务", "房间"} <= set(pieces(tok, "酒店的服务和房间都不错"))


def test_segmenter_survives_save_and_load(tmp_path, reviews):
    tok = train_tokenizer(reviews[:300], TokenizerConfig(vocab_size=2000, split_cjk=False, segment="jieba"))
    path = tmp_path / "tokenizer.json"
    path.write_text(tok.to_str(), encoding="utf-8")
    loaded = load_tokenizer(path)
    assert isinstance(loaded, SegmentingTokenizer) and recorded_segmenter(loaded.tokenizer) == "jieba"
    texts = ["房间很干净，早餐一般。", "这本书值得一读"]
    assert [e.ids for e in loaded.encode_batch(texts)] == [e.ids for e in tok.encode_batch(texts)]
    # the same ids as the wrapped tokenizer on text cut by hand: the marker rule changes nothing else
    by_hand = [loaded.tokenizer.encode(" ".join(rjieba.cut(t))).ids for t in texts]
    assert [loaded.encode(t).ids for t in texts] == by_hand
    # a tokenizer without a segmenter loads as the plain `tokenizers` object
    plain = train_tokenizer(reviews[:300], TokenizerConfig(vocab_size=2000, split_cjk=False))
    (tmp_path / "plain.json").write_text(plain.to_str(), encoding="utf-8")
    assert recorded_segmenter(load_tokenizer(tmp_path / "plain.json")) is None


def test_loading_a_segmenting_tokenizer_without_rjieba_says_what_to_install(tmp_path, reviews, monkeypatch):
    tok = train_tokenizer(reviews[:300], TokenizerConfig(vocab_size=2000, split_cjk=False, segment="jieba"))
    path = tmp_path / "tokenizer.json"
    path.write_text(tok.to_str(), encoding="utf-8")
    monkeypatch.setitem(sys.modules, "rjieba", None)  # `import rjieba` now raises ImportError
    with pytest.raises(CheckpointError, match=r"tokenizer file .*tokenizer\.json.*jieba.*pip install 'textcls\[zh\]'"):
        load_tokenizer(path)


def test_config_checks(monkeypatch):
    base = {"data": {"train": "x.tsv"}, "tokenizer": {"segment": "jieba"}}
    with pytest.raises(ConfigError, match=r"tokenizer\.split_cjk: false"):
        config_from_dict(base)
    cfg = config_from_dict({**base, "tokenizer": {"segment": "jieba", "split_cjk": False}})
    assert cfg.tokenizer.segment == "jieba"
    with pytest.raises(ConfigError, match=r"tokenizer\.segment"):
        config_from_dict({**base, "tokenizer": {"segment": "pkuseg", "split_cjk": False}})
    monkeypatch.setattr(optional, "segmenter_available", lambda name: False)
    with pytest.raises(ConfigError, match=r"needs the rjieba package.*pip install 'textcls\[zh\]'"):
        config_from_dict({**base, "tokenizer": {"segment": "jieba", "split_cjk": False}})


def test_a_run_trained_with_the_segmenter_predicts_with_it(tmp_path):
    """The run's tokenizer.json records the segmenter, a loaded run cuts words before encoding, and
    its probabilities are those of the plain tokenizer on text cut by hand (not on the raw text)."""
    train_file = write_tsv(tmp_path / "train.tsv", chn_rows(300))
    valid = chn_rows(60, "dev")
    valid_file = write_tsv(tmp_path / "valid.tsv", valid)
    cfg = tiny_config(train_file, valid_file, tmp_path / "run", tokenizer={"vocab_size": 1500, "split_cjk": False,
                                                                          "segment": "jieba"},
                      train={"max_steps": 20, "eval_every": 20})
    train(cfg, quiet=True)
    saved = json.loads((tmp_path / "run" / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["pre_tokenizer"]["pretokenizers"][0]["pattern"]["String"] == "\ufdd0segment=jieba\ufdd0"
    run = load_run(tmp_path / "run")
    assert isinstance(run.tokenizer, SegmentingTokenizer)
    texts = [text for text, _ in valid]
    probs = predict_probabilities(run, texts)
    raw = dataclasses.replace(run, tokenizer=run.tokenizer.tokenizer)
    assert np.allclose(probs, predict_probabilities(raw, [" ".join(rjieba.cut(t)) for t in texts]), atol=1e-6)
    assert not np.allclose(probs, predict_probabilities(raw, texts), atol=1e-4)


def test_cli_names_the_keys(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", chn_rows(50))
    done = run_cli("train", "--set", f"data.train={train}", "--set", "data.text_columns=[sentence]",
                   "--set", "tokenizer.segment=jieba", "--output", str(tmp_path / "run"))
    assert done.returncode == 2
    assert "tokenizer.split_cjk: false" in done.stderr and "Traceback" not in done.stderr
