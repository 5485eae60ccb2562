"""textcls model section + state dict -> HF config.json dict + state dict: the inverse of hf.py's import.

Works on config dataclasses and tensors only: `transformers` is never imported here.

HF's *ForSequenceClassification heads read the first token through a dense layer and an activation, which
is what textcls's dense poolings are; the pooling picks the family, and the rest of the layout must match it:
  cls_tanh  -> BertForSequenceClassification (post-norm, learned positions from 0, no sharing, E == H);
               AlbertForSequenceClassification when layers are shared in ALBERT's way (`all`, `sequence`
               with a group size dividing the depth, `cycle` of 1) or the embeddings are factorized (an
               unshared factorized model is an ALBERT with one group per layer; E == H gets an identity
               mapping); RobertaForSequenceClassification when positions start after the padding id
               (`position_offset` = pad id + 1, one token type: an imported RoBERTa / XLM-R)
  cls_gelu  -> ElectraForSequenceClassification (embeddings_project when E != H)
  cls_relu  -> DistilBertForSequenceClassification (no token types: a one-row segment table is added into
               the positions; LayerNorm eps 1e-12, as DistilBERT fixes it)
Every other pooling, pre-norm, other positions, adapters, n-gram embeddings... are refused with the reason.

Key map (textcls -> HF, under the family's prefix bert. / albert. / roberta. / electra. / distilbert.):
  embeddings.{word,position,segment}      -> embeddings.{word,position,token_type}_embeddings
  embeddings.norm                          -> embeddings.LayerNorm
  embeddings.project                       -> ALBERT encoder.embedding_hidden_mapping_in, ELECTRA embeddings_project
  encoder.attention.{u}.attention.qkv      -> query / key / value (split in that order; DistilBERT q/k/v_lin)
  encoder.attention.{u}.attention.out, .norm -> attention output dense / LayerNorm (ALBERT attention.dense,
                                              DistilBERT out_lin / sa_layer_norm)
  encoder.ffn.{u}.up / .down / .norm       -> intermediate.dense / output.dense / output.LayerNorm (ALBERT ffn /
                                              ffn_output / full_layer_layer_norm, DistilBERT ffn.lin1 / lin2 /
                                              output_layer_norm)
  pooler.dense, head                       -> BERT pooler.dense, classifier; ALBERT pooler, classifier; RoBERTa and
                                              ELECTRA classifier.dense, classifier.out_proj; DistilBERT
                                              pre_classifier, classifier (these last three without the prefix)
A model without segment embeddings (type_vocab_size 0) gets one all-zero token-type row, which adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from textcls.config import ModelConfig
from textcls.errors import CheckpointError
from textcls.model.encoder import depth_schedule

# textcls activation -> HF hidden_act with the same function (gelu_pytorch_tanh is F.gelu(approximate="tanh")).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "silu": "silu"}
# The HF head each dense pooling is (BERT becomes ALBERT or RoBERTa by sharing / position offset).
POOLING_KINDS = {"cls_tanh": "bert", "cls_gelu": "electra", "cls_relu": "distilbert"}
ARCHITECTURES = {"bert": "BertForSequenceClassification", "albert": "AlbertForSequenceClassification",
                 "roberta": "RobertaForSequenceClassification", "electra": "ElectraForSequenceClassification",
                 "distilbert": "DistilBertForSequenceClassification"}
DISTILBERT_EPS = 1e-12  # DistilBERT's LayerNorms have this eps whatever its config says


@dataclass
class Exported:
    config: dict  # HF config.json
    state: dict[str, torch.Tensor]  # HF *ForSequenceClassification state dict
    architecture: str  # BertForSequenceClassification | AlbertForSequenceClassification


def unmappable(cfg: ModelConfig, pad_id: int = 0) -> list[str]:
    """Why a textcls model cannot be written as an HF sequence classifier (empty: it can)."""
    return _choose(cfg, pad_id)[1]


def _choose(cfg: ModelConfig, pad_id: int) -> tuple[str, list[str]]:
    """(the HF model_type the model maps onto, the reasons it does not)."""
    why = []
    if cfg.pool_layers != 1:
        why.append(f"it pools the sum of the last {cfg.pool_layers} layers (model.pool_layers); HF reads the last")
    if cfg.norm != "post":
        why.append("its layers are pre-norm (model.norm: pre); BERT-family models are post-norm")
    if cfg.position != "learned":
        why.append(f"its positions are {cfg.position!r}; BERT-family models learn a position table")
    if cfg.scale_embeddings:
        why.append("it scales the word vectors by sqrt(E) (model.scale_embeddings); BERT does not")
    if cfg.causal:
        why.append("its attention is causal (model.causal); BERT's is bidirectional")
    if cfg.embeddings.word_rank:
        why.append("its word table is low-rank (model.embeddings.word_rank), which HF models do not have")
    if cfg.embeddings.ngram_orders:
        why.append("it adds hashed n-gram embeddings (model.embeddings.ngram_orders), which HF models do not have")
    if cfg.adapters.enabled:
        why.append(f"it has {cfg.adapters.style} adapters: extra modules with their own non-linearity between "
                   "the layers, which cannot be merged into BERT's weights")
    if cfg.hidden_size % cfg.num_heads:
        why.append("hidden_size is not a multiple of num_heads")
    kind = POOLING_KINDS.get(cfg.pooling)
    if kind is None:
        why.append(f"its pooling is {cfg.pooling!r}, but HF's *ForSequenceClassification heads read the first "
                   "token through a dense layer: tanh (BERT, ALBERT, RoBERTa: textcls's `cls_tanh`), GELU (ELECTRA: "
                   "`cls_gelu`) or ReLU (DistilBERT: `cls_relu`); an HF base brings its own, and from scratch, train "
                   "with model.pooling: cls_tanh")
        return "", why
    factorized = cfg.embedding_size not in (None, cfg.hidden_size)
    s = cfg.sharing
    if kind == "bert" and cfg.position_offset:
        kind = "roberta"
        if cfg.type_vocab_size != 1 or pad_id != cfg.position_offset - 1:
            why.append(f"its positions start at row {cfg.position_offset}, as RoBERTa's do after the padding id, but "
                       f"its padding id is {pad_id} and it has {cfg.type_vocab_size} token types (RoBERTa: padding "
                       f"id {cfg.position_offset - 1}, one token type)")
    elif kind == "bert" and (s.strategy != "none" or factorized):
        kind = "albert"
    elif cfg.position_offset:
        why.append(f"its positions start at row {cfg.position_offset}; only RoBERTa's layout (with cls_tanh) does that")
    if kind == "distilbert":
        if factorized:
            why.append("its embeddings are factorized (embedding_size); DistilBERT's are not (use cls_gelu: ELECTRA)")
        if cfg.layer_norm_eps != DISTILBERT_EPS:
            why.append(f"its LayerNorm eps is {cfg.layer_norm_eps:g}; DistilBERT's is fixed at {DISTILBERT_EPS:g}")
        if cfg.type_vocab_size > 1:
            why.append(f"it has {cfg.type_vocab_size} token types; DistilBERT has none")
    if kind == "roberta" and factorized:
        why.append("its embeddings are factorized (embedding_size); RoBERTa's are not")
    if kind != "albert" and s.strategy != "none":
        why.append(f"it shares layers (model.sharing.strategy {s.strategy}); only ALBERT's layout (with cls_tanh) "
                   "shares")
    elif kind == "albert" and s.strategy != "none" and s.share != "all":
        why.append(f"it shares only the {s.share} sub-blocks (model.sharing.share); ALBERT shares whole layers")
    elif kind == "albert" and _groups(cfg) is None:
        why.append(f"its sharing ({s.strategy}) runs the unique layers in an order that ALBERT's equal "
                   "consecutive groups cannot express")
    return kind, why


def _groups(cfg: ModelConfig) -> int | None:
    """ALBERT's num_hidden_groups reproducing textcls's depth schedule (depth i runs group i // (L / G))."""
    schedule = depth_schedule(cfg.sharing, cfg.num_layers)
    layers = cfg.num_layers
    for groups in range(1, layers + 1):
        if layers % groups == 0 and schedule == [i // (layers // groups) for i in range(layers)]:
            return groups
    return None


def _common(cfg: ModelConfig, vocab_size: int, pad_id: int) -> dict:
    drop = cfg.dropout
    return {
        "vocab_size": vocab_size, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.intermediate_size,
        "hidden_act": HF_ACTIVATIONS[cfg.activation], "hidden_dropout_prob": drop,
        "attention_probs_dropout_prob": drop if cfg.attention_dropout is None else cfg.attention_dropout,
        "max_position_embeddings": cfg.max_positions, "type_vocab_size": max(1, cfg.type_vocab_size),
        "initializer_range": cfg.initializer_range, "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": pad_id, "position_embedding_type": "absolute",
    }


def _distilbert_config(cfg: ModelConfig, vocab_size: int, pad_id: int, head_dropout: float) -> dict:
    return {
        "vocab_size": vocab_size, "dim": cfg.hidden_size, "n_layers": cfg.num_layers, "n_heads": cfg.num_heads,
        "hidden_dim": cfg.intermediate_size, "activation": HF_ACTIVATIONS[cfg.activation], "dropout": cfg.dropout,
        "attention_dropout": cfg.dropout if cfg.attention_dropout is None else cfg.attention_dropout,
        "seq_classif_dropout": head_dropout, "max_position_embeddings": cfg.max_positions,
        "sinusoidal_pos_embds": False, "initializer_range": cfg.initializer_range, "pad_token_id": pad_id,
    }


# Per model_type: (tensor prefix, the layer's tensor names, the pooler's and the head's names).
BERT_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
              "out": "attention.output.dense", "norm1": "attention.output.LayerNorm",
              "up": "intermediate.dense", "down": "output.dense", "norm2": "output.LayerNorm"}
LAYOUTS = {
    "bert": ("bert", BERT_LAYER, "bert.pooler.dense", "classifier"),
    "roberta": ("roberta", BERT_LAYER, "classifier.dense", "classifier.out_proj"),
    "electra": ("electra", BERT_LAYER, "classifier.dense", "classifier.out_proj"),
    "albert": ("albert", {"q": "attention.query", "k": "attention.key", "v": "attention.value",
                          "out": "attention.dense", "norm1": "attention.LayerNorm", "up": "ffn", "down": "ffn_output",
                          "norm2": "full_layer_layer_norm"}, "albert.pooler", "classifier"),
    "distilbert": ("distilbert", {"q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin",
                                  "out": "attention.out_lin", "norm1": "sa_layer_norm", "up": "ffn.lin1",
                                  "down": "ffn.lin2", "norm2": "output_layer_norm"}, "pre_classifier", "classifier"),
}


def to_hf(cfg: ModelConfig, state: dict[str, torch.Tensor], labels: list[str], task: str, pad_id: int) -> Exported:
    """An HF config.json dict and state dict equal to the textcls model. Raises CheckpointError with every
    reason when the model does not map."""
    kind, why = _choose(cfg, pad_id)
    if why:
        raise CheckpointError("this model cannot be written as an HF sequence classifier: " + "; ".join(why))
    state = {k: v.detach().float().cpu() for k, v in state.items()}
    h = cfg.hidden_size
    vocab_size, e = state["embeddings.word.weight"].shape
    drop = cfg.dropout if cfg.classifier_dropout is None else cfg.classifier_dropout
    prefix, names, pooler, head = LAYOUTS[kind]
    p = f"{prefix}."
    out: dict[str, torch.Tensor] = {f"{p}embeddings.word_embeddings.weight": state["embeddings.word.weight"]}
    position, segment = state["embeddings.position.weight"], state.get("embeddings.segment.weight")
    if kind == "distilbert":  # no token types: textcls's one segment row (added to every token) joins the positions
        out[f"{p}embeddings.position_embeddings.weight"] = position + (segment[0] if segment is not None else 0)
        hf = _distilbert_config(cfg, vocab_size, pad_id, drop)
    else:
        out[f"{p}embeddings.position_embeddings.weight"] = position
        out[f"{p}embeddings.token_type_embeddings.weight"] = segment if segment is not None else torch.zeros(1, e)
        hf = _common(cfg, vocab_size, pad_id)
        hf["classifier_dropout_prob" if kind == "albert" else "classifier_dropout"] = drop
    for x in ("weight", "bias"):
        out[f"{p}embeddings.LayerNorm.{x}"] = state[f"embeddings.norm.{x}"]
    if kind == "albert":
        groups = _groups(cfg)
        project = {"weight": state.get("embeddings.project.weight", torch.eye(h)),
                   "bias": state.get("embeddings.project.bias", torch.zeros(h))}
        for x in ("weight", "bias"):
            out[f"{p}encoder.embedding_hidden_mapping_in.{x}"] = project[x]
        layers = [f"{p}encoder.albert_layer_groups.{g}.albert_layers.0." for g in range(groups)]
        hf.update(embedding_size=e, num_hidden_groups=groups, inner_group_num=1)
    elif kind == "distilbert":
        layers = [f"{p}transformer.layer.{i}." for i in range(cfg.num_layers)]
    else:
        layers = [f"{p}encoder.layer.{i}." for i in range(cfg.num_layers)]
    if kind == "electra":
        hf["embedding_size"] = e
        if e != h:
            for x in ("weight", "bias"):
                out[f"{p}embeddings_project.{x}"] = state[f"embeddings.project.{x}"]
    for u, layer in enumerate(layers):
        attn, ffn = f"encoder.attention.{u}.", f"encoder.ffn.{u}."
        for x in ("weight", "bias"):
            q, k, v = state[f"{attn}attention.qkv.{x}"].chunk(3, dim=0)
            for name, t in (("q", q), ("k", k), ("v", v)):
                out[f"{layer}{names[name]}.{x}"] = t.contiguous()
            out[f"{layer}{names['out']}.{x}"] = state[f"{attn}attention.out.{x}"]
            out[f"{layer}{names['norm1']}.{x}"] = state[f"{attn}norm.{x}"]
            out[f"{layer}{names['up']}.{x}"] = state[f"{ffn}up.{x}"]
            out[f"{layer}{names['down']}.{x}"] = state[f"{ffn}down.{x}"]
            out[f"{layer}{names['norm2']}.{x}"] = state[f"{ffn}norm.{x}"]
    for x in ("weight", "bias"):
        out[f"{pooler}.{x}"] = state[f"pooler.dense.{x}"]
        out[f"{head}.{x}"] = state[f"head.{x}"]
    hf.update(model_type=kind, architectures=[ARCHITECTURES[kind]],
              id2label={str(i): name for i, name in enumerate(labels)},
              label2id={name: i for i, name in enumerate(labels)},
              problem_type="multi_label_classification" if task == "multilabel" else "single_label_classification")
    return Exported(hf, out, ARCHITECTURES[kind])
