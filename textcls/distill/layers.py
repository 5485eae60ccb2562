"""A student made of the teacher's own lower layers (`distill.student_layers`; the automatic student when the
teacher qualifies).

A student trained from scratch learns its words and their contexts from a few thousand rows; the teacher's lower
layers already know them from pretraining and the task. The student here is the teacher's one model (a
single-model run, or an ensemble's first member) cut to its first K layers (`default_layers`: the most, up to
half, that run a sixth of the teacher's layer passes; from 3 layers on), with the teacher's tokenizer pruned to
the tokens the distillation texts use:

- the vocabulary keeps the special tokens, every token of the teacher's tokenization of the distillation texts
  (training rows, augmented copies, unlabelled texts), and each character of those tokens as a word start and a
  continuation, so a later word that lacks a whole-word token still splits into pieces. WordPiece matches the
  longest token it has, and every token of a distillation text is kept, so those texts are tokenized exactly as
  the teacher tokenizes them;
- the word embedding keeps those tokens' rows, the position table the rows `max_length` reads, and the encoder
  its first K layers; the classification head starts fresh. With `model.embeddings.word_rank` the rows become
  a low-rank table (`low_rank`), for a smaller student; `fitting_rank` is the rank that fits a share of the
  teacher's parameters. The low-rank fit weighs each row by how often the distillation texts use its token, so
  the words a text is mostly made of keep their vectors best (MR at rank 64: the cut model's pooled vectors
  keep a cosine of 0.92 to the full table's, against 0.65 for an unweighted fit);
- with a narrower `model.intermediate_size` each feed-forward block keeps the neurons that add most to its
  output on the texts (`neuron_use`, `narrow_ffn`), for a faster student; `fitting_ffn` is the width that fits
  a share of the teacher's arithmetic per token.

Then the student learns from the teacher's probabilities as any student does. The teacher must be a plain
stack of layers with a WordPiece tokenizer: no layer sharing, no adapters, no hashed n-gram embeddings.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch

from textcls.data.tokenizer import SPECIAL_TOKENS, check_special_tokens, encode_batch_safely
from textcls.distill.teacher import Teacher

CONTINUATION = "##"
MIN_RANK = 32  # the smallest rank fitting_rank gives a word table
NEURON_SAMPLE = 1024  # the distillation texts whose activations rank the feed-forward neurons (`neuron_use`)
LAYER_KEY = re.compile(r"^encoder\.\w+\.(\d+)\.")
# The automatic student runs at most 1/6 of its teacher's layer passes: 2 layers against 2 copies of 6 predicted
# 4.5-5.8x faster than the teacher on MR and SUBJ (issue 24's bar is 5x; process start and tokenizing are the rest).
SPEED_SHARE = 6
# ... and its layers do at most 1/ARITHMETIC_SHARE of the teacher's arithmetic per token: a predict run also
# starts a process, tokenizes, reads and writes (about 3 s of a 2-layer student's 15 on 10,000 MR rows), so a
# sixth of the arithmetic predicted 4.5-5.3x faster; a seventh leaves room for the rest (`fitting_ffn`).
ARITHMETIC_SHARE = 7
FFN_STEP = 32  # `fitting_ffn` keeps a multiple of this many feed-forward neurons


@dataclass
class LayersStudent:
    model: dict  # the student's `model` section
    tokenizer: object  # the teacher's tokenizer, pruned
    state: dict[str, torch.Tensor]  # the student's tensors from the teacher (no head)
    layers: int
    teacher_layers: int
    vocab: int
    teacher_vocab: int
    counts: Optional[torch.Tensor] = None  # (vocab,) how often the distillation texts use each kept token


def teacher_depth(teacher: Teacher) -> int:
    """The layers of the teacher's one model."""
    return teacher.single()[0].cfg.num_layers


def teacher_layer_passes(teacher: Teacher) -> int:
    """The layers a text goes through in the teacher: every model's (each member of an ensemble) summed."""
    return sum(model.cfg.num_layers for model in teacher.models())


