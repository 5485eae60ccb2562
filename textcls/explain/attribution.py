"""Token scores of one classifier (textcls.model.TextClassifier) for one tokenized text.

Integrated gradients (Sundararajan et al. 2017): the word vectors move on a straight line from a
baseline (the padding token's vector, zero in a trained textcls model) to the text's own; the gradient
of the label's probability is averaged over `steps` points of that line (the midpoint Riemann sum) and
multiplied by (input - baseline); the sum over the embedding dimension is the token's score. Hashed
n-gram vectors move alongside, from the "no n-gram" row (zero). `[CLS]` and `[SEP]` keep their word
vectors, so the scores add up to about p(label | text) - p(label | the text's tokens all replaced by
padding).

Attention rollout (Abnar & Zuidema 2020): per layer the heads' mean attention plus the identity (the
residual), rows normalized, multiplied through the layers; a token's score is how much of the pooled
position's (the first token's, the last token's for `last` pooling, the mean over tokens for mean/max
pooling) rolled-out attention reaches it. It is >= 0 and the same for every label.
"""

from __future__ import annotations

import numpy as np
import torch

from textcls.predictor import activation


def integrated_gradients(model: torch.nn.Module, ids: list[int], target: int, task: str, steps: int = 32,
                         keep: list[bool] | None = None, chunk: int = 16) -> np.ndarray:
    """(T,) scores of the tokens `ids` for label index `target`. Positions where `keep` is True ([CLS],
    [SEP]) stay at their own word vectors. Hashed n-gram vectors (`model.embeddings.ngram_orders`) move
    too, at every position, from the "no n-gram" row (what an n-gram touching padding gets): an n-gram's
    share goes to the token it ends at."""
    word, ngram = model.embeddings.word, model.embeddings.ngram
    device = word.weight.device
    input_ids = torch.tensor([ids], device=device)  # (1, T)
    mask = torch.ones_like(input_ids, dtype=torch.bool)
    kept = torch.tensor(keep if keep is not None else [False] * len(ids), device=device)[None, :, None]  # (1, T, 1)
    with torch.no_grad():
        inputs = word(input_ids).float()  # (1, T, E)
        baseline = word.weight[word.padding_idx if word.padding_idx is not None else 0].float().expand_as(inputs)
        grams = ngram(input_ids).float() if ngram is not None else torch.zeros_like(inputs)  # (1, T, E)
        # "no n-gram" is row 0 of the table for each order (zero unless a checkpoint says otherwise)
        no_gram = ngram.table.weight[0].float() * len(ngram.orders) if ngram is not None else torch.zeros_like(grams)
    alphas = (torch.arange(steps, device=device, dtype=torch.float32) + 0.5) / steps  # midpoints of [0, 1]
    total, gram_total = torch.zeros_like(inputs), torch.zeros_like(inputs)
    for start in range(0, steps, chunk):
        a = alphas[start:start + chunk, None, None]  # (S, 1, 1)
        path = torch.where(kept, inputs, baseline + a * (inputs - baseline)).requires_grad_(True)  # (S, T, E)
        gram_path = (no_gram + a * (grams - no_gram)).requires_grad_(True)  # (S, T, E)
        hooks = [word.register_forward_hook(lambda module, args, output, path=path: path.to(output.dtype))]
        if ngram is not None:
            hooks.append(ngram.register_forward_hook(lambda module, args, output, g=gram_path: g.to(output.dtype)))
        try:
            with torch.enable_grad():
                n = path.shape[0]
                p = activation(model(input_ids.expand(n, -1), mask.expand(n, -1)), task)[:, target]  # (S,)
                grad, gram_grad = torch.autograd.grad(p.sum(), [path, gram_path], allow_unused=True)
        finally:
            for hook in hooks:
                hook.remove()
        total += grad.sum(0, keepdim=True)
        if gram_grad is not None:
            gram_total += gram_grad.sum(0, keepdim=True)
    scores = ((inputs - baseline) * total / steps).sum(-1)[0].masked_fill(kept[0, :, 0], 0.0)  # (T,)
    scores = scores + ((grams - no_gram) * gram_total / steps).sum(-1)[0]
    return scores.detach().cpu().numpy().astype(np.float64)


@torch.no_grad()
def attention_maps(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """(layers, heads, T, T) attention probabilities of one text (rows: queries, columns: keys)."""
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    mask = torch.ones_like(input_ids, dtype=torch.bool)
    out = model.encode(input_ids, mask, need_weights=True)
    return torch.stack([p[0] for p in out.attentions]).float().cpu().numpy()


def attention_rollout(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """(T,) rolled-out attention from the pooled position(s) to each token."""
    maps = attention_maps(model, ids)  # (L, nh, T, T)
    t = maps.shape[-1]
    rollout = np.eye(t)
    for layer in maps:
        a = 0.5 * layer.mean(0) + 0.5 * np.eye(t)  # (T, T): heads averaged, the residual added
        rollout = (a / a.sum(-1, keepdims=True)) @ rollout
    pooling = model.cfg.pooling
    if pooling in ("mean", "max"):
        return rollout.mean(0)
    return rollout[-1] if pooling == "last" else rollout[0]
