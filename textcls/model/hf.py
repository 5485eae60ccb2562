"""HuggingFace BERT-family checkpoints -> textcls config + state dict, and `textcls import-hf`.

Works from `config.json` dicts and tensors only: `transformers` is never imported here.

Imported `model_type`s: bert (MiniLM included), albert, roberta, xlm-roberta, distilbert and electra
(the discriminator). All are post-norm encoders with learned absolute positions, which is what textcls's
encoder runs; anything else (gpt2, t5, deberta, relative positions, a decoder, an ELECTRA generator) is
refused with a CheckpointError that names it.

Key map (HF -> textcls), after dropping the `bert.` / `albert.` / `roberta.` (also XLM-R) / `distilbert.`
/ `electra.` prefix:
  embeddings.{word,position,token_type}_embeddings  -> embeddings.{word,position,segment}
  embeddings.LayerNorm                              -> embeddings.norm
  ALBERT encoder.embedding_hidden_mapping_in,
  ELECTRA embeddings_project (when E != H)          -> embeddings.project (E -> H)
  query/key/value, DistilBERT q_lin/k_lin/v_lin
    (concatenated in that order)                    -> encoder.attention.{u}.attention.qkv
  attention output dense / LayerNorm (BERT),
  DistilBERT out_lin / sa_layer_norm                -> encoder.attention.{u}.attention.out / .norm
  intermediate dense (BERT) / ffn (ALBERT) / ffn.lin1 (DistilBERT)   -> encoder.ffn.{u}.up
  output dense / LayerNorm (BERT), ffn_output / full_layer_layer_norm (ALBERT),
  ffn.lin2 / output_layer_norm (DistilBERT)         -> encoder.ffn.{u}.down / .norm
  pooler(.dense) (BERT, ALBERT, RoBERTa)            -> pooler.dense, pooling cls_tanh
  RoBERTa/XLM-R classifier.dense                    -> pooler.dense, pooling cls_tanh
  ELECTRA classifier.dense                          -> pooler.dense, pooling cls_gelu
  DistilBERT pre_classifier                         -> pooler.dense, pooling cls_relu
  classifier (BERT, ALBERT, DistilBERT), classifier.out_proj (RoBERTa, ELECTRA)  -> head
  without any of these pooler tensors               -> pooling cls
Dropped: pretraining heads (cls.*, predictions.*, sop_classifier.*, lm_head.*, discriminator_predictions.*,
DistilBERT vocab_*) and position_ids / token_type_ids buffers.

ALBERT's `num_hidden_groups` G becomes sharing `sequence` with group_size L / G (HF runs group
i // (L / G) at depth i); `inner_group_num` must be 1.
RoBERTa / XLM-R count positions from padding_idx + 1 (= 2): `model.position_offset` is pad_token_id + 1,
which reproduces HF on right-padded input (pad positions differ, and nothing reads them). Their
type_vocab_size is 1: the one row is added to every token (textcls's pair token types are ignored).
DistilBERT has no token types (`type_vocab_size` 0). Its `sinusoidal_pos_embds` table is stored in the
checkpoint like a learned one and is imported as learned positions (HF keeps it frozen; textcls trains it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from textcls.errors import CheckpointError, scrub

# A HuggingFace model folder's files (HF's layout, which a textcls run directory's names follow).
HF_CONFIG, HF_TOKENIZER = "config.json", "tokenizer.json"
HF_WEIGHTS, HF_WEIGHTS_INDEX, HF_PICKLE = "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_fast": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}
# model_type -> the prefix of its encoder's tensors in *For* checkpoints
PREFIXES = {"bert": "bert", "albert": "albert", "roberta": "roberta", "xlm-roberta": "roberta",
            "distilbert": "distilbert", "electra": "electra"}
SUPPORTED = ("bert (MiniLM included), albert, roberta, xlm-roberta, distilbert and electra (the discriminator), "
             "each as the bare encoder, its pretraining checkpoint or *ForSequenceClassification")
# The pooling that a checkpoint's dense-on-the-first-token tensors (pooler / classification head) become.
DENSE_POOLING = {"bert": "cls_tanh", "albert": "cls_tanh", "roberta": "cls_tanh", "xlm-roberta": "cls_tanh",
                 "distilbert": "cls_relu", "electra": "cls_gelu"}
IGNORED = re.compile(r"^(cls\.|predictions\.|sop_classifier\.|lm_head\.|discriminator_predictions\.|"
                     r"vocab_(transform|layer_norm|projector)\.|.*position_ids$|.*embeddings\.token_type_ids$)")
# Heads that do not classify a whole sequence: their `classifier` is not a textcls head.
OTHER_HEADS = ("ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice", "ForCausalLM")


@dataclass
class Converted:
    model: dict  # the textcls `model:` section
    state: dict[str, torch.Tensor]  # textcls state dict (the head only when the checkpoint had one)
    labels: list[str]
    task: str  # single | multilabel
    has_head: bool


def _refused(what: str) -> CheckpointError:
    return CheckpointError(
        f"{what}. textcls's encoder is a post-norm transformer with learned absolute positions; it imports "
        f"{SUPPORTED}")


def _sharing(hf: dict) -> dict:
    layers, groups = hf["num_hidden_layers"], hf.get("num_hidden_groups", 1)
    if hf.get("inner_group_num", 1) != 1:
        raise CheckpointError(
            f"ALBERT inner_group_num is {hf['inner_group_num']}; textcls can import only inner_group_num 1 "
            "(one layer per group, as in every released ALBERT)")
    if layers % groups:
        raise CheckpointError(f"ALBERT num_hidden_layers ({layers}) is not a multiple of num_hidden_groups "
                              f"({groups}); textcls shares layers in equal groups only")
    if groups == 1:
        return {"strategy": "all"}
    if groups == layers:
        return {"strategy": "none"}
    return {"strategy": "sequence", "group_size": layers // groups}


def _check_supported(hf: dict) -> str:
    """The model_type, after refusing what textcls cannot express."""
    kind = hf.get("model_type")
    if kind not in PREFIXES:
        raise _refused(f"config.json has model_type {kind!r}, which textcls cannot import")
    for arch in hf.get("architectures") or []:
        if kind == "electra" and arch == "ElectraForMaskedLM":
            raise _refused("this is an ELECTRA generator (ElectraForMaskedLM); import the discriminator instead "
                           "(ElectraForPreTraining, ElectraModel or ElectraForSequenceClassification, e.g. "
                           "google/electra-*-discriminator)")
        if arch.endswith(OTHER_HEADS):
            raise _refused(f"config.json's architecture {arch} has a head textcls cannot import; only sequence "
                           "classification heads are imported (or none)")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise _refused(f"{kind} option position_embedding_type {hf['position_embedding_type']!r} (relative "
                       "positions) is not supported")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise _refused(f"this {kind} is a decoder (is_decoder / add_cross_attention); use an encoder checkpoint")
    return kind


def model_section(hf: dict, has_pooler: bool) -> dict:
    """The textcls `model:` section that reproduces an HF config.json of a supported model_type."""
    kind = _check_supported(hf)
    if kind == "distilbert":  # DistilBertConfig's own names; LayerNorm eps is fixed at 1e-12
        h, act, eps, offset, types = hf["dim"], hf.get("activation", "gelu"), 1e-12, 0, 0
        layers, heads, inter = hf["n_layers"], hf["n_heads"], hf["hidden_dim"]
        hidden_dropout, attention_dropout = hf.get("dropout", 0.1), hf.get("attention_dropout", 0.1)
        head_dropout = hf.get("seq_classif_dropout")
    else:
        h, act, eps = hf["hidden_size"], hf.get("hidden_act", "gelu"), hf.get("layer_norm_eps", 1e-12)
        layers, heads, inter = hf["num_hidden_layers"], hf["num_attention_heads"], hf["intermediate_size"]
        offset = hf.get("pad_token_id", 1) + 1 if kind in ("roberta", "xlm-roberta") else 0
        types = hf.get("type_vocab_size", 2)
        hidden_dropout = hf.get("hidden_dropout_prob", 0.1)
        attention_dropout = hf.get("attention_probs_dropout_prob", hidden_dropout)
        head_dropout = hf.get("classifier_dropout_prob" if kind == "albert" else "classifier_dropout")
    if act not in ACTIVATIONS:
        raise _refused(f"{kind} option activation {act!r} has no textcls equivalent (known: "
                       f"{', '.join(ACTIVATIONS)})")
    e = hf.get("embedding_size", h) if kind in ("albert", "electra") else h
    if kind == "albert" and e == h:
        raise CheckpointError(
            f"this ALBERT has embedding_size == hidden_size ({h}) but still a learned E->H mapping, which "
            "textcls keeps only when they differ; such checkpoints cannot be imported")
    return {
        "hidden_size": h, "num_layers": layers, "num_heads": heads,
        "intermediate_size": inter, "embedding_size": e if e != h else None,
        "max_positions": hf.get("max_position_embeddings", 512), "position": "learned", "position_offset": offset,
        "type_vocab_size": types, "activation": ACTIVATIONS[act], "norm": "post",
        "layer_norm_eps": eps, "dropout": hidden_dropout, "attention_dropout": attention_dropout,
        "classifier_dropout": head_dropout if head_dropout is not None else hidden_dropout,
        "initializer_range": hf.get("initializer_range", 0.02),
        "sharing": _sharing(hf) if kind == "albert" else {"strategy": "none"},
        "pooling": DENSE_POOLING[kind] if has_pooler else "cls",
    }


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop the model's prefix, rename old gamma/beta LayerNorm names, drop pretraining heads."""
    out = {}
    for key, value in state.items():
        key = key[len(prefix) + 1:] if key.startswith(prefix + ".") else key
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))
        if not IGNORED.match(key):
            out[key] = value
    return out


