"""`textcls explain`: whole-word averaging, integrated gradients and attention rollout on a model trained to
key on one word, ensembles, the HTML page and the attention dump."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config, write_tsv
from textcls.cli import app
from textcls.config import TokenizerConfig
from textcls.data.tokenizer import CLS, PAD, SEP, train_tokenizer
from textcls.errors import ConfigError
from textcls.explain import (
    attention_records,
    encoding_words,
    explain_texts,
    explanations_html,
    read_texts,
    word_scores,
    words_from_offsets,
    words_from_tokens,
    write_attention,
    write_html,
)
from textcls.explain.attribution import integrated_gradients
from textcls.model.ensemble import EnsembleClassifier
from textcls.predictor import activation
from textcls.run.load import Run, build_model, load_run
from textcls.train.loop import train

FILLER = "the a cat dog sat ran on under big small red blue house tree river stone went saw with and".split()
KEYWORD = "zebra"


def keyword_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Random filler words; every other row holds the keyword somewhere and is `pos`, the others `neg`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(FILLER, k=rng.randint(4, 9))
        if i % 2 == 0:
            words.insert(rng.randrange(len(words) + 1), KEYWORD)
        rows.append((" ".join(words), "pos" if i % 2 == 0 else "neg"))
    return rows


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("explain")
    train_file = write_tsv(tmp / "train.tsv", keyword_rows(400, 0))
    valid_file = write_tsv(tmp / "valid.tsv", keyword_rows(60, 1))
    cfg = tiny_config(train_file, valid_file, tmp / "run", model={"pooling": "mean"},
                      train={"epochs": 2, "lr": 3e-3, "batch_size": 16})
    result = train(cfg, quiet=True)
    assert result.best_metric == 1.0, "the keyword task is not learned; the explanation tests would mean nothing"
    return tmp / "run"


def held_out_texts(keyword: bool) -> list[str]:
    return [text for text, label in keyword_rows(12, 7) if (label == "pos") == keyword]


# --------------------------------------------------------------------------- whole words


def test_wordpiece_pieces_average_into_their_word():
    tokens = ["un", "##believ", "##able", "mat", "##s", ","]
    text, words = words_from_tokens(tokens)
    assert [w.text for w in words] == ["unbelievable", "mats", ","]
    assert [w.tokens for w in words] == [[0, 1, 2], [3, 4], [5]]
    scores = word_scores(np.array([1.0, 2.0, 6.0, -1.0, 3.0, 0.5]), words)
    np.testing.assert_allclose(scores, [3.0, 1.0, 0.5])


@pytest.mark.parametrize("tokens", [["Ġthe", "Ġzeb", "ra", "Ġmat"], ["▁the", "▁zeb", "ra", "▁mat"],
                                    ["the</w>", "zeb", "ra</w>", "mat</w>"]])
def test_word_start_and_end_markers(tokens):
    _, words = words_from_tokens(tokens)
    assert [(w.text, w.tokens) for w in words] == [("the", [0]), ("zebra", [1, 2]), ("mat", [3])]


def test_each_cjk_character_is_a_word_even_inside_one_token():
    text = "我爱北京 ok"
    # a learned piece "北京" spans two characters: it counts for both
    offsets = [(0, 1), (1, 2), (2, 4), (5, 7)]
    words = words_from_offsets(text, offsets)
    assert [(w.text, w.tokens) for w in words] == [("我", [0]), ("爱", [1]), ("北", [2]), ("京", [2]), ("ok", [3])]
    np.testing.assert_allclose(word_scores(np.array([0.1, 0.2, 0.6, -0.4]), words), [0.1, 0.2, 0.6, 0.6, -0.4])
    _, marked = words_from_tokens(["我", "爱", "北京"])
    assert [(w.text, w.tokens) for w in marked] == [("我", [0]), ("爱", [1]), ("北", [2]), ("京", [2])]


def test_words_of_a_real_wordpiece_tokenizer_follow_the_text():
    texts = ["the zebra sat on unbelievable mats", "hello world again zebra"] * 30
    tok = train_tokenizer(texts, TokenizerConfig(type="wordpiece", vocab_size=40, min_frequency=1))
    text = "Unbelievable zebras, 我爱!"
    enc = tok.encode(text, add_special_tokens=False)
    assert len(enc.tokens) > 6  # the small vocabulary splits the words into pieces
    shown, words = encoding_words(text, enc.tokens, enc.offsets)
    assert shown == text
    assert [w.text for w in words] == ["Unbelievable", "zebras", ",", "我", "爱", "!"]
    for w in words:  # each word's pieces spell it (lowercased by the normalizer)
        pieces = [enc.tokens[i].removeprefix("##") for i in w.tokens]
        assert "".join(pieces) in (w.text.lower(), "[UNK]")


# --------------------------------------------------------------------------- attributions


def test_integrated_gradients_puts_the_keyword_on_top(keyword_run):
    run = load_run(keyword_run)
    texts = held_out_texts(keyword=True)
    for e in explain_texts(run, texts, "ig", steps=32):
        assert e.label == "pos" and e.target == "pos"
        words = [w.text for w in e.words]
        assert words[int(np.argmax(e.scores))] == KEYWORD, list(zip(words, e.scores.round(3)))
        assert e.scores[words.index(KEYWORD)] > 0


def test_explaining_the_other_label_turns_the_keyword_against_it(keyword_run):
    run = load_run(keyword_run)
    for e in explain_texts(run, held_out_texts(keyword=True), "ig", label="neg", steps=16):
        assert e.label == "pos" and e.target == "neg"
        words = [w.text for w in e.words]
        assert words[int(np.argmin(e.scores))] == KEYWORD


def test_integrated_gradients_add_up_to_the_probability_change(keyword_run):
    """Completeness: the token scores sum to p(text) - p(baseline), [CLS]/[SEP] kept."""
    run = load_run(keyword_run)
    model, tok = run.model, run.tokenizer
    text = held_out_texts(keyword=True)[0]
    ids = [tok.token_to_id(CLS), *tok.encode(text, add_special_tokens=False).ids, tok.token_to_id(SEP)]
    keep = [True] + [False] * (len(ids) - 2) + [True]
    target = run.labels.index("pos")
    scores = integrated_gradients(model, ids, target, "single", steps=128, keep=keep)
    baseline_ids = [i if k else tok.token_to_id(PAD) for i, k in zip(ids, keep)]
    with torch.no_grad():
        both = torch.tensor([ids, baseline_ids])
        p = activation(model(both, torch.ones_like(both, dtype=torch.bool)), "single")[:, target]
    assert scores[0] == 0 and scores[-1] == 0  # no n-gram embeddings: [CLS] and [SEP] keep their vectors
    assert scores.sum() == pytest.approx(float(p[0] - p[1]), abs=0.01)
    assert float(p[0] - p[1]) > 0.3  # the check is not trivially about two small numbers


def test_integrated_gradients_count_hashed_ngram_embeddings(tmp_path):
    """With hashed n-gram embeddings (the recipe's default for short texts) the scores still add up: the
    n-gram vectors move with the word vectors, from the table's "no n-gram" row. Here the word vectors are
    all zero, so every difference between the text and the baseline comes from the n-grams."""
    cfg = tiny_config(tmp_path / "unused.tsv", None, tmp_path / "run", data={"max_length": 32},
                      model={"pooling": "mean", "embeddings": {"ngram_orders": [2, 3], "ngram_buckets": 64}})
    texts = [text for text, _ in keyword_rows(40, 3)]
    tok = train_tokenizer(texts, cfg.tokenizer)
    torch.manual_seed(0)
    model = build_model(cfg, tok, 2).eval()
    with torch.no_grad():  # far from the tiny init and without biases, so the input decides the output
        for name, q in model.named_parameters():
            if name.endswith("bias"):
                q.zero_()
            elif "norm" not in name:
                q.normal_(0.0, 0.3)
        model.embeddings.word.weight.zero_()
    ids = [tok.token_to_id(CLS), *tok.encode(texts[0], add_special_tokens=False).ids, tok.token_to_id(SEP)]
    keep = [True] + [False] * (len(ids) - 2) + [True]
    baseline_ids = [i if k else tok.token_to_id(PAD) for i, k in zip(ids, keep)]
    with torch.no_grad():
        both = torch.tensor([ids, baseline_ids])
        p = activation(model(both, torch.ones_like(both, dtype=torch.bool)), "single")[:, 1]
    scores = integrated_gradients(model, ids, 1, "single", steps=64, keep=keep)
    assert abs(float(p[0] - p[1])) > 0.1  # the n-grams move the prediction
    assert scores.sum() == pytest.approx(float(p[0] - p[1]), abs=5e-3)


def test_attention_rollout_favours_the_keyword(keyword_run):
    run = load_run(keyword_run)
    for e in explain_texts(run, held_out_texts(keyword=True), "attention"):
        assert (e.scores >= 0).all()
        assert [w.text for w in e.words][int(np.argmax(e.scores))] == KEYWORD


def test_ensemble_scores_are_the_mean_of_the_members(keyword_run):
    run = load_run(keyword_run)
    other = copy.deepcopy(run.model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    texts = held_out_texts(keyword=True)[:2]
    alone = [explain_texts(Run(run.path, run.cfg, run.tokenizer, run.labels, m), texts, "ig", "pos", 8)
             for m in (run.model, other)]
    ensemble = Run(run.path, run.cfg, run.tokenizer, run.labels,
                   EnsembleClassifier([run.model, other], run.cfg.data.task).eval())
    for i, e in enumerate(explain_texts(ensemble, texts, "ig", "pos", 8)):
        np.testing.assert_allclose(e.scores, (alone[0][i].scores + alone[1][i].scores) / 2, rtol=1e-4, atol=1e-7)


def test_bad_options_are_config_errors(keyword_run):
    run = load_run(keyword_run)
    with pytest.raises(ConfigError, match="--method"):
        explain_texts(run, ["a zebra"], "lime")
    with pytest.raises(ConfigError, match="--label 'maybe'"):
        explain_texts(run, ["a zebra"], label="maybe")


# --------------------------------------------------------------------------- outputs


def test_html_page_is_self_contained_and_holds_the_words(keyword_run, tmp_path):
    run = load_run(keyword_run)
    texts = ["the <b>cat</b> & a zebra", *held_out_texts(keyword=False)[:1]]
    explanations = explain_texts(run, texts, "ig", steps=8)
    path = tmp_path / "out.html"
    write_html(path, explanations, "ig")
    page = path.read_text(encoding="utf-8")
    assert page == explanations_html(explanations, "ig")
    assert page.startswith("<!doctype html>") and "<style>" in page
    assert "http" not in page and "<script" not in page and "<link" not in page  # nothing fetched
    assert "&lt;</span>" in page and "<b>" not in page and "&amp;" in page  # the text is escaped
    assert f">{KEYWORD}</span>" in page
    for w in explanations[1].words:
        assert f">{w.text}</span>" in page
    assert [p.name for p in tmp_path.iterdir()] == ["out.html"]  # no temp file left


def test_attention_dump_shapes(keyword_run, tmp_path):
    run = load_run(keyword_run)
    texts = ["a zebra sat", "the big red house on the river"]
    records = attention_records(run, texts)
    cfg = run.cfg.model
    for text, r in zip(texts, records):
        n = len(run.tokenizer.encode(text, add_special_tokens=False).ids) + 2
        assert r["tokens"][0] == CLS and r["tokens"][-1] == SEP and len(r["tokens"]) == n
        assert r["attention"].shape == (1, cfg.num_layers, cfg.num_heads, n, n)
        np.testing.assert_allclose(r["attention"].sum(-1), 1.0, atol=1e-5)  # rows are distributions
    write_attention(tmp_path / "a.npz", records)
    with np.load(tmp_path / "a.npz") as npz:
        assert npz["attention_1"].shape == records[1]["attention"].shape
        assert list(npz["tokens_0"]) == records[0]["tokens"] and str(npz["text_1"]) == texts[1]
    write_attention(tmp_path / "a.json", records)
    rows = json.loads((tmp_path / "a.json").read_text())
    assert np.array(rows[0]["attention"]).shape == tuple(rows[0]["shape"]) == records[0]["attention"].shape
    with pytest.raises(ConfigError, match=".npz or .json"):
        write_attention(tmp_path / "a.txt", records)


def test_read_texts_from_a_file_or_the_argument(keyword_run, tmp_path):
    run = load_run(keyword_run)
    lines = tmp_path / "texts.txt"
    lines.write_text("a zebra\n\nthe cat sat\n", encoding="utf-8")
    assert read_texts(str(lines), run.cfg.data) == ["a zebra", "the cat sat"]
    data = write_tsv(tmp_path / "rows.tsv", [("a zebra ran", "pos"), ("the dog", "neg")])
    assert read_texts(str(data), run.cfg.data) == ["a zebra ran", "the dog"]
    assert read_texts("no such file, just a text", run.cfg.data) == ["no such file, just a text"]


def test_cli_explain(keyword_run, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("the dog saw a zebra on the river\nthe cat sat\n", encoding="utf-8")
    html, dump = tmp_path / "page.html", tmp_path / "att.npz"
    result = CliRunner().invoke(app, ["explain", str(keyword_run), str(texts), "--steps", "8", "--html", str(html),
                                      "--attention", str(dump)])
    assert result.exit_code == 0, result.output
    assert "1. pos" in result.output and "2. neg" in result.output
    assert f"top: {KEYWORD} +" in result.output
    assert html.exists() and dump.exists()
    piped = CliRunner().invoke(app, ["explain", str(keyword_run), "-", "--steps", "4"], input="a zebra ran\n")
    assert piped.exit_code == 0 and "1. pos" in piped.output and "2." not in piped.output
    bad = CliRunner().invoke(app, ["explain", str(keyword_run), "a zebra", "--method", "shap"])
    assert bad.exit_code == 2 and "--method" in bad.output


def test_a_segmenting_tokenizer_is_explained_on_the_text_as_written():
    from textcls.explain.explainer import uncut_offsets

    text = "我爱北京 ok"
    cut = "我 爱 北京   ok"  # rjieba's words joined by spaces, the text's own space one of them
    offsets = [(0, 1), (2, 3), (4, 6), (9, 11)]  # 我 爱 北京 ok in the cut text
    assert uncut_offsets(text, cut, offsets) == [(0, 1), (1, 2), (2, 4), (5, 7)]
    words = words_from_offsets(text, uncut_offsets(text, cut, offsets))
    assert [(w.text, w.tokens) for w in words] == [("我", [0]), ("爱", [1]), ("北", [2]), ("京", [2]), ("ok", [3])]


# --------------------------------------------------------------------------- imported bases


@pytest.mark.parametrize("kind", ["albert", "bert"])
def test_imported_huggingface_runs_are_explained_by_whole_words(kind, tmp_path):
    hf_import = pytest.importorskip("test_hf_import")  # its tiny random ALBERT/BERT and their tokenizers
    transformers = hf_import.transformers
    from textcls.run.bases import import_hf

    if kind == "albert":
        hf = hf_import.albert(cls=transformers.AlbertForSequenceClassification, num_labels=2)
        hf.save_pretrained(tmp_path / "hf")
        hf_import.write_sentencepiece_tokenizer(tmp_path / "hf" / "tokenizer.json")  # ▁-marked unigram pieces
    else:
        hf = hf_import.bert(cls=transformers.BertForSequenceClassification, num_labels=2)
        hf.save_pretrained(tmp_path / "hf")
        hf_import.write_tokenizer(tmp_path / "hf" / "tokenizer.json")  # wordpiece with ##
    import_hf(tmp_path / "hf", tmp_path / "run")
    run = load_run(tmp_path / "run")
    text = "The movie was great, the plots good!"
    for method in ("ig", "attention"):
        (e,) = explain_texts(run, [text], method, steps=8)
        assert [w.text for w in e.words] == ["The", "movie", "was", "great", ",", "the", "plots", "good", "!"]
        assert np.isfinite(e.scores).all() and np.abs(e.scores).max() > 0
    records = attention_records(run, [text])
    cfg = run.cfg.model
    assert records[0]["attention"].shape[:3] == (1, cfg.num_layers, cfg.num_heads)
