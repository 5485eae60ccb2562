"""textcls model section + state dict -> HF config.json dict + state dict: the inverse of hf.py's import.

Works on config dataclasses and tensors only: `transformers` is never imported here.

A textcls classifier maps onto HF's `BertForSequenceClassification` when it is the BERT layout (post-norm,
learned absolute positions from 0, no sharing, no factorized embeddings) and onto
`AlbertForSequenceClassification` when its layers are shared in ALBERT's way (`all`, `sequence` with a
group size dividing the depth, or `cycle` of 1) or its embeddings are factorized (E != H; an unshared
factorized model is an ALBERT with one group per layer). Both classify `tanh(dense(first token))`,
which is textcls's pooling `cls_tanh`; every other pooling changes what the head sees and is refused.

Key map (textcls -> HF; BERT prefix `bert.`, ALBERT prefix `albert.`):
  embeddings.{word,position,segment}      -> embeddings.{word,position,token_type}_embeddings
  embeddings.norm                          -> embeddings.LayerNorm
  embeddings.project (ALBERT; E == H: an identity matrix) -> encoder.embedding_hidden_mapping_in
  encoder.attention.{u}.attention.qkv      -> query / key / value (split in that order)
  encoder.attention.{u}.attention.out, .norm -> attention output dense / LayerNorm (ALBERT: attention.dense)
  encoder.ffn.{u}.up / .down / .norm       -> intermediate.dense / output.dense / output.LayerNorm
                                              (ALBERT: ffn / ffn_output / full_layer_layer_norm)
  pooler.dense                             -> pooler.dense (ALBERT: pooler)
  head                                     -> classifier
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


@dataclass
class Exported:
    config: dict  # HF config.json
    state: dict[str, torch.Tensor]  # HF *ForSequenceClassification state dict
    architecture: str  # BertForSequenceClassification | AlbertForSequenceClassification


def unmappable(cfg: ModelConfig) -> list[str]:
    """Why a textcls model cannot be written as an HF BERT or ALBERT classifier (empty: it can)."""
    why = []
    if cfg.pooling != "cls_tanh":
        why.append(f"its pooling is {cfg.pooling!r}, but HF's *ForSequenceClassification classifies "
                   "tanh(dense(first token)), which is textcls's `cls_tanh` only (an HF base brings that pooler; "
                   "from scratch, train with model.pooling: cls_tanh)")
    if cfg.pool_layers != 1:
        why.append(f"it pools the sum of the last {cfg.pool_layers} layers (model.pool_layers); HF reads the last")
    if cfg.norm != "post":
        why.append("its layers are pre-norm (model.norm: pre); BERT and ALBERT are post-norm")
    if cfg.position != "learned":
        why.append(f"its positions are {cfg.position!r}; BERT and ALBERT learn a position table")
    if cfg.position_offset:
        why.append(f"its positions start at row {cfg.position_offset} (a RoBERTa / XLM-R base); only BERT and "
                   "ALBERT layouts are exported")
    if cfg.scale_embeddings:
        why.append("it scales the word vectors by sqrt(E) (model.scale_embeddings); BERT does not")
    if cfg.causal:
        why.append("its attention is causal (model.causal); BERT's is bidirectional")
    if cfg.embeddings.ngram_orders:
        why.append("it adds hashed n-gram embeddings (model.embeddings.ngram_orders), which HF models do not have")
    if cfg.adapters.enabled:
        why.append(f"it has {cfg.adapters.style} adapters: extra modules with their own non-linearity between "
                   "the layers, which cannot be merged into BERT's weights")
    s = cfg.sharing
    if s.strategy != "none" and s.share != "all":
        why.append(f"it shares only the {s.share} sub-blocks (model.sharing.share); ALBERT shares whole layers")
    elif _groups(cfg) is None:
        why.append(f"its sharing ({s.strategy}) runs the unique layers in an order that ALBERT's equal "
                   "consecutive groups cannot express")
    if cfg.hidden_size % cfg.num_heads:
        why.append("hidden_size is not a multiple of num_heads")
    return why


def _groups(cfg: ModelConfig) -> int | None:
    """ALBERT's num_hidden_groups reproducing textcls's depth schedule (depth i runs group i // (L / G))."""
    schedule = depth_schedule(cfg.sharing, cfg.num_layers)
    layers = cfg.num_layers
    for groups in range(1, layers + 1):
        if layers % groups == 0 and schedule == [i // (layers // groups) for i in range(layers)]:
            return groups
    return None


def _common(cfg: ModelConfig, vocab_size: int, labels: list[str], task: str, pad_id: int) -> dict:
    drop = cfg.dropout
    return {
        "vocab_size": vocab_size, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.intermediate_size,
        "hidden_act": HF_ACTIVATIONS[cfg.activation], "hidden_dropout_prob": drop,
        "attention_probs_dropout_prob": drop if cfg.attention_dropout is None else cfg.attention_dropout,
        "max_position_embeddings": cfg.max_positions, "type_vocab_size": max(1, cfg.type_vocab_size),
        "initializer_range": cfg.initializer_range, "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": pad_id, "position_embedding_type": "absolute",
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "problem_type": "multi_label_classification" if task == "multilabel" else "single_label_classification",
    }


def to_hf(cfg: ModelConfig, state: dict[str, torch.Tensor], labels: list[str], task: str, pad_id: int) -> Exported:
    """An HF config.json dict and state dict equal to the textcls model. Raises CheckpointError with every
    reason when the model does not map."""
    why = unmappable(cfg)
    if why:
        raise CheckpointError("this model cannot be written as an HF BERT or ALBERT classifier: " + "; ".join(why))
    state = {k: v.detach().float().cpu() for k, v in state.items()}
    h = cfg.hidden_size
    vocab_size = state["embeddings.word.weight"].shape[0]
    albert = cfg.sharing.strategy != "none" or cfg.embedding_size not in (None, h)
    hf = _common(cfg, vocab_size, labels, task, pad_id)
    drop = cfg.dropout if cfg.classifier_dropout is None else cfg.classifier_dropout
    out: dict[str, torch.Tensor] = {}
    p = "albert." if albert else "bert."
    segment = state.get("embeddings.segment.weight")
    e = state["embeddings.word.weight"].shape[1]
    out[f"{p}embeddings.word_embeddings.weight"] = state["embeddings.word.weight"]
    out[f"{p}embeddings.position_embeddings.weight"] = state["embeddings.position.weight"]
    out[f"{p}embeddings.token_type_embeddings.weight"] = segment if segment is not None else torch.zeros(1, e)
    for x in ("weight", "bias"):
        out[f"{p}embeddings.LayerNorm.{x}"] = state[f"embeddings.norm.{x}"]
    if albert:
        groups = _groups(cfg)
        project = {"weight": state.get("embeddings.project.weight", torch.eye(h)),
                   "bias": state.get("embeddings.project.bias", torch.zeros(h))}
        for x in ("weight", "bias"):
            out[f"{p}encoder.embedding_hidden_mapping_in.{x}"] = project[x]
        names = {"q": "attention.query", "k": "attention.key", "v": "attention.value", "out": "attention.dense",
                 "norm1": "attention.LayerNorm", "up": "ffn", "down": "ffn_output", "norm2": "full_layer_layer_norm"}
        layers = [f"{p}encoder.albert_layer_groups.{g}.albert_layers.0." for g in range(groups)]
        pooler = f"{p}pooler"
        hf.update(model_type="albert", architectures=["AlbertForSequenceClassification"], embedding_size=e,
                  num_hidden_groups=groups, inner_group_num=1, classifier_dropout_prob=drop)
    else:
        names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "out": "attention.output.dense", "norm1": "attention.output.LayerNorm",
                 "up": "intermediate.dense", "down": "output.dense", "norm2": "output.LayerNorm"}
        layers = [f"{p}encoder.layer.{i}." for i in range(cfg.num_layers)]
        pooler = f"{p}pooler.dense"
        hf.update(model_type="bert", architectures=["BertForSequenceClassification"], classifier_dropout=drop)
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
        out[f"classifier.{x}"] = state[f"head.{x}"]
    return Exported(hf, out, hf["architectures"][0])