def _layer_maps(kind: str, hf: dict) -> list[tuple[str, str, str]]:
    """(HF layer prefix, textcls attention prefix, textcls FFN prefix) per unique layer."""
    if kind == "albert":
        return [(f"encoder.albert_layer_groups.{g}.albert_layers.0.", f"encoder.attention.{g}.",
                 f"encoder.ffn.{g}.") for g in range(hf.get("num_hidden_groups", 1))]
    if kind == "distilbert":
        return [(f"transformer.layer.{i}.", f"encoder.attention.{i}.", f"encoder.ffn.{i}.")
                for i in range(hf["n_layers"])]
    return [(f"encoder.layer.{i}.", f"encoder.attention.{i}.", f"encoder.ffn.{i}.")
            for i in range(hf["num_hidden_layers"])]


def _names(kind: str) -> dict[str, str]:
    if kind == "albert":
        return {"q": "attention.query", "k": "attention.key", "v": "attention.value", "out": "attention.dense",
                "norm1": "attention.LayerNorm", "up": "ffn", "down": "ffn_output", "norm2": "full_layer_layer_norm"}
    if kind == "distilbert":
        return {"q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin", "out": "attention.out_lin",
                "norm1": "sa_layer_norm", "up": "ffn.lin1", "down": "ffn.lin2", "norm2": "output_layer_norm"}
    return {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
            "out": "attention.output.dense", "norm1": "attention.output.LayerNorm",
            "up": "intermediate.dense", "down": "output.dense", "norm2": "output.LayerNorm"}


