"""The predictor interface: every classifier is `predict_proba(texts, pairs) -> (N, C)` in label order,
and a mix is a predictor of predictors; predict, eval and the training report go through it."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, sst2_slice, tiny_config, write_tsv
from textcls.data.labels import load_labels
from textcls.data.pipeline import encode_texts, text_splits
from textcls.data.tokenizer import PAD, train_tokenizer
from textcls.evaluation import evaluate_file
from textcls.metrics import report_from_probabilities
from textcls.model.ensemble import EnsembleClassifier
from textcls.model.nblr import fit_nblr_model
from textcls.predict import predict_file, predict_probabilities, predict_windowed
from textcls.predictor import (
    EnsemblePredictor,
    ModelPredictor,
    NblrMix,
    NblrPredictor,
    WeightedMean,
    predict_ids,
    predictor_report,
    run_predictor,
)
from textcls.run.load import GroupedEnsemble, Run, build_model, load_run
from textcls.train.evaluate import evaluate
from textcls.train.nblr import report_with_nblr, validation_report

LABELS = ["0", "1"]


def _cfg(tmp: Path, **tokenizer):
    return tiny_config(tmp / "unused.tsv", None, tmp / "run", tokenizer=tokenizer, data={"max_length": 16})


def _model(cfg, tokenizer, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg, tokenizer, len(LABELS)).eval()


def _nblr_model():
    rows = sst2_slice(200)
    targets = np.eye(2, dtype=np.float32)[[int(y) for _, y in rows]]
    return fit_nblr_model([t for t, _ in rows], None, targets, min_count=1)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Untrained models (random weights: what is tested is how probabilities are combined) on two
    tokenizers: two members sharing a wordpiece tokenizer, one on a word-level tokenizer."""
    tmp = tmp_path_factory.mktemp("predictor")
    corpus = [t for t, _ in sst2_slice(300)]
    cfg = _cfg(tmp)
    word_cfg = _cfg(tmp, type="word")
    wordpiece, word = train_tokenizer(corpus, cfg.tokenizer), train_tokenizer(corpus, word_cfg.tokenizer)
    return {"cfg": cfg, "word_cfg": word_cfg, "wordpiece": wordpiece, "word": word, "tmp": tmp,
            "members": [_model(cfg, wordpiece, 1), _model(cfg, wordpiece, 2)], "other": _model(word_cfg, word, 3),
            "texts": [t for t, _ in sst2_slice(30, "dev")]}


def _single(parts, k: int = 0, **options) -> ModelPredictor:
    return ModelPredictor(parts["members"][k], parts["wordpiece"], parts["cfg"].data, LABELS, **options)