def default_layers(teacher_layers: int, passes: int) -> int:
    """The automatic student's layers: the most, up to half the teacher's, that run at most 1 / SPEED_SHARE of
    the teacher's layer passes (`passes`, teacher_layer_passes); at least 1."""
    return max(1, min(teacher_layers // 2, passes // SPEED_SHARE))


def layer_arithmetic(hidden: int, ffn: int) -> int:
    """A layer's multiply-adds per token: the attention's four projections and the feed-forward block's two
    (the attention scores, 2 x length x hidden, are left out: under a tenth at the lengths a student reads)."""
    return 4 * hidden * hidden + 2 * hidden * ffn


def teacher_arithmetic(teacher: Teacher) -> int:
    """The teacher's multiply-adds per token: every model's layers (each member of an ensemble) summed."""
    return sum(m.cfg.num_layers * layer_arithmetic(m.cfg.hidden_size, m.cfg.intermediate_size)
               for m in teacher.models())


def fitting_ffn(student: "LayersStudent", most: int) -> int:
    """The feed-forward width that keeps the student's layers within `most` multiply-adds per token: the teacher's
    when they fit, else the widest multiple of FFN_STEP that does (at least FFN_STEP)."""
    hidden, width = student.model["hidden_size"], student.model["intermediate_size"]
    if student.layers * layer_arithmetic(hidden, width) <= most:
        return width
    per_neuron = layer_arithmetic(hidden, 1) - layer_arithmetic(hidden, 0)
    fits = (most // student.layers - layer_arithmetic(hidden, 0)) // per_neuron
    return int(min(width, max(FFN_STEP, fits // FFN_STEP * FFN_STEP)))


def unfit_reason(teacher: Teacher) -> Optional[str]:
    """Why the teacher's one model cannot lend its lower layers (None: it can)."""
    model, tokenizer, _ = teacher.single()
    m = model.cfg
    kind = json.loads(tokenizer.to_str())["model"]["type"] if hasattr(tokenizer, "to_str") else "another kind"
    if kind != "WordPiece":
        return f"its tokenizer is {kind}, and only a WordPiece vocabulary is pruned"
    if m.sharing.strategy != "none":
        return f"its layers are shared (`model.sharing.strategy: {m.sharing.strategy}`)"
    if m.adapters.enabled:
        return "it has adapters"
    if m.embeddings.ngram_orders:
        return "it adds hashed n-gram embeddings"
    if m.num_layers < 3:
        return f"it has {m.num_layers} layer(s), too few to cut (3 or more)"
    return None


def prune_tokenizer(tokenizer, texts: list[str]):
    """(the tokenizer with only the tokens `texts` use, their characters and the special tokens; the kept tokens'
    ids in the original vocabulary, ascending; how often `texts` use each kept token). Kept tokens keep their
    order, so the special tokens that came first (the padding token at 0) still do."""
    spec = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    used: Counter = Counter()
    for enc in encode_batch_safely(tokenizer, texts, "the teacher's tokenizer", add_special_tokens=False):
        used.update(enc.ids)
    by_id = {i: token for token, i in vocab.items()}
    chars = {c for i in used for c in by_id[i].removeprefix(CONTINUATION)}
    wanted = {by_id[i] for i in used} | {c for c in chars} | {CONTINUATION + c for c in chars}
    wanted |= {t["content"] for t in spec.get("added_tokens", [])} | set(SPECIAL_TOKENS)
    kept = sorted(vocab[t] for t in wanted if t in vocab)
    new_id = {old: new for new, old in enumerate(kept)}
    spec["model"]["vocab"] = {by_id[old]: new for old, new in new_id.items()}
    for added in spec.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    for key in ("cls", "sep"):  # a BertProcessing post-processor: [token, id]
        if isinstance(post.get(key), list):
            post[key][1] = new_id[post[key][1]]
    from tokenizers import Tokenizer

    pruned = Tokenizer.from_str(json.dumps(spec))
    check_special_tokens(pruned, "the pruned teacher tokenizer")
    return pruned, kept, torch.tensor([used[old] for old in kept], dtype=torch.float64)


def layers_student(teacher: Teacher, texts: list[str], layers: int, max_length: int) -> LayersStudent:
    """The student of the teacher's first `layers` layers, its vocabulary the tokens of `texts` (see above)."""
    model, tokenizer, _ = teacher.single()
    m = model.cfg
    pruned, kept, counts = prune_tokenizer(tokenizer, texts)
    positions = min(m.max_positions, m.position_offset + max_length)
    state = {}
    for name, tensor in model.state_dict().items():
        layer = LAYER_KEY.match(name)
        if name.startswith("head.") or (layer and int(layer.group(1)) >= layers):
            continue
        if name == "embeddings.word.weight":
            tensor = tensor[torch.tensor(kept)]
        elif name == "embeddings.position.weight":
            tensor = tensor[:positions]
        state[name] = tensor.detach().clone().contiguous()
    section = _model_section(m, layers, positions)
    return LayersStudent(section, pruned, state, layers, m.num_layers, len(kept), len(tokenizer.get_vocab()), counts)


@torch.inference_mode()
def neuron_use(teacher: Teacher, texts: list[str], layers: int, max_length: int) -> list[torch.Tensor]:
    """For each of the teacher's first `layers` layers, a (2, I) tensor: each feed-forward neuron's mean
    activation and mean absolute activation over the tokens of up to NEURON_SAMPLE of `texts` (evenly spaced)."""
    from textcls.data.pipeline import encode_texts
    from textcls.data.tokenizer import PAD
    from textcls.model.layer import ACTIVATIONS
    from textcls.predictor import batched_outputs

    model, tokenizer, data = teacher.single()
    sample = texts[::max(1, len(texts) // NEURON_SAMPLE)][:NEURON_SAMPLE]
    ids, _ = encode_texts(tokenizer, sample, None, max_length, data.truncation, data.head_tokens)
    act = ACTIVATIONS[model.cfg.activation]
    sums = [torch.zeros(2, model.cfg.intermediate_size, dtype=torch.float64) for _ in range(layers)]
    tokens, batch_mask = [0], {}

    def record(depth: int):
        def hook(_module, _inputs, output):
            a = act(output)[batch_mask["mask"]].double().cpu()  # (tokens, I): the padding left out
            sums[depth] += torch.stack([a.sum(0), a.abs().sum(0)])
        return hook

    def run(input_ids, mask, types):
        batch_mask["mask"] = mask
        tokens[0] += int(mask.sum())
        return model(input_ids, mask, types)

    hooks = [model.encoder.ffn[depth].up.register_forward_hook(record(depth)) for depth in range(layers)]
    was_training = model.training
    model.eval()
    try:
        batched_outputs(run, ids, None, model.head.out_features, 64, tokenizer.token_to_id(PAD),
                        next(model.parameters()).device, "fp32")
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [s.float() / max(1, tokens[0]) for s in sums]


def narrow_ffn(state: dict[str, torch.Tensor], width: int, use: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with each layer's feed-forward block cut to the `width` neurons that add most to its output: mean
    absolute activation (`neuron_use`) times the norm of the neuron's output weights. A dropped neuron's mean
    output goes into the block's output bias, so the block's output keeps its mean."""
    out = dict(state)
    for depth, (mean, mean_abs) in enumerate(use):
        key = f"encoder.ffn.{depth}."
        up_w, up_b = state[key + "up.weight"], state[key + "up.bias"]
        down_w, down_b = state[key + "down.weight"], state[key + "down.bias"]
        if width > len(up_b):
            raise ValueError(f"cannot widen a feed-forward block of {len(up_b)} neurons to {width}")
        score = mean_abs * down_w.float().norm(dim=0)
        keep = torch.sort(torch.topk(score, width).indices).values
        drop = torch.ones(len(up_b), dtype=torch.bool)
        drop[keep] = False
        out[key + "up.weight"] = up_w[keep].contiguous()
        out[key + "up.bias"] = up_b[keep].contiguous()
        out[key + "down.weight"] = down_w[:, keep].contiguous()
        out[key + "down.bias"] = (down_b + down_w[:, drop] @ mean[drop].to(down_w.dtype)).contiguous()
    return out


def low_rank(state: dict[str, torch.Tensor], rank: int,
             counts: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """`state` with its (V, E) word table as a rank-`rank` table and a projection (`model.embeddings.word_rank`):
    vectors @ projection + mean is the rank-r fit to the rows with the least squared error, each row's error
    weighted by its token's count in `counts` plus one (None: every row alike). The mean is the weighted mean
    and the projection the first principal components of the weighted rows."""
    word = state["embeddings.word.weight"].double()
    weight = torch.ones(len(word), dtype=torch.float64) if counts is None else counts.double() + 1
    weight = weight / weight.sum()
    mean = weight @ word
    _, _, vt = torch.linalg.svd((word - mean) * weight.sqrt()[:, None], full_matrices=False)
    components = vt[:rank]  # (r, E)
    out = dict(state)
    out["embeddings.word.weight"] = ((word - mean) @ components.T).float().contiguous()  # (V, r)
    out["embeddings.word_project.weight"] = components.T.float().contiguous()  # Linear(r, E): (E, r)
    out["embeddings.word_project.bias"] = mean.float().contiguous()
    return out


def teacher_parameters(teacher: Teacher) -> int:
    """The teacher's unique parameters: every model of the run (each ensemble member), a shared tensor once."""
    return sum(p.numel() for run in teacher.runs() for p in run.model.parameters())


def student_parameters(student: LayersStudent, num_labels: int, rank: Optional[int] = None,
                       ffn: Optional[int] = None) -> int:
    """The student's parameters: the teacher's tensors it keeps, with the word table at `rank` (None: whole) and
    each feed-forward block `ffn` neurons wide (None: the teacher's width), and a fresh head."""
    full = sum(t.numel() for t in student.state.values()) + (student.model["hidden_size"] + 1) * num_labels
    if ffn is not None:  # each neuron: a row of the up projection, its bias, a column of the down projection
        full -= student.layers * (student.model["intermediate_size"] - ffn) * (2 * student.model["hidden_size"] + 1)
    if rank is None:
        return full
    width = student.state["embeddings.word.weight"].shape[1]
    return full - student.vocab * width + student.vocab * rank + (rank + 1) * width  # vectors, projection, bias


def fitting_rank(student: LayersStudent, most: int, num_labels: int, ffn: Optional[int] = None) -> Optional[int]:
    """The word table's rank that keeps the student (its feed-forward blocks `ffn` wide) within `most`
    parameters: None when the full table fits, else the largest rank that fits, at least MIN_RANK."""
    if student_parameters(student, num_labels, None, ffn) <= most:
        return None
    width = student.state["embeddings.word.weight"].shape[1]
    # each rank adds a row of vectors' width and a projection column: V + E parameters over rank 0's count
    rank = (most - student_parameters(student, num_labels, 0, ffn)) // (student.vocab + width)
    return int(min(width - 1, max(MIN_RANK, rank)))


def _model_section(m, layers: int, positions: int) -> dict:
    section = dataclasses.asdict(m)
    section.update(num_layers=layers, max_positions=positions, init_from=None)
    return section
