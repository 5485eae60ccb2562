"""`nblr:`: the bag-of-n-grams model (NB-weighted logistic regression) fitted beside the transformer(s)
and mixed into their probabilities in training's report, `eval` and `predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import DATA, run_cli, tiny_config, write_tsv
from textcls.config import config_from_dict
from textcls.data.pipeline import fold_text_splits, prepare_data, text_splits
from textcls.errors import CheckpointError, ConfigError
from textcls.evaluation import evaluate_file
from textcls.model.nblr import (
    _bags,
    bag_sizes,
    build_vocab,
    char_ngrams,
    document_ngrams,
    fit_nblr_model,
    nb_ratios,
    ngrams,
    unit_scales,
    units,
)
from textcls.predict import predict_probabilities
from textcls.run.load import load_run
from textcls.run.members import read_ensemble
from textcls.run.nblr import load_nblr_model, save_nblr_model
from textcls.train.loop import train


def chn_rows(n: int, split: str = "train", offset: int = 0) -> list[tuple[str, str]]:
    header, *lines = (DATA / "chnsenticorp" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    text, label = header.split("\t").index("text_a"), header.split("\t").index("label")
    return [(f[text], f[label]) for f in (line.split("\t") for line in lines[offset:offset + n])]


def one_hot(labels: list[int], num: int) -> np.ndarray:
    return np.eye(num, dtype=np.float32)[labels]


def test_units_split_words_symbols_and_each_cjk_character():
    assert units("Don't STOP, 很好吃!") == ["don", "'", "t", "stop", ",", "很", "好", "吃", "!"]
    assert units("Ｆｕｌｌ width", lowercase=False) == ["Full", "width"]  # NFKC first
    assert ngrams("a b c", 2) == {"a", "b", "c", "a b", "b c"}
    assert ngrams("很好吃", 3) == {"很", "好", "吃", "很 好", "好 吃", "很 好 吃"}
    pair = document_ngrams("good", "good", 1, True)
    assert len(pair) == 2 and "good" in pair  # the second text's n-grams are features of their own


def test_character_ngrams_are_marked_pieces_of_each_word_of_letters():
    assert char_ngrams("film", 3, 4) == ["<fi", "fil", "ilm", "lm>", "<fil", "film", "ilm>"]
    assert char_ngrams("ok", 3, 5) == ["<ok", "ok>"]  # never the whole "<ok>": the word is a feature already
    grams = ngrams("A film, 2005 很", 1, chars=(3, 3))
    pieces = {g for g in grams if g.startswith("\x1e")}
    assert pieces == {"\x1e" + g for g in ["<fi", "fil", "ilm", "lm>"]}  # not "a", "2005", "很" or ","
    assert {"a", "film", ",", "2005", "很"} <= grams and ngrams("A film, 2005 很", 1) == grams - pieces
    pair = document_ngrams("film", "film", 1, True, (3, 3))
    assert len(pair) == 2 * 5  # the second text's pieces are features of their own too


def test_character_ngrams_carry_a_label_to_words_never_seen_in_training():
    texts = ["terrible", "terribly dull", "horrible", "horribly slow", "wonderful", "wonderfully fresh",
             "delightful", "delightfully warm"] * 3
    targets = one_hot([0, 0, 0, 0, 1, 1, 1, 1] * 3, 2)
    unseen = ["terribleness", "wonderfulness", "horribleness", "delightfulness"]
    words = fit_nblr_model(texts, None, targets, min_count=1, normalize=True, c=10.0)
    np.testing.assert_allclose(words.probabilities(unseen), 0.5, atol=1e-6)  # no known n-gram: the prior
    pieces = fit_nblr_model(texts, None, targets, min_count=1, normalize=True, c=10.0, chars=(3, 5))
    probs = pieces.probabilities(unseen)
    assert list(probs.argmax(1)) == [0, 1, 0, 1] and probs.max(1).min() > 0.6
    assert pieces.probabilities(texts[:8]).argmax(1).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_vocabulary_keeps_frequent_ngrams_and_breaks_ties_by_string():
    docs = [{"a", "b", "c"}, {"a", "b", "d"}, {"a", "c"}, {"e"}]
    assert build_vocab(docs, min_count=2, max_features=10) == ["a", "b", "c"]
    assert build_vocab(docs, min_count=1, max_features=2) == ["a", "b"]  # a: 3; b, c: 2 -> b by string order
    assert build_vocab(docs, min_count=1, max_features=10) == ["a", "b", "c", "d", "e"]


def test_nb_ratios_are_the_log_count_ratios_of_each_class_against_the_rest():
    docs = [{"good"}, {"good", "film"}, {"bad", "film"}]
    index = {g: i for i, g in enumerate(build_vocab(docs, 1, 10))}  # bad, film, good
    flat, offsets = _bags(docs, index)
    r = nb_ratios(flat, offsets, torch.tensor(one_hot([1, 1, 0], 2)), len(index))
    # class 1 (docs 0, 1): p = 1 + (0, 1, 2) = (1, 2, 3), q = 1 + (1, 1, 0) = (2, 2, 1)
    p, q = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 1.0])
    torch.testing.assert_close(r[:, 1], torch.log(p / p.sum()) - torch.log(q / q.sum()))
    torch.testing.assert_close(r[:, 0], -r[:, 1])  # two classes: each is the other's rest
    assert r[index["good"], 1] > 0 > r[index["bad"], 1]


def objective_gradients(model, texts: list[str], labels: list[int], c: float, scales=None):
    """The gradients of fit_nblr_model's objective at the fitted model, over U (W = ratios * U) and the bias:
    both vanish at the optimum."""
    flat, offsets = _bags([document_ngrams(t, None, 3, True) for t in texts], model.index)
    ratios = nb_ratios(flat, offsets, torch.tensor(one_hot(labels, 2)), len(model.vocab))
    u = torch.where(ratios != 0, model.weight / ratios, 0.0).requires_grad_(True)
    b = model.bias.clone().requires_grad_(True)
    z = F.embedding_bag(flat, u * ratios, offsets, mode="sum", per_sample_weights=scales) + b
    loss = F.cross_entropy(z, torch.tensor(labels)) + (u * u).sum() / (2 * c * len(texts))
    loss.backward()
    return u.grad, b.grad


def test_fit_reaches_the_optimum_of_its_objective_and_classifies_real_reviews():
    train_rows, dev_rows = chn_rows(1500), chn_rows(300, "dev")
    texts, labels = [t for t, _ in train_rows], [int(y) for _, y in train_rows]
    model = fit_nblr_model(texts, None, one_hot(labels, 2), c=1.0)
    u, b = objective_gradients(model, texts, labels, c=1.0)
    assert u.abs().max() < 1e-3 and b.abs().max() < 1e-3
    gold = np.array([int(y) for _, y in dev_rows])
    probs = model.probabilities([t for t, _ in dev_rows])
    assert probs.shape == (300, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == gold).mean() > 0.85  # majority class: about 0.5


def test_normalized_fit_scales_each_text_to_unit_length_and_reaches_its_optimum():
    train_rows = chn_rows(600)
    texts, labels = [t for t, _ in train_rows], [int(y) for _, y in train_rows]
    model = fit_nblr_model(texts, None, one_hot(labels, 2), c=10.0, normalize=True)
    docs = [document_ngrams(t, None, 3, True) for t in texts]
    flat, offsets = _bags(docs, model.index)
    scales = unit_scales(flat, offsets)
    # each text's scaled binary vector has unit length
    norms = torch.zeros(len(texts)).index_add_(0, torch.repeat_interleave(
        torch.arange(len(texts)), bag_sizes(flat, offsets)), scales ** 2)
    torch.testing.assert_close(norms, torch.ones(len(texts)))
    u, b = objective_gradients(model, texts, labels, c=10.0, scales=scales)
    assert u.abs().max() < 1e-3 and b.abs().max() < 1e-3
    # a text's logits are its n-grams' weights summed and divided by the square root of their number
    text = texts[0]
    known = [model.index[g] for g in document_ngrams(text, None, 3, True) if g in model.index]
    expected = model.weight[known].sum(0) / len(known) ** 0.5 + model.bias
    torch.testing.assert_close(model.logits([text])[0], expected)
    plain = fit_nblr_model(texts, None, one_hot(labels, 2), c=10.0)
    assert not torch.allclose(plain.logits([text]), model.logits([text]))


def test_multiclass_and_multilabel_fits():
    rng = np.random.default_rng(0)
    words = ["sun", "rain", "snow"]
    texts, single, multi = [], [], []
    for _ in range(120):
        present = [w for w in words if rng.random() < 0.5] or ["sun"]
        filler = " ".join(rng.choice(["the", "a", "day", "was", "cold"], 4))
        texts.append(f"{filler} {' and '.join(present)}")
        single.append(words.index(present[0]))
        multi.append([float(w in present) for w in words])
    model = fit_nblr_model(texts, None, one_hot(single, 3), min_count=1)
    assert (model.probabilities(texts).argmax(1) == np.array(single)).mean() > 0.95
    multilabel = fit_nblr_model(texts, None, np.array(multi, dtype=np.float32), task="multilabel", min_count=1)
    probs = multilabel.probabilities(texts)
    assert not np.allclose(probs.sum(1), 1) and ((probs > 0.5) == np.array(multi, bool)).all()


def test_saved_model_loads_to_the_same_probabilities_and_damage_is_refused(tmp_path):
    texts = ["great fun", "great film", "dull film", "dull and long"] * 3
    model = fit_nblr_model(texts, None, one_hot([1, 1, 0, 0] * 3, 2), min_count=1)
    save_nblr_model(model, tmp_path, 0.25, {"accuracy": 1.0})
    loaded, share = load_nblr_model(tmp_path, 2)
    assert share == 0.25 and loaded.vocab == model.vocab
    texts = ["great", "dull film"]
    np.testing.assert_array_equal(loaded.probabilities(texts), model.probabilities(texts))
    normalized = fit_nblr_model(texts * 6, None, one_hot([1, 0] * 6, 2), min_count=1, normalize=True)
    save_nblr_model(normalized, tmp_path, 0.5)
    loaded, _ = load_nblr_model(tmp_path, 2)
    assert loaded.normalize
    np.testing.assert_array_equal(loaded.probabilities(["dull film", "great"]),
                                  normalized.probabilities(["dull film", "great"]))
    info = json.loads((tmp_path / "nblr.json").read_text(encoding="utf-8"))
    del info["normalize"]  # a run written before the option
    (tmp_path / "nblr.json").write_text(json.dumps(info), encoding="utf-8")
    assert not load_nblr_model(tmp_path, 2)[0].normalize and load_nblr_model(tmp_path, 2)[0].chars is None
    pieces = fit_nblr_model(texts * 6, None, one_hot([1, 0] * 6, 2), min_count=1, chars=(3, 4))
    save_nblr_model(pieces, tmp_path, 0.5)
    loaded, _ = load_nblr_model(tmp_path, 2)
    assert loaded.chars == (3, 4) and any(g.startswith("\x1e") for g in loaded.vocab)
    np.testing.assert_array_equal(loaded.probabilities(["dullest", "greatest"]),
                                  pieces.probabilities(["dullest", "greatest"]))
    with pytest.raises(CheckpointError, match="labels"):
        load_nblr_model(tmp_path, 3)
    weights = tmp_path / "nblr.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="checksum"):
        load_nblr_model(tmp_path, 2)
    (tmp_path / "nblr.json").write_text("{", encoding="utf-8")
    with pytest.raises(CheckpointError, match="nblr.json cannot be read"):
        load_nblr_model(tmp_path, 2)


def test_text_rows_line_up_with_the_tokenized_splits(tmp_path):
    """The NB-LR model's rows are the tokenized splits' rows, also for a held-out fraction."""
    train_file = write_tsv(tmp_path / "train.tsv", chn_rows(300), header=("text_a", "label"))
    cfg = tiny_config(train_file, None, tmp_path / "out", data={"text_columns": ["text_a"], "valid_fraction": 0.2})
    data = prepare_data(cfg)
    train_rows, valid_rows = text_splits(cfg, data.labels)
    assert len(train_rows.texts) == len(data.train) and len(valid_rows.texts) == len(data.valid) == 60
    assert list(train_rows.targets.argmax(1)) == list(data.train["label"])
    assert list(valid_rows.targets.argmax(1)) == list(data.valid["label"])


def mixed_by_hand(run, texts) -> np.ndarray:
    model, share = run.nblr
    run.nblr = None
    transformer = predict_probabilities(run, texts)
    run.nblr = (model, share)
    return (1 - share) * transformer + share * model.probabilities(texts)


def test_a_single_run_mixes_the_nblr_model_into_its_report_eval_and_predict(tmp_path):
    rows, dev = chn_rows(600), chn_rows(150, "dev")
    train_file = write_tsv(tmp_path / "train.tsv", rows, header=("text_a", "label"))
    valid_file = write_tsv(tmp_path / "valid.tsv", dev, header=("text_a", "label"))
    out = tmp_path / "run"
    cfg = tiny_config(train_file, valid_file, out, data={"text_columns": ["text_a"], "label_column": "label"},
                      nblr={"weight": 0.5})
    result = train(cfg, quiet=True)
    assert (out / "nblr.safetensors").is_file() and (out / "nblr.json").is_file()
    report = json.loads((out / "eval_report.json").read_text())
    assert report["nblr"]["weight"] == 0.5 and "accuracy" in report["without_nblr"]
    run = load_run(out)
    texts, gold = [t for t, _ in dev], np.array([int(y) for _, y in dev])
    want = mixed_by_hand(run, texts)
    np.testing.assert_allclose(predict_probabilities(run, texts), want, atol=1e-6)
    accuracy = float((want.argmax(1) == gold).mean())
    assert report["accuracy"] == pytest.approx(accuracy) == pytest.approx(result.best_metric)
    assert evaluate_file(run, str(valid_file))["accuracy"] == pytest.approx(accuracy)
    # the tiny transformer is near chance on 600 reviews; the NB-LR model is not, and the mix shows it
    assert report["accuracy"] > report["without_nblr"]["accuracy"] + 0.05
    # a run without one replaces it: no stale NB-LR model is left to be mixed into the new run
    cfg = tiny_config(train_file, valid_file, out, data={"text_columns": ["text_a"], "label_column": "label"},
                      output={"overwrite": True})
    train(cfg, quiet=True)
    assert not (out / "nblr.json").exists() and not (out / "nblr.safetensors").exists()
    assert load_run(out).nblr is None and "nblr" not in json.loads((out / "eval_report.json").read_text())


def test_rows_held_out_choose_the_share_then_the_model_saved_learns_them_too(tmp_path):
    """With `data.valid_fraction`, the share and the report come from the model fitted without the held-out rows;
    the model saved (what eval and predict mix in) is fitted on all the rows. With a validation file it is not."""
    rows = chn_rows(300)
    train_file = write_tsv(tmp_path / "train.tsv", rows, header=("text_a", "label"))
    data = {"text_columns": ["text_a"], "label_column": "label"}
    cfg = tiny_config(train_file, None, tmp_path / "held", data={**data, "valid_fraction": 0.2},
                      nblr={"weight": 0.5, "choose_weight": True, "min_count": 1})
    train(cfg, quiet=True)
    saved, share = load_nblr_model(tmp_path / "held", 2)
    part, valid = text_splits(cfg, ["0", "1"])
    assert len(part.texts) == 240 and share in (0.0, 0.3, 0.5, 0.7, 1.0)
    all_rows, _ = fold_text_splits(cfg, ["0", "1"], ())
    assert len(all_rows.texts) == 300
    everything = fit_nblr_model(all_rows.texts, None, all_rows.targets, min_count=1)
    assert saved.vocab == everything.vocab
    torch.testing.assert_close(saved.weight, everything.weight)
    without = fit_nblr_model(part.texts, None, part.targets, min_count=1)
    alone = float((without.probabilities(valid.texts).argmax(1) == valid.targets.argmax(1)).mean())
    report = json.loads((tmp_path / "held" / "eval_report.json").read_text())
    assert report["nblr"]["accuracy"] == pytest.approx(alone) and report["nblr"]["weight"] == share
    valid_file = write_tsv(tmp_path / "valid.tsv", chn_rows(60, "dev"), header=("text_a", "label"))
    train(tiny_config(train_file, valid_file, tmp_path / "file", data=data, nblr={"weight": 0.5, "min_count": 1}),
          quiet=True)
    assert load_nblr_model(tmp_path / "file", 2)[0].vocab == everything.vocab  # the training file's rows alone


def test_an_ensemble_with_several_tokenizers_mixes_the_nblr_model_once(sst2_files, tmp_path):
    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, valid_file, out, nblr={"weight": 0.3, "min_count": 1},
                      train={"ensemble": 2, "ensemble_variants": [{}, {"tokenizer.type": "bpe"}]})
    result = train(cfg, quiet=True)
    info = read_ensemble(out)
    run = load_run(out)
    assert run.groups and all(group.nblr is None for group, _ in run.groups) and run.nblr[1] == 0.3
    assert not any((out / m / "nblr.json").exists() for m in info["members"])  # fitted once, not per member
    texts = [line.rsplit("\t", 1)[0] for line in valid_file.read_text().splitlines()[1:]]
    gold = np.array([int(line.rsplit("\t", 1)[1]) for line in valid_file.read_text().splitlines()[1:]])
    want = mixed_by_hand(run, texts)
    np.testing.assert_allclose(predict_probabilities(run, texts), want, atol=1e-6)
    assert info["valid"]["accuracy"] == pytest.approx(float((want.argmax(1) == gold).mean()))
    assert result.best_metric == pytest.approx(info["valid"]["accuracy"])
    report = evaluate_file(run, str(valid_file))
    assert report["accuracy"] == pytest.approx(info["valid"]["accuracy"]) and report["nblr"]["weight"] == 0.3


def test_nblr_options_are_checked(tmp_path):
    for key, value in [("weight", 1.5), ("max_order", 0), ("c", 0.0), ("max_order", 9), ("chars", [5, 3]),
                       ("chars", [3]), ("chars", [0, 4])]:
        with pytest.raises(ConfigError, match=f"nblr.{key}"):
            tiny_config(tmp_path / "t.tsv", None, tmp_path / "o", nblr={key: value})
    result = run_cli("train", "--set", "nblr.weight=2", "--set", "nblr.min_cout=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nblr.weight" in result.stderr and "nblr.min_count" in result.stderr  # the typo's suggestion


def test_the_old_section_name_says_what_it_is_called_now(tmp_path):
    with pytest.raises(ConfigError, match=r"the `ngram:` section \(the bag-of-n-grams model\) is now called `nblr:`"):
        config_from_dict({"ngram": {"weight": 0.3}})


def test_a_run_written_before_the_rename_still_loads_its_nblr_model(tmp_path):
    rows = chn_rows(300)
    model = fit_nblr_model([t for t, _ in rows], None, one_hot([int(y) for _, y in rows], 2))
    save_nblr_model(model, tmp_path, 0.3)
    for new, old in (("nblr.json", "ngram.json"), ("nblr.safetensors", "ngram.safetensors")):
        (tmp_path / new).rename(tmp_path / old)
    loaded, share = load_nblr_model(tmp_path, 2)
    assert share == 0.3 and loaded.vocab == model.vocab
    torch.testing.assert_close(loaded.weight, model.weight)


def test_fitting_shows_its_phases_unless_quiet(capsys):
    texts = [t for t, _ in chn_rows(40)]
    targets = one_hot([i % 2 for i in range(40)], 2)
    fit_nblr_model(texts, None, targets, min_count=1)
    assert capsys.readouterr().err == ""  # quiet by default
    model = fit_nblr_model(texts, None, targets, min_count=1, quiet=False)
    lines = capsys.readouterr().err.splitlines()  # in a log: plain lines
    fitting = f"NB-LR fitting (L-BFGS on {len(model.vocab):,} n-grams)"
    assert lines[:3] == ["NB-LR counting n-grams: 40/40 texts", "NB-LR n-gram features: 40/40 texts", f"{fitting} ..."]
    assert lines[3].startswith(f"{fitting}: ") and " iterations in " in lines[3] and len(lines) == 4