def test_a_weighted_mean_is_the_weighted_mean_of_its_predictors(parts):
    a, b = _single(parts, 0), _single(parts, 1)
    texts = parts["texts"]
    pa, pb = a.predict_proba(texts), b.predict_proba(texts)
    assert pa.shape == (len(texts), 2) and pa.dtype == np.float32 and not np.allclose(pa, pb, atol=1e-3)
    np.testing.assert_allclose(pa.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(WeightedMean([a, b], [1, 3]).predict_proba(texts), 0.25 * pa + 0.75 * pb, atol=1e-6)
    # a mix of mixes is a predictor too
    nested = WeightedMean([WeightedMean([a, b], [1, 1]), b], [2, 1])
    np.testing.assert_allclose(nested.predict_proba(texts), pa / 3 + 2 * pb / 3, atol=1e-6)


def test_the_nblr_mix_takes_its_share_and_reports_its_parts(parts):
    base, texts = _single(parts), parts["texts"]
    nblr = NblrPredictor(_nblr_model(), LABELS)
    mix = NblrMix(base, nblr, 0.3)
    want = 0.7 * base.predict_proba(texts) + 0.3 * nblr.predict_proba(texts)
    np.testing.assert_allclose(mix.predict_proba(texts), want, atol=1e-6)
    gold = np.eye(2, dtype=np.float32)[[int(y) for _, y in sst2_slice(30, "dev")]]
    report = predictor_report(mix, texts, None, gold)
    assert report["accuracy"] == pytest.approx(float((want.argmax(1) == gold.argmax(1)).mean()))
    assert report["nblr"]["weight"] == 0.3
    assert report["nblr"]["accuracy"] == pytest.approx(report_from_probabilities(nblr.predict_proba(texts), gold,
                                                                                  LABELS)["accuracy"])
    assert report["without_nblr"]["accuracy"] == pytest.approx(
        report_from_probabilities(base.predict_proba(texts), gold, LABELS)["accuracy"])
    with pytest.raises(ValueError, match="share"):
        NblrMix(base, nblr, 1.5)
    with pytest.raises(ValueError, match="label set"):
        WeightedMean([base, NblrPredictor(_nblr_model(), ["a", "b"])], [1, 1])


def test_an_ensemble_predictor_is_the_mean_of_its_members(parts):
    texts, cfg = parts["texts"], parts["cfg"]
    ensemble = EnsemblePredictor(EnsembleClassifier(parts["members"]).eval(), parts["wordpiece"], cfg.data, LABELS,
                                 batch_size=7)
    each = [_single(parts, k) for k in range(2)]
    want = np.mean([p.predict_proba(texts) for p in each], 0)
    np.testing.assert_allclose(ensemble.predict_proba(texts), want, atol=1e-6)
    np.testing.assert_allclose(WeightedMean(each, [1, 1]).predict_proba(texts), want, atol=1e-6)
    # the members' mean of each window, averaged over a text's windows
    long = [" ".join(texts[:4]), texts[5]]
    windowed = dataclasses.replace(ensemble, chunk_long=True, stride=3)
    members = [dataclasses.replace(p, chunk_long=True, stride=3).predict_proba(long) for p in each]
    np.testing.assert_allclose(windowed.predict_proba(long), np.mean(members, 0), atol=1e-6)
    with pytest.raises(TypeError, match="EnsembleClassifier"):
        EnsemblePredictor(parts["members"][0], parts["wordpiece"], cfg.data, LABELS)


def _grouped_run(parts, nblr_share=None) -> Run:
    """A run whose members use two tokenizers, as run.load._load_ensemble builds it."""
    cfg, word_cfg = parts["cfg"], parts["word_cfg"]
    groups = [(Run(parts["tmp"], cfg, parts["wordpiece"], LABELS, EnsembleClassifier(parts["members"]).eval()), 2),
              (Run(parts["tmp"], word_cfg, parts["word"], LABELS, EnsembleClassifier([parts["other"]]).eval()), 1)]
    nblr = (_nblr_model(), nblr_share) if nblr_share is not None else None
    return Run(parts["tmp"], cfg, parts["wordpiece"], LABELS, GroupedEnsemble([g.model for g, _ in groups]).eval(),
               groups, nblr)


def _by_hand(model, tokenizer, data, texts) -> np.ndarray:
    """What predict computed before the predictor: tokenize, predict_ids on the logits."""
    ids, _ = encode_texts(tokenizer, texts, None, data.max_length, data.truncation, data.head_tokens)
    return predict_ids(model, ids, None, len(LABELS), 5, tokenizer.token_to_id(PAD))


def test_tokenizer_variant_groups_give_the_member_weighted_mean(parts):
    run, texts = _grouped_run(parts), parts["texts"]
    shared = EnsembleClassifier(parts["members"]).eval()
    want = (2 / 3) * _by_hand(shared, parts["wordpiece"], parts["cfg"].data, texts) + \
        (1 / 3) * _by_hand(parts["other"], parts["word"], parts["word_cfg"].data, texts)
    predictor = run_predictor(run)
    assert isinstance(predictor, WeightedMean) and predictor.weights == pytest.approx([2 / 3, 1 / 3])
    np.testing.assert_allclose(predictor.predict_proba(texts), want, atol=1e-5)
    np.testing.assert_allclose(predict_probabilities(run, texts), want, atol=1e-5)
    with pytest.raises(TypeError, match="per tokenizer group"):  # nothing above called it
        run.model(torch.zeros(1, 3, dtype=torch.long))
    # the NB-LR model is mixed in once, into the groups' mean
    mixed = _grouped_run(parts, 0.4)
    nblr = mixed.nblr[0].probabilities(texts)
    np.testing.assert_allclose(predict_probabilities(mixed, texts), 0.6 * want + 0.4 * nblr, atol=1e-5)
    windows = [predict_windowed(g, texts, stride=4) for g, _ in mixed.groups]
    np.testing.assert_allclose(predict_windowed(mixed, texts, stride=4),
                               0.6 * (2 * windows[0] + windows[1]) / 3 + 0.4 * nblr, atol=1e-5)


def test_predict_file_writes_the_predictors_probabilities(parts, tmp_path):
    run = _grouped_run(parts, 0.25)
    texts = [t for t, _ in sst2_slice(50, offset=1000)]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    predict_file(run, str(path), str(tmp_path / "out.jsonl"), top_k=2, batch_size=4, chunk_size=16)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    want = run_predictor(run, batch_size=64).predict_proba(texts)
    got = np.array([[{i["label"]: i["probability"] for i in row["top_k"]}[label] for label in LABELS] for row in rows])
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_eval_reports_the_predictors_probabilities(parts, tmp_path):
    rows = sst2_slice(40, "dev")
    valid = write_tsv(tmp_path / "valid.tsv", rows + [("a bad line with no label column",)])
    gold = np.eye(2, dtype=np.float32)[[int(y) for _, y in rows]]
    texts = [t for t, _ in rows]
    run = _grouped_run(parts, 0.4)
    run.cfg = dataclasses.replace(run.cfg, data=dataclasses.replace(run.cfg.data, on_bad_lines="skip"))
    report = evaluate_file(run, str(valid), batch_size=8)
    want = predictor_report(run_predictor(run), texts, None, gold)
    assert report == {**want, "file": str(valid), "skipped_lines": [42]}
    probs = predict_probabilities(run, texts)
    assert report["accuracy"] == pytest.approx(float((probs.argmax(1) == gold.argmax(1)).mean()))
    assert report["nblr"]["weight"] == 0.4 and {"accuracy", "macro_f1"} <= report["without_nblr"].keys()
    assert report["loss"] == pytest.approx(float(-np.log(probs[gold == 1]).mean()), rel=1e-4)


def test_eval_loss_from_probabilities_matches_the_loss_of_the_logits(parts, tmp_path, monkeypatch):
    """eval's loss is computed from the probabilities; it is the cross-entropy training reports."""
    from textcls.data.pipeline import tokenize_file

    rows = sst2_slice(40, "dev")
    valid = write_tsv(tmp_path / "valid.tsv", rows)
    model = parts["members"][0]
    run = Run(parts["tmp"], parts["cfg"], parts["wordpiece"], LABELS, model)
    ds, _ = tokenize_file(str(valid), parts["cfg"].data, parts["wordpiece"], LABELS)
    from_logits = evaluate(model, ds, LABELS, 8, torch.device("cpu"), pad_id=parts["wordpiece"].token_to_id(PAD))
    report = evaluate_file(run, str(valid))
    assert report["loss"] == pytest.approx(from_logits["loss"], rel=1e-5)
    assert report["confusion_matrix"] == from_logits["confusion_matrix"]


def test_the_training_report_goes_through_the_predictor(sst2_files, tmp_path):
    """report_with_nblr (what train/loop.py calls) and validation_report (train/ensemble.py) give the
    report training saved."""
    from textcls.train.loop import train

    train_file, valid_file = sst2_files
    out = tmp_path / "run"
    cfg = tiny_config(train_file, valid_file, out, nblr={"weight": 0.5, "min_count": 1}, train={"max_steps": 10})
    train(cfg, quiet=True)
    saved = json.loads((out / "eval_report.json").read_text())
    labels = load_labels(out / "labels.json")
    metric = report_with_nblr(cfg, out, labels, torch.device("cpu"), saved.get("step"))
    again = json.loads((out / "eval_report.json").read_text())
    assert metric == pytest.approx(saved["accuracy"]) == pytest.approx(again["accuracy"])
    assert again.keys() == saved.keys() and again["nblr"] == pytest.approx(saved["nblr"])
    assert again["without_nblr"] == pytest.approx(saved["without_nblr"])
    assert again["confusion_matrix"] == saved["confusion_matrix"]
    # without validation data there is nothing to report (the NB-LR model is still fitted)
    alone = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, valid=None))
    assert validation_report(alone, out, labels, torch.device("cpu")) is None


