"""`textcls export --format hf|onnx` and `textcls quantize`.

HF: the exported folder, loaded by `transformers` (AutoTokenizer + AutoModelForSequenceClassification), gives
textcls's probabilities to 1e-4: on models built here for each layout that maps (BERT, ALBERT's sharing and
factorized embeddings), on a run trained through the CLI, and on a run fine-tuned from the real
all-MiniLM-L6-v2. ONNX: onnxruntime, fed by the exported tokenizer.json alone, gives `predict`'s
probabilities. Quantize: the int8 run loads in predict and eval and agrees with the float run.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import sst2_slice, tiny_config, tiny_model, write_tsv
from textcls.cli import app
from textcls.config import config_from_dict
from textcls.errors import CheckpointError
from textcls.model import TextClassifier
from textcls.model.hf_export import to_hf
from textcls.predict import predict_probabilities
from textcls.run.load import load_run
from textcls.train.loop import train

transformers = pytest.importorskip("transformers")

TEXTS = ["a gripping , funny and moving film", "the plot is thin and the acting is worse",
         "not bad at all", "it", "one of the year 's best movies , and a very long sentence about nothing much"]
LABELS = ["neg", "pos", "neutral"]


def build(**model) -> TextClassifier:
    cfg = config_from_dict({"model": {**tiny_model(max_positions=24), **model}, "data": {"max_length": 24}}).model
    torch.manual_seed(0)
    m = TextClassifier(cfg, 40, len(LABELS)).eval()
    with torch.no_grad():  # far from the 0.02 init, so a wrong activation, eps or mapping would show
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    return m


def hf_model(exported):
    config = transformers.AutoConfig.for_model(**exported.config)
    hf = getattr(transformers, exported.architecture)(config).eval()
    missing, unexpected = hf.load_state_dict(exported.state, strict=False)
    assert not unexpected and not [k for k in missing if not k.endswith("position_ids")]
    return hf


def padded_batch(types: bool = True):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 40, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    token_types = torch.zeros_like(ids)
    token_types[0, 6:] = 1 if types else 0
    return ids.masked_fill(mask == 0, 0), mask, token_types


@pytest.mark.parametrize("model,architecture", [
    ({"pooling": "cls_tanh"}, "BertForSequenceClassification"),
    ({"pooling": "cls_tanh", "activation": "gelu_tanh", "type_vocab_size": 0}, "BertForSequenceClassification"),
    ({"pooling": "cls_tanh", "embedding_size": 16, "sharing": {"strategy": "all"}}, "AlbertForSequenceClassification"),
    ({"pooling": "cls_tanh", "num_layers": 4, "activation": "relu",  # E == H: an identity embedding mapping
      "sharing": {"strategy": "sequence", "group_size": 2}}, "AlbertForSequenceClassification"),
    ({"pooling": "cls_tanh", "embedding_size": 16}, "AlbertForSequenceClassification"),  # one group per layer
    ({"pooling": "cls_gelu", "embedding_size": 16}, "ElectraForSequenceClassification"),
    ({"pooling": "cls_gelu", "activation": "silu"}, "ElectraForSequenceClassification"),
    ({"pooling": "cls_relu", "type_vocab_size": 1}, "DistilBertForSequenceClassification"),  # row 0 into positions
])
def test_mapped_models_give_transformers_the_same_logits(model, architecture):
    ours = build(**model)
    exported = to_hf(ours.cfg, ours.state_dict(), LABELS, "single", pad_id=0)
    assert exported.architecture == architecture
    hf = hf_model(exported)
    ids, mask, types = padded_batch(ours.cfg.type_vocab_size > 1)
    with torch.no_grad():
        want = ours(ids, mask.bool(), types)
        extra = {} if exported.config["model_type"] == "distilbert" else {"token_type_ids": types}
        got = hf(input_ids=ids, attention_mask=mask, **extra).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert want.softmax(-1).max() < 0.999  # not saturated: the comparison says something


@pytest.mark.parametrize("kind,extra", [
    ("bert", {}), ("albert", {"embedding_size": 16, "num_hidden_groups": 2}),
    ("roberta", {"type_vocab_size": 1, "pad_token_id": 1, "max_position_embeddings": 26}),
    ("electra", {"embedding_size": 16}), ("distilbert", {}),
])
def test_an_imported_hf_classifier_exports_back_to_the_same_model(kind, extra):
    """HF -> textcls (import) -> HF (export): the same family, the same tensors, the same logits."""
    from textcls.model.hf import convert

    if kind == "distilbert":
        base = {"vocab_size": 40, "dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 48, "dropout": 0.0,
                "attention_dropout": 0.0, "max_position_embeddings": 24}
    else:
        base = {"vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 4 if kind == "albert" else 2,
                "num_attention_heads": 2, "intermediate_size": 48, "max_position_embeddings": 24,
                "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "layer_norm_eps": 1e-7}
    config = transformers.AutoConfig.for_model(kind, **{**base, **extra}, num_labels=3)
    original = randomize(transformers.AutoModelForSequenceClassification.from_config(config))
    conv = convert(original.config.to_dict(), original.state_dict())
    cfg = config_from_dict({"model": conv.model, "data": {"max_length": 20}}).model
    ours = TextClassifier(cfg, 40, 3, pad_id=original.config.pad_token_id or 0)
    ours.load_state_dict(conv.state)
    exported = to_hf(cfg, ours.state_dict(), LABELS, "single", pad_id=original.config.pad_token_id or 0)
    assert exported.config["model_type"] == kind
    assert set(exported.state) == {k for k in original.state_dict() if not k.endswith("position_ids")}
    again = hf_model(exported)
    ids, mask, types = padded_batch(types=kind in ("bert", "albert", "electra"))
    extra_input = {} if kind == "distilbert" else {"token_type_ids": types}
    with torch.no_grad():
        want = original(input_ids=ids, attention_mask=mask, **extra_input).logits
        got = again(input_ids=ids, attention_mask=mask, **extra_input).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


@pytest.mark.parametrize("model,reason", [
    ({"pooling": "mean"}, "pooling is 'mean'"),
    ({"pooling": "cls"}, "pooling is 'cls'.*textcls's `cls_tanh`"),
    ({"pooling": "cls_gelu", "sharing": {"strategy": "all"}}, "only ALBERT's layout"),
    ({"pooling": "cls_relu", "layer_norm_eps": 1e-5}, "DistilBERT's is fixed"),
    ({"pooling": "cls_tanh", "position_offset": 2, "max_positions": 26}, "RoBERTa: padding id 1"),
    ({"pooling": "cls_tanh", "norm": "pre"}, "pre-norm"),
    ({"pooling": "cls_tanh", "position": "sinusoidal"}, "'sinusoidal'"),
    ({"pooling": "cls_tanh", "num_layers": 4, "sharing": {"strategy": "cycle", "num_unique": 2}}, "ALBERT's equal"),
    ({"pooling": "cls_tanh", "sharing": {"strategy": "all", "share": "attention"}}, "shares only the attention"),
    ({"pooling": "cls_tanh", "adapters": {"enabled": True, "size": 4}}, "houlsby adapters"),
    ({"pooling": "cls_tanh", "embeddings": {"ngram_orders": [2], "ngram_buckets": 50}}, "n-gram"),
])
def test_models_that_do_not_map_are_refused_with_the_reason(model, reason):
    ours = build(**model)
    with pytest.raises(CheckpointError, match=reason):
        to_hf(ours.cfg, ours.state_dict(), LABELS, "single", pad_id=0)


# --------------------------------------------------------------------------- runs through the CLI


def trained(sst2_files, out, steps: int = 3, **sections):
    cfg = tiny_config(*sst2_files, out, **sections)
    cfg.train.max_steps, cfg.train.batch_size = steps, 16
    train(cfg, quiet=True)
    return out


def cli_probabilities(run_dir, tmp_path, texts=TEXTS) -> np.ndarray:
    labels = json.loads((run_dir / "labels.json").read_text())
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / "in.txt"), "--top-k", str(len(labels))])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return np.array([[{r["label"]: r["probability"] for r in row["top_k"]}[n] for n in labels] for row in rows])


def transformers_probabilities(folder, texts=TEXTS) -> np.ndarray:
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return hf(**enc).logits.softmax(-1).numpy()


def test_export_hf_of_a_trained_run_loads_in_transformers(sst2_files, tmp_path):
    run_dir = trained(sst2_files, tmp_path / "run", model=tiny_model(pooling="cls_tanh", initializer_range=0.3))
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run_dir), "--format", "hf", "--output", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert "BertForSequenceClassification" in result.output
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and config["architectures"] == ["BertForSequenceClassification"]
    want = cli_probabilities(run_dir, tmp_path)
    got = transformers_probabilities(tmp_path / "hf")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert want.max() < 0.999 and np.ptp(want[:, 0]) > 1e-3  # the texts get different, unsaturated answers
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    run = load_run(run_dir)
    from textcls.data.pipeline import encode_texts
    assert tok(TEXTS)["input_ids"] == encode_texts(run.tokenizer, TEXTS, None, 48)[0]

    again = runner.invoke(app, ["export", str(run_dir), "--format", "hf", "--output", str(tmp_path / "hf")])
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.slow
def test_fine_tuned_minilm_run_predicts_what_transformers_does(sst2_files, tmp_path):
    """Issue 23's target: `predict` on a MiniLM run fine-tuned through textcls gives transformers' probabilities
    on the same weights, to 1e-4 (via `export --format hf`: BertForSequenceClassification)."""
    from test_hf_archs import minilm_zip

    folder = tmp_path / "minilm"
    with zipfile.ZipFile(minilm_zip()) as zf:
        zf.extractall(folder)
    cfg = config_from_dict({
        "data": {"train": str(sst2_files[0]), "valid": str(sst2_files[1]), "text_columns": ["sentence"],
                 "label_column": "label", "max_length": 32},
        "model": {"init_from": str(folder), "pooling": "cls_tanh"},  # BERT's pooler: what HF's head reads
        "train": {"max_steps": 3, "batch_size": 8, "lr": 1e-4, "warmup": 0, "log_every": 1000},
        "output": {"dir": str(tmp_path / "run")}})
    train(cfg, quiet=True)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--output", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 6
    want = cli_probabilities(tmp_path / "run", tmp_path)
    got = transformers_probabilities(tmp_path / "hf")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert np.ptp(want[:, 0]) > 1e-4  # the texts get different answers


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """A tiny run with textcls's defaults (pooling cls), trained enough that its labels mean something; trained
    once for the tests that only read it (its cache is its own: the per-test TEXTCLS_CACHE is not set yet)."""
    base = tmp_path_factory.mktemp("default_run")
    files = write_tsv(base / "train.tsv", sst2_slice(400)), write_tsv(base / "valid.tsv", sst2_slice(100, "dev"))
    cfg = tiny_config(*files, base / "run", train={"epochs": 3, "lr": 3e-3}, data={"cache_dir": str(base / "cache")})
    train(cfg, quiet=True)
    return base / "run"


def test_onnx_export_matches_predict_through_onnxruntime(default_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from tokenizers import Tokenizer

    runner = CliRunner()
    hf = runner.invoke(app, ["export", str(default_run), "--format", "hf", "--output", str(tmp_path / "hf")])
    said = " ".join(hf.output.split())
    assert hf.exit_code == 2 and "config.yaml: this model cannot" in said and "pooling is 'cls'" in said
    assert not (tmp_path / "hf").exists()

    target = tmp_path / "onnx" / "model.onnx"
    result = runner.invoke(app, ["export", str(default_run), "--format", "onnx", "--output", str(target)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "matches PyTorch on 64 the run's validation rows" in said
    info = json.loads((target.parent / "textcls_onnx.json").read_text())
    assert info["check"]["max_difference"] <= 1e-4 and info["check"]["rows"] == 64
    assert json.loads((target.parent / "labels.json").read_text()) == ["0", "1"]

    # What a user without textcls does: the tokenizer file and onnxruntime, one text, then a padded batch.
    tok = Tokenizer.from_file(str(target.parent / "tokenizer.json"))
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    want = cli_probabilities(default_run, tmp_path)
    single = tok.encode(TEXTS[0]).ids
    got = session.run(None, {k: v for k, v in {"input_ids": np.array([single]), "attention_mask": np.ones((1, len(
        single)), dtype=np.int64), "token_type_ids": np.zeros((1, len(single)), dtype=np.int64)}.items() if k in names})
    np.testing.assert_allclose(got[0][0], want[0], rtol=0, atol=1e-4)
    tok.enable_padding(pad_id=info["pad_id"])
    enc = tok.encode_batch(TEXTS)
    feed = {"input_ids": np.array([e.ids for e in enc]), "attention_mask": np.array([e.attention_mask for e in enc]),
            "token_type_ids": np.array([e.type_ids for e in enc])}
    got = session.run(["probabilities"], {k: v.astype(np.int64) for k, v in feed.items() if k in names})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert len({int(i) for i in want.argmax(1)}) == 2 or np.ptp(want[:, 0]) > 1e-3


def test_onnx_check_failure_is_an_error_and_writes_nothing(default_run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import textcls.export.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # no difference can pass
    target = tmp_path / "onnx" / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(default_run), "--format", "onnx", "--output", str(target)])
    assert result.exit_code == 2 and "differ from PyTorch's" in result.output
    assert not target.parent.exists() or not any(target.parent.iterdir())


def test_quantized_run_loads_in_predict_and_eval_and_agrees(default_run, tmp_path, sst2_files):
    runner = CliRunner()
    out = tmp_path / "int8"
    result = runner.invoke(app, ["quantize", str(default_run), "--output", str(out)])
    assert result.exit_code == 0, result.output
    for words in ("Linear layers to int8", "accuracy on 100 the run's validation rows", "predict on 100 texts"):
        assert words in " ".join(result.output.split())
    info = json.loads((out / "run.json").read_text())
    assert info["quantized"]["method"] == "dynamic_int8"
    tensors = load_file(str(out / "model.safetensors"))
    assert tensors["encoder.ffn.0.up.weight_int8"].dtype == torch.int8 and "encoder.ffn.0.up.weight" not in tensors

    texts = [line.split("\t")[0] for line in sst2_files[1].read_text().splitlines()[1:]]
    float_probs = predict_probabilities(load_run(default_run), texts)
    int8_probs = predict_probabilities(load_run(out), texts)
    assert np.mean(float_probs.argmax(1) == int8_probs.argmax(1)) >= 0.9
    assert np.ptp(float_probs[:, 0]) > 0.1  # a model that tells texts apart, not a constant answer
    assert np.abs(float_probs - int8_probs).max() > 0  # it is really another model
    np.testing.assert_array_equal(predict_probabilities(load_run(out), texts), int8_probs)  # loads the same way
    # Activations are quantized per batch, so the same batches give the same numbers (6 decimals printed).
    np.testing.assert_allclose(cli_probabilities(out, tmp_path, texts), int8_probs, rtol=0, atol=1e-6)
    evaluated = runner.invoke(app, ["eval", str(out), str(sst2_files[1]), "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output and "accuracy" in evaluated.output

    again = runner.invoke(app, ["quantize", str(out), "--output", str(tmp_path / "int8-again")])
    assert again.exit_code == 2 and "already quantized" in again.output
    onnx = runner.invoke(app, ["export", str(out), "--format", "onnx", "--output", str(tmp_path / "q.onnx")])
    assert onnx.exit_code == 2 and "int8" in onnx.output
    with pytest.raises(CheckpointError, match="CPU only"):
        load_run(out, device=torch.device("cuda"))
    from textcls.run.load import load_full_state
    with pytest.raises(CheckpointError, match="float run it was made from"):  # model.init_from, adapter bases
        load_full_state(out)


def test_an_ensemble_exports_to_onnx_as_its_members_mean(sst2_files, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from tokenizers import Tokenizer

    ensemble = trained(sst2_files, tmp_path / "ens", steps=4, train={"ensemble": 2, "ensemble_workers": 1})
    target = tmp_path / "onnx" / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(ensemble), "--format", "onnx", "--output", str(target)])
    assert result.exit_code == 0, result.output
    tok = Tokenizer.from_file(str(target.parent / "tokenizer.json"))
    tok.enable_padding(pad_id=json.loads((target.parent / "textcls_onnx.json").read_text())["pad_id"])
    enc = tok.encode_batch(TEXTS)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    feed = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
            "token_type_ids": [e.type_ids for e in enc]}
    got = session.run(["probabilities"], {k: np.array(v, dtype=np.int64) for k, v in feed.items() if k in names})[0]
    run = load_run(ensemble)
    np.testing.assert_allclose(got, predict_probabilities(run, TEXTS), rtol=0, atol=1e-4)
    members = [predict_probabilities(load_run(ensemble / "members" / str(k)), TEXTS) for k in (0, 1)]
    np.testing.assert_allclose(got, np.mean(members, 0), rtol=0, atol=1e-4)  # the mean of the members, not one


def test_an_ensemble_quantizes_member_by_member(sst2_files, tmp_path):
    ensemble = trained(sst2_files, tmp_path / "ens", steps=4, train={"ensemble": 2, "ensemble_workers": 1},
                       nblr={"weight": 0.3})
    out = tmp_path / "ens-int8"
    result = CliRunner().invoke(app, ["quantize", str(ensemble), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["quantized"]["method"] == "dynamic_int8"
    for k in (0, 1):
        member = out / "members" / str(k)
        assert json.loads((member / "run.json").read_text())["quantized"]["method"] == "dynamic_int8"
        assert any(t.dtype == torch.int8 for t in load_file(str(member / "model.safetensors")).values())
    texts = [line.split("\t")[0] for line in sst2_files[1].read_text().splitlines()[1:]]
    float_run, int8_run = load_run(ensemble), load_run(out)
    assert int8_run.nblr is not None and len(int8_run.labels) == len(float_run.labels)
    float_probs, int8_probs = predict_probabilities(float_run, texts), predict_probabilities(int8_run, texts)
    assert np.abs(float_probs - int8_probs).max() > 0 and np.mean(float_probs.argmax(1) == int8_probs.argmax(1)) >= 0.9
    again = CliRunner().invoke(app, ["quantize", str(out), "--output", str(tmp_path / "again")])
    assert again.exit_code == 2 and "already quantized" in again.output


@pytest.mark.slow
@pytest.mark.parametrize("model", [
    {"pooling": "mean", "norm": "pre", "position": "sinusoidal"},
    {"pooling": "max", "embeddings": {"ngram_orders": [2, 3], "ngram_buckets": 50}, "type_vocab_size": 0},
    {"pooling": "last", "adapters": {"enabled": True, "style": "side"}, "pool_layers": 2},
    {"pooling": "mean", "padding_free": True},  # exported as the padded forward it equals
])
def test_onnx_exports_layouts_that_hf_cannot_hold(model, tmp_path):
    """What HF refuses still exports to ONNX: the graph is traced from textcls's own forward."""
    ort = pytest.importorskip("onnxruntime")
    from textcls.export.onnx import Probabilities, export_graph

    wrapper = Probabilities(build(**model), "multilabel").eval()
    export_graph(wrapper, tmp_path / "m.onnx", 24)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    for batch, length in ((1, 5), (4, 17)):
        ids = torch.randint(5, 40, (batch, length), generator=torch.Generator().manual_seed(batch))
        mask = torch.ones_like(ids)
        mask[-1, length // 2:] = 0 if batch > 1 else 1
        ids, types = ids.masked_fill(mask == 0, 0), torch.zeros_like(ids)
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                 "token_type_ids": types.numpy()})[0]
        with torch.no_grad():
            want = wrapper(ids, mask, types).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_an_imported_checkpoint_without_data_exports_with_built_texts(tmp_path):
    """import-hf gives a run without data files: the ONNX check builds its texts; the HF export gives back
    the checkpoint's probabilities through AutoTokenizer + AutoModelForSequenceClassification."""
    pytest.importorskip("onnxruntime")
    from test_hf_import import TEXTS as WORDS_TEXTS
    from test_hf_import import bert, write_tokenizer

    original = bert(cls=transformers.BertForSequenceClassification, num_labels=3)
    original.save_pretrained(tmp_path / "hf")
    write_tokenizer(tmp_path / "hf" / "tokenizer.json")
    runner = CliRunner()
    assert runner.invoke(app, ["import-hf", str(tmp_path / "hf"), "--output", str(tmp_path / "run")]).exit_code == 0
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--format", "onnx",
                                 "--output", str(tmp_path / "onnx" / "model.onnx")])
    assert result.exit_code == 0, result.output
    assert "64 texts built from the vocabulary" in " ".join(result.output.split())
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--output", str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    want = cli_probabilities(tmp_path / "run", tmp_path, WORDS_TEXTS)
    np.testing.assert_allclose(transformers_probabilities(tmp_path / "back", WORDS_TEXTS), want, rtol=0, atol=1e-4)
    assert want.max() < 0.99
