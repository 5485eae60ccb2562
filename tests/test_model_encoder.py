"""The shareable encoder: sharing equals unrolled copies, exact keys and counts, masks, attention weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_model
from textcls.config import config_from_dict
from textcls.model import TextClassifier, block_schedules
from textcls.model.attention import attention_bias

V, C, H, I, L = 50, 3, 32, 64, 4  # noqa: E741 (vocab, labels, hidden, intermediate, layers)


def model_cfg(**extra):
    return config_from_dict({"model": tiny_model(num_layers=L, **extra), "data": {"max_length": 48}}).model


def build(seed: int = 0, **extra) -> TextClassifier:
    torch.manual_seed(seed)
    return TextClassifier(model_cfg(**extra), V, C).eval()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (3, 9), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 3:] = False
    return ids.masked_fill(~mask, 0), mask


SHARINGS = [
    ({"strategy": "none"}, [0, 1, 2, 3]),
    ({"strategy": "all"}, [0, 0, 0, 0]),
    ({"strategy": "sequence", "group_size": 2}, [0, 0, 1, 1]),
    ({"strategy": "sequence", "group_size": 3}, [0, 0, 0, 1]),  # depth i runs layer i // k; the last group is short
    ({"strategy": "cycle", "num_unique": 2}, [0, 1, 0, 1]),
    ({"strategy": "cycle", "num_unique": 3}, [0, 1, 2, 0]),
]
SHARES = ["all", "attention", "ffn"]


@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("sharing,expected", SHARINGS)
def test_schedules(sharing, expected, share):
    attention, ffn = block_schedules(model_cfg(sharing={**sharing, "share": share}).sharing, L)
    assert attention == (expected if share in ("all", "attention") else list(range(L)))
    assert ffn == (expected if share in ("all", "ffn") else list(range(L)))


@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("sharing,expected", SHARINGS)
def test_shared_model_equals_unrolled_copies(sharing, expected, share):
    shared = build(sharing={**sharing, "share": share}, pooling="cls_tanh")
    unrolled = build(seed=5, pooling="cls_tanh")
    state = {k: v for k, v in shared.state_dict().items() if not k.startswith("encoder.")}
    for d in range(L):
        a, f = shared.encoder.attention_schedule[d], shared.encoder.ffn_schedule[d]
        for k, v in shared.encoder.attention[a].state_dict().items():
            state[f"encoder.attention.{d}.{k}"] = v.clone()
        for k, v in shared.encoder.ffn[f].state_dict().items():
            state[f"encoder.ffn.{d}.{k}"] = v.clone()
    unrolled.load_state_dict(state, strict=True)
    ids, mask = batch()
    torch.testing.assert_close(unrolled(ids, mask), shared(ids, mask), rtol=0, atol=1e-6)
    if sharing["strategy"] != "none":  # the copies really were needed: a fresh unshared model differs
        assert not torch.allclose(build(seed=5, pooling="cls_tanh")(ids, mask), shared(ids, mask))


def block_keys(prefix: str, kind: str) -> set[str]:
    names = {"attention": ["attention.qkv.weight", "attention.qkv.bias", "attention.out.weight",
                           "attention.out.bias", "norm.weight", "norm.bias"],
             "ffn": ["up.weight", "up.bias", "down.weight", "down.bias", "norm.weight", "norm.bias"]}[kind]
    return {f"{prefix}.{n}" for n in names}


ATTN = 4 * H * H + 6 * H  # fused qkv (3H x H + 3H), Wo (H x H + H), LayerNorm (2H)
FFN = 2 * H * I + I + 3 * H  # up (I x H + I), down (H x I + H), LayerNorm (2H)


@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("sharing,expected", SHARINGS)
def test_state_dict_keys_and_parameter_counts(sharing, expected, share, tmp_path):
    model = build(sharing={**sharing, "share": share}, embedding_size=16, pooling="cls_tanh")
    u = len(set(expected))
    n_attn = u if share in ("all", "attention") else L
    n_ffn = u if share in ("all", "ffn") else L
    e, p, s = 16, 64, 2
    keys = {"embeddings.word.weight", "embeddings.position.weight", "embeddings.segment.weight",
            "embeddings.norm.weight", "embeddings.norm.bias", "embeddings.project.weight",
            "embeddings.project.bias", "pooler.dense.weight", "pooler.dense.bias", "head.weight", "head.bias"}
    for i in range(n_attn):
        keys |= block_keys(f"encoder.attention.{i}", "attention")
    for i in range(n_ffn):
        keys |= block_keys(f"encoder.ffn.{i}", "ffn")
    state = model.state_dict()
    assert set(state) == keys
    embeddings = V * e + p * e + s * e + 2 * e + e * H + H
    rest = H * H + H + H * C + C
    unique = embeddings + n_attn * ATTN + n_ffn * FFN + rest
    assert sum(p.numel() for p in model.parameters()) == unique
    assert sum(v.numel() for v in state.values()) == unique  # each tensor stored once
    effective = embeddings + L * (ATTN + FFN) + rest
    from textcls.info import parameter_counts
    counts = parameter_counts(model)
    assert counts.unique_total == unique and counts.effective_total == effective
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    loaded = load_file(str(tmp_path / "m.safetensors"))
    assert set(loaded) == keys and all(torch.equal(loaded[k], state[k]) for k in keys)


def test_save_weights_refuses_nothing_for_shared_model(tmp_path):
    from textcls.run.weights import load_weights, save_weights

    model = build(sharing={"strategy": "all"})
    save_weights(model.state_dict(), tmp_path / "model.safetensors")
    fresh = build(seed=3, sharing={"strategy": "all"})
    fresh.load_state_dict(load_weights(tmp_path / "model.safetensors"))
    ids, mask = batch()
    torch.testing.assert_close(fresh(ids, mask), model(ids, mask), rtol=0, atol=0)


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu", "silu"])
def test_logits_unchanged_by_extra_padding(norm, activation):
    model = build(norm=norm, activation=activation, pooling="mean")
    ids, mask = batch()
    padded_ids = torch.cat([ids, torch.zeros(3, 5, dtype=torch.long)], 1)
    padded_mask = torch.cat([mask, torch.zeros(3, 5, dtype=torch.bool)], 1)
    torch.testing.assert_close(model(padded_ids, padded_mask), model(ids, mask), rtol=0, atol=1e-6)


def test_padded_example_equals_unpadded_example():
    model = build(pooling="cls_tanh")
    ids, mask = batch()
    alone = model(ids[2:3, :3], mask[2:3, :3])
    torch.testing.assert_close(model(ids, mask)[2:3], alone, rtol=0, atol=1e-6)


def test_causal_mask_is_history_only():
    mask = attention_bias(torch.tensor([[True, True, True, False]]), True, 4, torch.device("cpu"))
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]], dtype=torch.bool)
    assert torch.equal(mask.expand(1, 1, 4, 4)[0, 0], expected)
    model = build(causal=True)
    ids, mask = batch()
    changed = ids.clone()
    changed[0, 5:] = 7  # a different future must not change the past
    before = model.encode(ids, mask).hidden[-1]
    after = model.encode(changed, mask).hidden[-1]
    torch.testing.assert_close(after[0, :5], before[0, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(after[0, 5:], before[0, 5:])
    out = model.encode(ids, mask, need_weights=True)
    assert torch.all(out.attentions[0][0].triu(1) == 0)


@pytest.mark.parametrize("causal", [False, True])
def test_need_weights_returns_probabilities_and_same_output(causal):
    model = build(causal=causal, sharing={"strategy": "cycle", "num_unique": 2})
    ids, mask = batch()
    fast = model.encode(ids, mask)
    slow = model.encode(ids, mask, need_weights=True)
    assert fast.attentions == [] and len(slow.attentions) == L
    for probs in slow.attentions:
        assert probs.shape == (3, 2, 9, 9)
        torch.testing.assert_close(probs.sum(-1), torch.ones(3, 2, 9), rtol=0, atol=1e-5)
        assert torch.all(probs[2, :, :, 3:] < 1e-6)  # padding keys get no attention
    torch.testing.assert_close(slow.hidden[-1], fast.hidden[-1], rtol=0, atol=1e-5)


def test_return_all_gives_every_depth():
    model = build()
    ids, mask = batch()
    out = model.encode(ids, mask, return_all=True)
    assert len(out.hidden) == L
    torch.testing.assert_close(out.hidden[-1], model.encode(ids, mask).hidden[-1], rtol=0, atol=0)