def test_an_ensembles_validation_report_goes_through_the_predictor(sst2_files, tmp_path):
    from textcls.train.loop import train

    train_file, valid_file = sst2_files
    out = tmp_path / "ens"
    cfg = tiny_config(train_file, valid_file, out, nblr={"weight": 0.3, "min_count": 1},
                      train={"max_steps": 6, "ensemble": 2, "ensemble_variants": [{}, {"tokenizer.type": "word"}]})
    train(cfg, quiet=True)
    saved = json.loads((out / "eval_report.json").read_text())
    run = load_run(out)
    report = validation_report(run.cfg, out, run.labels, torch.device("cpu"), precision="fp32")
    assert report["accuracy"] == pytest.approx(saved["accuracy"]) and report["nblr"]["weight"] == 0.3
    assert report["without_nblr"] == pytest.approx(saved["without_nblr"])
    assert report["confusion_matrix"] == saved["confusion_matrix"]
    assert report["loss"] == pytest.approx(saved["loss"], rel=1e-4)
    valid = text_splits(run.cfg, run.labels)[1]
    np.testing.assert_allclose(report_from_probabilities(predict_probabilities(run, valid.texts), valid.targets,
                                                         run.labels)["accuracy"], report["accuracy"])


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("textcls")}


def test_the_predictor_sits_below_the_run_loader_and_training():
    """Everything textcls.predictor reaches (imports inside functions too) stays clear of the modules
    that use it, so predictors can be built anywhere without an import cycle."""
    def source(module: str):
        base = ROOT / Path(*module.split("."))
        return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)

    seen, todo = set(), ["textcls.predictor"]
    while todo:
        module = todo.pop()
        path = source(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        todo.extend(_imports(path))
    above = {"textcls.run.load", "textcls.predict", "textcls.evaluation", "textcls.cli", "textcls.train.loop",
             "textcls.train.nblr", "textcls.train.ensemble", "textcls.run"}
    assert not seen & above, sorted(seen & above)
