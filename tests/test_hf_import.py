"""HF parity: random ALBERT/BERT models built locally from configs (nothing is downloaded) match textcls.

Also `textcls import-hf` -> `textcls predict` gives HF's probabilities, and `train` starts from it.
"""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from typer.testing import CliRunner

from conftest import tiny_config
from textcls.cli import app
from textcls.config import config_from_dict
from textcls.errors import CheckpointError
from textcls.model import TextClassifier
from textcls.model.hf import convert
from textcls.run.bases import import_hf

transformers = pytest.importorskip("transformers")

WORDS = ["the", "movie", "was", "great", "bad", "not", "a", "plot", "##s", "good", "fun", ".", "!", "it", "is",
         "boring", "film", "and", "very", "actor"]
TEXTS = ["The movie was great!", "not good .", "a very boring film and the plot is bad", "Fun", "actors !!"]


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Weights far from HF's init (std 0.02), so a wrong activation or eps would show."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def albert(groups: int = 2, cls=None, **extra):
    cfg = transformers.AlbertConfig(vocab_size=40, embedding_size=16, hidden_size=32, num_hidden_layers=4,
                                    num_hidden_groups=groups, num_attention_heads=4, intermediate_size=48,
                                    max_position_embeddings=24, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0, attn_implementation="eager", **extra)
    return randomize((cls or transformers.AlbertModel)(cfg))


def bert(cls=None, **extra):
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=48, max_position_embeddings=24, layer_norm_eps=1e-7,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                  attn_implementation="eager", **extra)
    return randomize((cls or transformers.BertModel)(cfg))


def textcls_model(hf_model) -> TextClassifier:
    conv = convert(hf_model.config.to_dict(), hf_model.state_dict())
    cfg = config_from_dict({"model": conv.model, "data": {"max_length": 24}}).model
    model = TextClassifier(cfg, 40, len(conv.labels))
    missing, unexpected = model.load_state_dict(conv.state, strict=False)
    assert not unexpected and set(missing) <= {"head.weight", "head.bias"}
    return model.eval()


def padded_batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 40, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    types = torch.zeros_like(ids)
    types[0, 6:] = 1
    return ids.masked_fill(mask == 0, 0), mask, types


@pytest.mark.parametrize("make,sharing", [
    (lambda: albert(groups=2), {"strategy": "sequence", "group_size": 2}),
    (lambda: albert(groups=1), {"strategy": "all"}),
    (lambda: bert(), {"strategy": "none"}),
])
def test_hidden_states_and_pooled_output_match_hf(make, sharing):
    hf = make()
    ours = textcls_model(hf)
    assert ours.cfg.sharing.strategy == sharing["strategy"]
    assert ours.cfg.sharing.group_size == sharing.get("group_size")
    ids, mask, types = padded_batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        out = ours.encode(ids, mask.bool(), types)
        pooled = ours.pooler(out.hidden[-1], mask.bool())
    real = mask.bool()
    torch.testing.assert_close(out.hidden[-1][real], want.last_hidden_state[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(pooled, want.pooler_output, rtol=0, atol=1e-5)


def test_bert_without_pooler_pools_cls():
    hf = transformers.BertModel(bert().config, add_pooling_layer=False)
    ours = textcls_model(randomize(hf))
    assert ours.cfg.pooling == "cls" and "pooler.dense.weight" not in ours.state_dict()
    ids, mask, types = padded_batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = ours.encode(ids, mask.bool(), types).hidden[-1]
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=0, atol=1e-5)


def test_albert_parameters_are_stored_once():
    hf = albert(groups=2)
    ours = textcls_model(hf)
    assert sorted({k.split(".")[2] for k in ours.state_dict() if k.startswith("encoder.")}) == ["0", "1"]
    head = 2 * 32 + 2  # textcls's fresh head; AlbertModel has none
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters()) + head


@pytest.mark.parametrize("make", [lambda: albert(cls=transformers.AlbertForSequenceClassification, num_labels=3),
                                  lambda: bert(cls=transformers.BertForSequenceClassification, num_labels=3)])
def test_sequence_classification_logits_match_hf(make):
    hf = make()
    ours = textcls_model(hf)
    assert ours.cfg.pooling == "cls_tanh"
    ids, mask, types = padded_batch()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        got = ours(ids, mask.bool(), types)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_refuses_inner_group_num_above_one():
    hf = albert(groups=2)
    cfg = {**hf.config.to_dict(), "inner_group_num": 2}
    with pytest.raises(CheckpointError, match="inner_group_num"):
        convert(cfg, hf.state_dict())
    with pytest.raises(CheckpointError, match="model_type"):
        convert({**cfg, "model_type": "gpt2"}, hf.state_dict())