# Per model_type: (HF pooler tensors, HF head tensors) in the order they are looked for.
POOLER_HEAD = {"bert": (["pooler.dense"], "classifier"), "albert": (["pooler"], "classifier"),
               "roberta": (["classifier.dense", "pooler.dense"], "classifier.out_proj"),
               "xlm-roberta": (["classifier.dense", "pooler.dense"], "classifier.out_proj"),
               "electra": (["classifier.dense"], "classifier.out_proj"),
               "distilbert": (["pre_classifier"], "classifier")}


def convert_state(hf: dict, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF tensors -> textcls tensors. Raises CheckpointError on missing or unknown keys."""
    kind = _check_supported(hf)
    prefix = PREFIXES[kind]
    if kind == "electra" and any(k.startswith(("generator_predictions.", "generator_lm_head."))
                                 for k in state):
        raise _refused("this is an ELECTRA generator (it has generator_predictions / generator_lm_head "
                       "tensors); import the discriminator instead")
    src = _strip(state, prefix)
    out: dict[str, torch.Tensor] = {}

    def take(hf_key: str, key: str) -> None:
        if hf_key not in src:
            raise CheckpointError(f"the checkpoint has no tensor {hf_key!r} (nor {prefix}.{hf_key}); "
                                  f"is it really a {kind} checkpoint matching its config.json?")
        out[key] = src.pop(hf_key)

    names = [("word_embeddings", "word"), ("position_embeddings", "position")]
    if kind != "distilbert":
        names.append(("token_type_embeddings", "segment"))
    for name, ours in names:
        take(f"embeddings.{name}.weight", f"embeddings.{ours}.weight")
    for p in ("weight", "bias"):
        take(f"embeddings.LayerNorm.{p}", f"embeddings.norm.{p}")
        if kind == "albert":
            take(f"encoder.embedding_hidden_mapping_in.{p}", f"embeddings.project.{p}")
        if kind == "electra" and hf.get("embedding_size", hf["hidden_size"]) != hf["hidden_size"]:
            take(f"embeddings_project.{p}", f"embeddings.project.{p}")
    n = _names(kind)
    for layer, attn, ffn in _layer_maps(kind, hf):
        for p in ("weight", "bias"):
            qkv = [src.pop(f"{layer}{n[x]}.{p}", None) for x in "qkv"]
            if any(t is None for t in qkv):
                raise CheckpointError(f"the checkpoint lacks {layer}{n['q']}/key/value.{p}; "
                                      "it does not match config.json")
            out[f"{attn}attention.qkv.{p}"] = torch.cat(qkv, 0)
            take(f"{layer}{n['out']}.{p}", f"{attn}attention.out.{p}")
            take(f"{layer}{n['norm1']}.{p}", f"{attn}norm.{p}")
            take(f"{layer}{n['up']}.{p}", f"{ffn}up.{p}")
            take(f"{layer}{n['down']}.{p}", f"{ffn}down.{p}")
            take(f"{layer}{n['norm2']}.{p}", f"{ffn}norm.{p}")
    poolers, head = POOLER_HEAD[kind]
    pooler = next((name for name in poolers if f"{name}.weight" in src), None)
    for p in ("weight", "bias"):
        if pooler is not None:
            take(f"{pooler}.{p}", f"pooler.dense.{p}")
        if f"{head}.{p}" in src:
            out[f"head.{p}"] = src.pop(f"{head}.{p}")
    if src:
        raise CheckpointError(f"the checkpoint has tensors textcls cannot place: {sorted(src)[:6]}; only the "
                              f"bare {kind} encoder, its pretraining checkpoint or its *ForSequenceClassification "
                              "can be imported")
    return {k: v.float().contiguous() for k, v in out.items()}


def convert(hf: dict, state: dict[str, torch.Tensor]) -> Converted:
    """An HF config.json dict + state dict -> textcls model section, state dict, labels and task."""
    model = model_section(hf, has_pooler=True)
    ours = convert_state(hf, state)
    if "pooler.dense.weight" not in ours:
        model["pooling"] = "cls"
    has_head = "head.weight" in ours
    id2label = {int(k): str(v) for k, v in (hf.get("id2label") or {}).items()}
    n = ours["head.weight"].shape[0] if has_head else (len(id2label) or 2)
    labels = [id2label.get(i, f"LABEL_{i}") for i in range(n)]
    problem = hf.get("problem_type")
    if problem == "regression" or n < 2:
        raise CheckpointError("a regression head (num_labels 1) cannot be imported; textcls classifies")
    return Converted(model, ours, labels, "multilabel" if problem == "multi_label_classification" else "single",
                     has_head)


# --------------------------------------------------------------------------- checkpoint directories


def read_hf_dir(hf_dir: Path, allow_pickle: bool = False) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json + weights (model.safetensors, its shards, or pytorch_model.bin with allow_pickle)."""
    from safetensors.torch import load_file

    if not hf_dir.is_dir():
        raise CheckpointError(f"{hf_dir} is not a directory; pass a HuggingFace checkpoint folder")
    try:
        hf = json.loads((hf_dir / HF_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{hf_dir} has no config.json; is it a HuggingFace checkpoint folder?") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{hf_dir / 'config.json'} cannot be read ({exc})") from None
    single, index, pickle = hf_dir / HF_WEIGHTS, hf_dir / HF_WEIGHTS_INDEX, hf_dir / HF_PICKLE
    try:
        if single.exists():
            return hf, load_file(str(single))
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return hf, {k: v for s in shards for k, v in load_file(str(hf_dir / s)).items()}
        if pickle.exists():
            if not allow_pickle:
                raise CheckpointError(
                    f"{hf_dir} has only pytorch_model.bin, a pickle file; pass --allow-pickle to read it "
                    "(tensors only, torch.load weights_only=True), or convert it to model.safetensors")
            return hf, torch.load(pickle, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors / unpickler errors
        raise CheckpointError(f"the weights in {hf_dir} cannot be read ({scrub(str(exc))[:400]})") from None
    raise CheckpointError(f"{hf_dir} has no model.safetensors (or pytorch_model.bin); nothing to import")


# SentencePiece / RoBERTa names of special tokens -> textcls's names. ALBERT calls padding `<pad>` and the
# unknown piece `<unk>`; RoBERTa and XLM-R also call [CLS] `<s>` and [SEP] `</s>`.
SENTENCEPIECE_SPECIALS = {"<pad>": "[PAD]", "<unk>": "[UNK]", "<mask>": "[MASK]", "<s>": "[CLS]", "</s>": "[SEP]"}


def _rename_strings(node, renames: dict[str, str]):
    """`node` (JSON) with every string (values and mapping keys) found in `renames` renamed."""
    if isinstance(node, str):
        return renames.get(node, node)
    if isinstance(node, list):
        return [_rename_strings(x, renames) for x in node]
    if isinstance(node, dict):
        return {renames.get(k, k): _rename_strings(v, renames) for k, v in node.items()}
    return node


def hf_tokenizer(path: Path):
    """A checkpoint's tokenizer.json, its SentencePiece/RoBERTa-style special tokens renamed to textcls's.

    textcls looks up [PAD] [UNK] [CLS] [SEP] [MASK] by name, so `<pad> <unk> <s> </s> <mask>` are renamed
    (ids kept) in the vocabulary, the added tokens and the post-processor. Only names the tokenizer
    lacks in textcls's form are renamed: an ALBERT vocabulary with both `<unk>` and [CLS] keeps [CLS].
    """
    from tokenizers import Tokenizer

    from textcls.data.tokenizer import check_special_tokens

    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"tokenizer file {path} cannot be read ({exc}); it must be a tokenizer.json") from None
    vocab = _vocab_names(spec.get("model", {})) | {a.get("content") for a in spec.get("added_tokens", [])}
    renames = {old: new for old, new in SENTENCEPIECE_SPECIALS.items() if old in vocab and new not in vocab}
    if renames:
        model = spec["model"]
        if isinstance(model.get("vocab"), list):  # unigram: [[piece, score], ...]
            model["vocab"] = [[renames.get(p, p), score] for p, score in model["vocab"]]
        elif isinstance(model.get("vocab"), dict):
            model["vocab"] = {renames.get(t, t): i for t, i in model["vocab"].items()}
        if model.get("unk_token") in renames:
            model["unk_token"] = renames[model["unk_token"]]
        for added in spec.get("added_tokens", []):
            added["content"] = renames.get(added["content"], added["content"])
        if spec.get("post_processor"):  # RobertaProcessing / TemplateProcessing name <s> and </s>
            spec["post_processor"] = _rename_strings(spec["post_processor"], renames)
    try:
        tok = Tokenizer.from_str(json.dumps(spec))
    except Exception as exc:  # tokenizers raises a bare Exception on a malformed spec
        raise CheckpointError(f"tokenizer file {path} cannot be loaded ({exc}); it must be a tokenizer.json") from None
    check_special_tokens(tok, str(path))
    return tok


def _vocab_names(model: dict) -> set:
    vocab = model.get("vocab")
    if isinstance(vocab, list):
        return {entry[0] for entry in vocab if entry}
    return set(vocab) if isinstance(vocab, dict) else set()
