"""Embeddings (sinusoidal closed form, factorization, scaling, segments) and the pooling family."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_model
from textcls.config import config_from_dict
from textcls.model import TextClassifier
from textcls.model.embeddings import Embeddings, sinusoidal_table
from textcls.model.pooling import POOLINGS, Pooler


def model_cfg(**extra):
    return config_from_dict({"model": tiny_model(**extra), "data": {"max_length": 48}}).model


@pytest.mark.parametrize("dim", [8, 7])
def test_sinusoidal_table_matches_closed_form(dim):
    table = sinusoidal_table(12, dim)
    for pos in range(12):
        for j in range(dim):
            angle = pos / 10000 ** (2 * (j // 2) / dim)
            want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert table[pos, j].item() == pytest.approx(want, abs=1e-6)


def test_sinusoidal_positions_are_added_and_not_saved():
    torch.manual_seed(0)
    emb = Embeddings(model_cfg(position="sinusoidal", type_vocab_size=0), 40).eval()
    assert set(emb.state_dict()) == {"word.weight", "norm.weight", "norm.bias"}
    ids = torch.randint(0, 40, (2, 6))
    want = emb.norm(emb.word(ids) + sinusoidal_table(64, 32)[:6] * emb.position_scale)
    torch.testing.assert_close(emb(ids), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scaled", [False, True])
def test_sinusoidal_positions_do_not_drown_the_tokens(scaled):
    # At the default init (std 0.02) an unscaled table was 35 times the word vectors and the
    # model learned nothing (SST-2: 51% dev, chance); the table now starts at the words' size.
    torch.manual_seed(0)
    cfg = model_cfg(position="sinusoidal", type_vocab_size=0, scale_embeddings=scaled)
    emb = TextClassifier(cfg, 500, 2).embeddings
    words = (emb.word.weight[1:] * emb.scale).pow(2).mean().sqrt()
    positions = emb.sinusoidal.pow(2).mean().sqrt()
    assert 0.7 < (positions / words).item() < 1.4


def test_no_positions_make_the_encoder_order_blind():
    torch.manual_seed(0)
    model = TextClassifier(model_cfg(position="none", pooling="mean"), 40, 2).eval()
    assert not any("position" in k for k in model.state_dict())
    ids = torch.randint(5, 40, (1, 7))
    torch.testing.assert_close(model(ids.flip(1)), model(ids), rtol=0, atol=1e-5)


def test_factorized_embedding_and_scaling():
    torch.manual_seed(0)
    cfg = model_cfg(embedding_size=8, scale_embeddings=True, type_vocab_size=0, position="none")
    emb = Embeddings(cfg, 40).eval()
    assert emb.word.weight.shape == (40, 8) and emb.project.weight.shape == (32, 8)
    assert sum(p.numel() for p in emb.parameters()) == 40 * 8 + 2 * 8 + 8 * 32 + 32  # V x E + E x H
    ids = torch.randint(0, 40, (2, 5))
    want = emb.project(emb.norm(emb.word(ids) * math.sqrt(8)))
    torch.testing.assert_close(emb(ids), want, rtol=0, atol=1e-6)
    unfactorized = Embeddings(model_cfg(embedding_size=32), 40)
    assert isinstance(unfactorized.project, torch.nn.Identity)


def test_a_low_rank_word_table_projects_its_vectors():
    torch.manual_seed(0)
    emb = Embeddings(model_cfg(embeddings={"word_rank": 4}), 40).eval()
    assert emb.word.weight.shape == (40, 4) and emb.word_project.weight.shape == (32, 4)
    ids = torch.randint(0, 40, (2, 6))
    want = emb.norm(emb.word_project(emb.word(ids)) + emb.position.weight[:6] + emb.segment.weight[0])
    torch.testing.assert_close(emb(ids), want, rtol=0, atol=1e-6)
    full = sum(p.numel() for p in TextClassifier(model_cfg(), 1000, 2).parameters())
    low = sum(p.numel() for p in TextClassifier(model_cfg(embeddings={"word_rank": 4}), 1000, 2).parameters())
    assert full - low == 1000 * (32 - 4) - (4 * 32 + 32)  # the table's saving less the projection's weights


@pytest.mark.parametrize("extra, needle", [
    ({"embeddings": {"word_rank": 32}}, "between 1 and the embedding width"),
    ({"embeddings": {"word_rank": 0}}, "between 1"),
    ({"embedding_size": 16, "embeddings": {"word_rank": 16}}, r"less one \(15\)"),
    ({"embeddings": {"word_rank": 8, "pretrained": "v.txt"}}, "cannot be")])
def test_the_word_rank_is_checked(extra, needle):
    with pytest.raises(Exception, match=needle):
        model_cfg(**extra)


def test_segment_embeddings():
    torch.manual_seed(0)
    emb = Embeddings(model_cfg(), 40).eval()
    ids = torch.randint(0, 40, (2, 5))
    zeros = torch.zeros_like(ids)
    torch.testing.assert_close(emb(ids), emb(ids, zeros), rtol=0, atol=0)
    assert not torch.allclose(emb(ids, torch.ones_like(ids)), emb(ids))


def padded_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 6, 4, generator=g) - 3.0  # all negative: padding zeros would win a careless max
    lengths = [6, 4, 1]
    mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
    return x, mask, lengths


@pytest.mark.parametrize("kind", POOLINGS)
def test_pooling_on_padded_batch_equals_unpadded_example(kind):
    torch.manual_seed(0)
    pooler = Pooler(kind, 4)
    x, mask, lengths = padded_inputs()
    noisy = x.masked_fill(~mask[..., None], 100.0)  # whatever sits on padding must not matter
    pooled = pooler(noisy, mask)
    for i, n in enumerate(lengths):
        alone = pooler(x[i:i + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(pooled[i:i + 1], alone, rtol=0, atol=1e-6)


def test_pooling_values():
    x, mask, lengths = padded_inputs()
    i, n = 1, lengths[1]
    torch.testing.assert_close(Pooler("cls", 4)(x, mask)[i], x[i, 0])
    torch.testing.assert_close(Pooler("mean", 4)(x, mask)[i], x[i, :n].mean(0))
    torch.testing.assert_close(Pooler("max", 4)(x, mask)[i], x[i, :n].amax(0))
    torch.testing.assert_close(Pooler("last", 4)(x, mask)[i], x[i, n - 1])
    pooler = Pooler("cls_tanh", 4)
    torch.testing.assert_close(pooler(x, mask)[i], torch.tanh(pooler.dense(x[i, 0])))
    assert set(Pooler("mean", 4).state_dict()) == set()
    with pytest.raises(ValueError):
        Pooler("median", 4)


@pytest.mark.parametrize("kind", POOLINGS)
def test_model_pooling_ignores_padding(kind):
    torch.manual_seed(0)
    model = TextClassifier(model_cfg(pooling=kind, pool_layers=2), 40, 2).eval()
    ids = torch.randint(5, 40, (2, 7))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 4:] = False
    torch.testing.assert_close(model(ids, mask)[1:], model(ids[1:, :4]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_pool_layers_sums_the_last_k_layers(norm):
    """Each pooled layer is normalized: post-norm layers are; pre-norm ones get the final norm."""
    torch.manual_seed(0)
    model = TextClassifier(model_cfg(pooling="mean", num_layers=3, pool_layers=2, norm=norm), 40, 2).eval()
    ids = torch.randint(5, 40, (2, 7))
    mask = torch.ones_like(ids, dtype=torch.bool)
    hidden = model.encode(ids, mask, return_all=True).hidden
    below = hidden[-2] if norm == "post" else torch.nn.functional.layer_norm(
        hidden[-2], (hidden[-2].shape[-1],), model.encoder.final_norm.weight, model.encoder.final_norm.bias,
        model.encoder.final_norm.eps)
    want = model.head(model.pooler(hidden[-1] + below, mask))
    torch.testing.assert_close(model(ids, mask), want, rtol=0, atol=1e-6)


def test_ngram_buckets_hash_windows_and_skip_padding_and_the_start():
    from textcls.model.embeddings import NgramEmbedding
    ngram = NgramEmbedding([2, 3], buckets=1000, dim=4, pad_id=0)
    ids = torch.tensor([[2, 10, 11, 12, 3, 0, 0],
                        [2, 7, 10, 11, 12, 3, 0]])
    rows = ngram.bucket_ids(ids)  # (B, T, orders)
    assert rows.shape == (2, 7, 2)
    bigram, trigram = rows[..., 0], rows[..., 1]
    assert bigram[0, 0] == 0 and trigram[0, :2].tolist() == [0, 0]  # windows that start before position 0
    assert bigram[0, 5:].tolist() == [0, 0] and trigram[1, 6] == 0  # windows touching padding
    assert bool((bigram[0, 1:5] > 0).all()) and bool((trigram[0, 2:5] > 0).all())
    assert bigram[0, 2] == bigram[1, 3]  # the same (10, 11) window anywhere gets the same bucket
    assert trigram[0, 3] == trigram[1, 4]  # (10, 11, 12)
    assert bigram[0, 2] != bigram[0, 3]  # (10, 11) vs (11, 12)
    assert int(rows.max()) <= 1000
    assert ngram.table.weight[0].abs().sum() == 0  # row 0 is the padding row


def test_ngram_embeddings_are_added_saved_and_padding_blind():
    torch.manual_seed(0)
    cfg = model_cfg(type_vocab_size=0, embeddings={"ngram_orders": [2], "ngram_buckets": 50})
    emb = Embeddings(cfg, 40).eval()
    assert set(emb.state_dict()) == {"word.weight", "position.weight", "norm.weight", "norm.bias",
                                     "ngram.table.weight"}
    assert emb.ngram.table.weight.shape == (51, 32)
    ids = torch.randint(5, 40, (2, 6))
    want = emb.norm(emb.word(ids) + emb.ngram(ids) + emb.position.weight[:6])
    torch.testing.assert_close(emb(ids), want, rtol=0, atol=1e-6)
    plain = Embeddings(model_cfg(type_vocab_size=0), 40)
    assert plain.ngram is None and not any("ngram" in k for k in plain.state_dict())

    model = TextClassifier(cfg, 40, 2).eval()
    mask = torch.ones_like(ids, dtype=torch.bool)
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], 1)
    padded_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], 1)
    torch.testing.assert_close(model(padded, padded_mask), model(ids, mask), rtol=0, atol=1e-6)
    swapped = ids.clone()
    swapped[:, [2, 3]] = ids[:, [3, 2]]
    no_pos = TextClassifier(model_cfg(position="none", pooling="mean", embeddings={"ngram_orders": [2]}), 40, 2).eval()
    assert not torch.allclose(no_pos(swapped), no_pos(ids))  # n-grams make even a position-free model see order


@pytest.mark.parametrize("orders,buckets,needle", [([1], 10, "ngram_orders"), ([2, 2], 10, "ngram_orders"),
                                                   ([2], 0, "ngram_buckets")])
def test_ngram_config_is_validated(orders, buckets, needle):
    from textcls.errors import ConfigError
    with pytest.raises(ConfigError, match=needle):
        model_cfg(embeddings={"ngram_orders": orders, "ngram_buckets": buckets})


def test_attention_and_classifier_dropout_have_their_own_rates():
    torch.manual_seed(0)
    ids = torch.randint(5, 40, (2, 7))
    model = TextClassifier(model_cfg(dropout=0.0, attention_dropout=0.5), 40, 2).train()
    assert {b.attention.dropout for b in model.encoder.attention} == {0.5} and model.head_dropout.p == 0.0
    assert not torch.equal(model(ids), model(ids))  # only the attention probabilities are dropped
    model = TextClassifier(model_cfg(dropout=0.0, classifier_dropout=0.5), 40, 2).train()
    assert {b.attention.dropout for b in model.encoder.attention} == {0.0} and model.head_dropout.p == 0.5
    quiet = TextClassifier(model_cfg(dropout=0.0), 40, 2).train()
    torch.testing.assert_close(quiet(ids), quiet(ids), rtol=0, atol=0)  # no dropout anywhere: deterministic