def test_refuses_unknown_tensors():
    hf = bert()
    state = {**hf.state_dict(), "encoder.extra.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match="encoder.extra.weight"):
        convert(hf.config.to_dict(), state)


def write_tokenizer(path) -> Tokenizer:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    clean = Tokenizer.from_str(tok.to_str())
    tok.enable_truncation(4)  # import must clear these: textcls truncates and pads itself
    tok.enable_padding(length=16)
    tok.save(str(path))
    return clean


@pytest.mark.parametrize("kind", ["albert", "bert"])
def test_import_hf_then_predict_gives_hf_probabilities(kind, tmp_path):
    make = {"albert": lambda: albert(cls=transformers.AlbertForSequenceClassification, num_labels=3),
            "bert": lambda: bert(cls=transformers.BertForSequenceClassification, num_labels=3)}[kind]
    hf = make()
    hf.config.id2label = {0: "neg", 1: "neu", 2: "pos"}
    hf.config.label2id = {"neg": 0, "neu": 1, "pos": 2}
    hf_dir = tmp_path / "hf"
    hf.save_pretrained(hf_dir)
    clean = write_tokenizer(hf_dir / "tokenizer.json")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=clean, pad_token="[PAD]")
    enc = fast(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = hf(**enc).logits.softmax(-1)

    runner = CliRunner()
    result = runner.invoke(app, ["import-hf", str(hf_dir), "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == ["neg", "neu", "pos"]
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    result = runner.invoke(app, ["predict", str(tmp_path / "run"), str(tmp_path / "in.txt"), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    got = torch.tensor([[{r["label"]: r["probability"] for r in row["top_k"]}[n] for n in ("neg", "neu", "pos")]
                        for row in rows])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert want.max(-1).values.min() < 0.99  # the probabilities say something (not all saturated)


def write_sentencepiece_tokenizer(path) -> Tokenizer:
    """ALBERT's layout: a unigram model with <pad> <unk> [CLS] [SEP] [MASK] at ids 0-4 and ▁-prefixed pieces."""
    pieces = ["▁the", "▁movie", "▁great", "▁not", "▁good", "▁film", "▁", "!", ".", *"abcdefghijklmnopqrstuvwxyz"]
    vocab = [(t, 0.0) for t in ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")]
    vocab += [(p, -1.0 if p.startswith("▁") and len(p) > 1 else -5.0) for p in pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=1))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.add_special_tokens(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"])
    tok.save(str(path))
    return Tokenizer.from_str(tok.to_str())


def test_import_albert_with_a_sentencepiece_tokenizer_gives_hf_probabilities(tmp_path):
    hf = albert(cls=transformers.AlbertForSequenceClassification, num_labels=2)
    hf_dir = tmp_path / "hf"
    hf.save_pretrained(hf_dir)
    clean = write_sentencepiece_tokenizer(hf_dir / "tokenizer.json")
    assert clean.encode("Fun movie").tokens[:2] == ["[CLS]", "▁"]  # pieces below the word level
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=clean, pad_token="<pad>", unk_token="<unk>")
    texts = ["The movie was great!", "not good .", "Fun film", "a bad plot"]  # within 24 positions
    enc = fast(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = hf(**enc).logits.softmax(-1)

    conv = import_hf(hf_dir, tmp_path / "run")
    from textcls.predict import predict_probabilities
    from textcls.run.load import load_run

    run = load_run(tmp_path / "run")
    assert [run.tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    assert run.tokenizer.encode("zebra ?", add_special_tokens=False).ids == \
        clean.encode("zebra ?", add_special_tokens=False).ids  # "?" is the unknown piece in both
    got = torch.from_numpy(predict_probabilities(run, texts))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert conv.labels == ["LABEL_0", "LABEL_1"] and want.max(-1).values.min() < 0.99


def test_import_bin_needs_allow_pickle_and_train_starts_from_import(tmp_path, sst2_files):
    hf = bert()
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps(hf.config.to_dict()))
    torch.save(hf.state_dict(), hf_dir / "pytorch_model.bin")
    write_tokenizer(hf_dir / "tokenizer.json")
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        import_hf(hf_dir, tmp_path / "run")
    runner = CliRunner()
    result = runner.invoke(app, ["import-hf", str(hf_dir), "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--allow-pickle" in result.output
    conv = import_hf(hf_dir, tmp_path / "run", allow_pickle=True)
    assert not conv.has_head and conv.model["pooling"] == "cls_tanh"

    from textcls.run.load import load_run
    from textcls.run.weights import load_weights
    from textcls.train.loop import train

    imported = load_weights(tmp_path / "run" / "model.safetensors")
    cfg = tiny_config(*sst2_files, tmp_path / "ft", model={**conv.model, "init_from": str(tmp_path / "run")},
                      data={"max_length": 20})
    cfg.train.max_steps, cfg.train.lr, cfg.train.batch_size, cfg.train.warmup = 1, 1e-6, 8, 0
    train(cfg, quiet=True)
    tuned = load_run(tmp_path / "ft")
    assert tuned.tokenizer.get_vocab_size() == 25  # the imported tokenizer, not a new one
    for key in ("embeddings.word.weight", "encoder.attention.1.attention.qkv.weight", "pooler.dense.weight"):
        torch.testing.assert_close(tuned.model.state_dict()[key], imported[key], rtol=0, atol=1e-4)
