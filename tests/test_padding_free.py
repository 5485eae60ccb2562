"""`model.padding_free`: the packed forward equals the padded one (logits, pooled vectors, gradients) for every
pooling and the model's optional parts; training and prediction give the same numbers either way."""

from __future__ import annotations

import pytest
import torch

from conftest import metrics_records, sst2_slice, tiny_config, tiny_model, write_tsv
from textcls.config import config_from_dict
from textcls.errors import ConfigError
from textcls.model import TextClassifier
from textcls.model.packing import Packing
from textcls.model.pooling import POOLINGS

VOCAB, LABELS = 40, 3
LENGTHS = [3, 17, 1, 30, 9]  # very different lengths, one of a single token


def build(padding_free: bool, **model) -> TextClassifier:
    raw = {"model": tiny_model(padding_free=padding_free, **model), "data": {"max_length": 48}}
    return TextClassifier(config_from_dict(raw).model, VOCAB, LABELS)


def pair(**model) -> tuple[TextClassifier, TextClassifier]:
    """A padded model and a padding-free one holding the same weights (loaded strictly: the same keys)."""
    torch.manual_seed(0)
    padded = build(False, **model)
    packed = build(True, **model)
    packed.load_state_dict(padded.state_dict())
    return padded, packed


def batch(lengths=LENGTHS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-aligned ids (B, T) with pad id 0, mask, and token types (1 on the second half of each row)."""
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    lens = torch.tensor(lengths)
    mask = torch.arange(t)[None] < lens[:, None]  # (B, T)
    ids = torch.randint(5, VOCAB, (len(lengths), t), generator=g).masked_fill(~mask, 0)
    types = ((torch.arange(t)[None] >= (lens[:, None] + 1) // 2) & mask).long()
    return ids, mask, types


def assert_same_forward_and_grads(padded: TextClassifier, packed: TextClassifier, types: bool = True) -> None:
    ids, mask, type_ids = batch()
    type_ids = type_ids if types else None
    out = {}
    for name, model in (("padded", padded), ("packed", packed)):
        model.zero_grad()
        pooled = model.features(ids, mask, type_ids)  # (B, H)
        logits = model.head(pooled)
        weights = torch.linspace(-1, 1, logits.numel()).view_as(logits)
        ((logits * weights).sum() + pooled.pow(2).mean()).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        out[name] = (pooled.detach(), logits.detach(), grads)
    (p_pool, p_logits, p_grads), (f_pool, f_logits, f_grads) = out["padded"], out["packed"]
    torch.testing.assert_close(f_pool, p_pool, rtol=0, atol=1e-5)
    torch.testing.assert_close(f_logits, p_logits, rtol=0, atol=1e-5)
    assert set(f_grads) == set(p_grads) and p_grads
    for key, grad in p_grads.items():
        torch.testing.assert_close(f_grads[key], grad, rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_gives_the_padded_logits_and_gradients(pooling):
    assert_same_forward_and_grads(*pair(pooling=pooling))


@pytest.mark.parametrize("model", [
    {"adapters": {"enabled": True, "style": "houlsby", "size": 8, "init_scale": 0.3}},
    {"adapters": {"enabled": True, "style": "pfeiffer", "size": 8, "shared": True, "layers": [1]}},
    {"adapters": {"enabled": True, "style": "side", "size": 8}, "pooling": "mean"},
    {"sharing": {"strategy": "all"}, "num_layers": 3, "pooling": "max"},
    {"sharing": {"strategy": "cycle", "num_unique": 2, "share": "attention"}, "num_layers": 4, "pooling": "last"},
    {"embeddings": {"ngram_orders": [2, 3], "ngram_buckets": 50}, "pooling": "mean"},
    {"embedding_size": 16, "pooling": "cls_tanh"},
    {"position": "sinusoidal", "scale_embeddings": True},
    {"position": "none", "pooling": "mean"},
    {"position_offset": 2, "type_vocab_size": 1},
    {"type_vocab_size": 0, "pooling": "max"},
    {"norm": "pre", "pool_layers": 2, "pooling": "mean"},
    {"causal": True, "pooling": "last"},
])
def test_optional_parts_give_the_padded_logits_and_gradients(model):
    assert_same_forward_and_grads(*pair(**model))


def test_without_token_types_or_mask():
    padded, packed = pair(pooling="mean")
    assert_same_forward_and_grads(padded, packed, types=False)
    ids = batch([6, 6])[0]
    torch.testing.assert_close(packed.eval()(ids), padded.eval()(ids), rtol=0, atol=1e-5)


def test_bf16_autocast_agrees_within_bf16_precision():
    padded, packed = pair(pooling="max", adapters={"enabled": True})
    ids, mask, types = batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = padded.eval()(ids, mask, types).float(), packed.eval()(ids, mask, types).float()
    torch.testing.assert_close(got, want, rtol=0, atol=3e-2)


def test_state_dict_keys_are_the_same_and_no_packing_key_is_saved():
    padded, packed = pair(adapters={"enabled": True}, embeddings={"ngram_orders": [2]}, pooling="cls_tanh")
    assert set(packed.state_dict()) == set(padded.state_dict())
    assert not any("pack" in k or "padding" in k for k in packed.state_dict())


def test_a_sequence_reads_only_itself_and_positions_restart():
    """A row's logits do not depend on its batch-mates: positions restart at each sequence, attention stays in it."""
    _, packed = pair(pooling="mean", position="learned")
    packed.eval()
    ids, mask, types = batch()
    together = packed(ids, mask, types)
    for row, length in enumerate(LENGTHS):
        alone = packed(ids[row:row + 1, :length], mask[row:row + 1, :length], types[row:row + 1, :length])
        torch.testing.assert_close(together[row:row + 1], alone, rtol=0, atol=1e-5)


def test_packing_layout_and_its_refusals():
    ids, mask, _ = batch([2, 4, 1])
    packing = Packing.from_mask(mask)
    assert packing.index.tolist() == [0, 1, 4, 5, 6, 7, 8]
    assert packing.positions.tolist() == [0, 1, 0, 1, 2, 3, 0]
    assert packing.first.tolist() == [0, 2, 6] and packing.last.tolist() == [1, 5, 6]
    assert packing.num_tokens == 7
    assert packing.pack(ids).tolist() == ids[mask].tolist()
    torch.testing.assert_close(packing.unpack(packing.pack(ids)), ids)
    with pytest.raises(ValueError, match="left-aligned"):
        Packing.from_mask(torch.tensor([[True, False], [False, True]]))
    with pytest.raises(ValueError, match="non-empty"):
        Packing.from_mask(torch.tensor([[True, True], [False, False]]))


def test_config_key_is_checked_and_adversarial_training_is_refused():
    with pytest.raises(ConfigError, match=r"`model.padding_free` must be bool"):
        config_from_dict({"model": {"padding_free": "yes"}})
    with pytest.raises(ConfigError, match=r"`train.adversarial_eps`.*`model.padding_free: true`"):
        config_from_dict({"model": {"padding_free": True}, "train": {"adversarial_eps": 0.1}})
    assert config_from_dict({"model": {"padding_free": True}}).model.padding_free is True


def _train(root, padding_free: bool):
    from textcls.train.loop import train

    cfg = tiny_config(root / "train.tsv", root / "valid.tsv", root / f"run-{padding_free}",
                      data={"cache_dir": str(root / "cache")}, model={"padding_free": padding_free},
                      train={"max_steps": 8, "log_every": 1, "batch_size": 32})
    train(cfg, quiet=True)
    return root / f"run-{padding_free}"


def test_training_and_prediction_agree_both_ways(tmp_path):
    from textcls.predictor import run_predictor
    from textcls.run.load import load_run
    from textcls.run.weights import load_weights

    write_tsv(tmp_path / "train.tsv", sst2_slice(240))
    write_tsv(tmp_path / "valid.tsv", sst2_slice(40, "dev"))
    runs = {flag: _train(tmp_path, flag) for flag in (False, True)}
    curves = {flag: [r["loss"] for r in metrics_records(run) if r.get("kind") == "train"]
              for flag, run in runs.items()}
    assert len(curves[True]) == 8
    assert curves[True] == pytest.approx(curves[False], rel=1e-4, abs=1e-5)
    weights = {flag: load_weights(run / "model.safetensors") for flag, run in runs.items()}
    assert set(weights[True]) == set(weights[False])

    texts = [text for text, _ in sst2_slice(30, "dev", offset=40)] + ["ok", "a " * 60]
    run = load_run(runs[True])
    assert run.cfg.model.padding_free and run.model.padding_free  # prediction runs packed too
    packed = run_predictor(run, batch_size=8).predict_proba(texts)
    run.model.padding_free = False  # the same weights, padded
    padded = run_predictor(run, batch_size=8).predict_proba(texts)
    assert packed.shape == (len(texts), 2)
    assert abs(packed - padded).max() < 1e-5
    other = run_predictor(load_run(runs[False]), batch_size=8).predict_proba(texts)
    assert abs(packed - other).max() < 1e-3  # trained the other way: the same run within float error
