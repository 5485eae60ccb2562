"""Masking statistics, whole-word masking, packing and the tied MLM head."""

from __future__ import annotations

import numpy as np
import torch

from conftest import sst2_slice, tiny_model
from textcls.config import PretrainConfig, TokenizerConfig, config_from_dict
from textcls.data.tokenizer import CLS, MASK, PAD, SEP, train_tokenizer
from textcls.pretrain.data import TokenizedSegment, split_sentences, tokenize_documents, word_starts
from textcls.pretrain.heads import PretrainModel
from textcls.pretrain.masking import mask_tokens
from textcls.pretrain.packing import IGNORE, collate_blocks, pack_documents, pack_sop

SPECIAL = [0, 1, 2, 3, 4]  # [PAD] [UNK] [CLS] [SEP] [MASK]
MASK_ID = 4


def _random_batch(rows: int, length: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (rows, length))
    lengths = rng.integers(length // 2, length + 1, rows)
    mask = np.arange(length)[None, :] < lengths[:, None]
    ids[:, 0] = 2
    ids[np.arange(rows), lengths - 1] = 3
    ids[~mask] = 0
    return torch.as_tensor(ids), torch.as_tensor(mask)


def test_masking_statistics_on_a_large_sample():
    ids, attention = _random_batch(500, 128, 1000)
    inputs, labels = mask_tokens(ids, attention, None, PretrainConfig(), np.random.default_rng(1), MASK_ID,
                                 SPECIAL, 1000)
    maskable = attention & (ids > 4)
    chosen = labels != IGNORE
    assert abs(chosen.sum().item() / maskable.sum().item() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original tokens
    masked = (inputs == MASK_ID) & chosen
    kept = (inputs == ids) & chosen
    replaced = chosen & ~masked & ~kept
    n = chosen.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(replaced.sum().item() / n - 0.1) < 0.02
    assert abs(kept.sum().item() / n - 0.1) < 0.02
    assert (inputs[replaced] > 4).all()  # random replacements are never special tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes


def test_special_tokens_and_padding_are_never_masked():
    ids, attention = _random_batch(300, 64, 50, seed=2)  # small vocab: many draws per id
    for whole_word in (False, True):
        cfg = PretrainConfig(mlm_probability=0.9, whole_word_mask=whole_word)
        starts = np.random.default_rng(0).random(ids.shape) < 0.5
        inputs, labels = mask_tokens(ids, attention, starts, cfg, np.random.default_rng(3), MASK_ID, SPECIAL, 50)
        special = (ids <= 4) | ~attention
        assert (labels[special] == IGNORE).all()
        assert torch.equal(inputs[special], ids[special])


def test_masks_depend_only_on_the_generator():
    ids, attention = _random_batch(8, 32, 100)
    a = mask_tokens(ids, attention, None, PretrainConfig(), np.random.default_rng([0, 1, 2]), MASK_ID, SPECIAL, 100)
    b = mask_tokens(ids, attention, None, PretrainConfig(), np.random.default_rng([0, 1, 2]), MASK_ID, SPECIAL, 100)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _wordpiece(texts, vocab_size=200):
    return train_tokenizer(texts, TokenizerConfig(vocab_size=vocab_size, min_frequency=1))


def test_whole_word_masking_never_splits_a_word():
    texts = [s for s, _ in sst2_slice(300)]
    tok = _wordpiece(texts)  # a small vocabulary: many words become several ## pieces
    docs = tokenize_documents([[t] for t in texts], tok, "wordpiece")
    blocks = pack_documents(docs, 32, tok.token_to_id(CLS), tok.token_to_id(SEP))
    batch = collate_blocks(blocks, np.arange(len(blocks)), tok.token_to_id(PAD))
    cfg = PretrainConfig(whole_word_mask=True)
    _, labels = mask_tokens(batch.input_ids, batch.attention_mask, batch.starts, cfg, np.random.default_rng(0),
                            tok.token_to_id(MASK), SPECIAL, tok.get_vocab_size())
    chosen = (labels != IGNORE).numpy()
    tokens = [[tok.id_to_token(i) for i in row] for row in batch.input_ids.tolist()]
    continuations = 0
    for r, row in enumerate(tokens):
        for i in range(2, len(row)):  # position 1 may continue a word cut by the previous block
            if row[i].startswith("##"):
                continuations += 1
                assert chosen[r, i] == chosen[r, i - 1], (row[i - 1], row[i])
    assert continuations > 100 and chosen[:, 1:].any()
    maskable = batch.attention_mask.numpy() & (batch.input_ids.numpy() > 4)
    assert abs(chosen.sum() / maskable.sum() - 0.15) < 0.03


def test_word_starts_for_cjk_and_word_ids():
    tok = _wordpiece(["价格不是太好 其他都还不错", "hello world"] * 5)
    enc = tok.encode("价格不是太好", add_special_tokens=False)
    assert len(enc.tokens) == 6 and word_starts(enc.tokens, enc.word_ids, "wordpiece").all()  # a word per character
    bpe = train_tokenizer(["unbelievable things happen", "un be liev able"] * 3,
                          TokenizerConfig(type="bpe", vocab_size=40, min_frequency=1))
    enc = bpe.encode("unbelievable things", add_special_tokens=False)
    starts = word_starts(enc.tokens, enc.word_ids, "bpe")
    assert len(enc.tokens) > 2 and starts.sum() == 2 and starts[0]


def test_packing_fills_every_block_but_the_last():
    rng = np.random.default_rng(0)
    docs = [[TokenizedSegment(rng.integers(5, 99, n), np.ones(n, bool))] for n in rng.integers(1, 40, 60)]
    blocks = pack_documents(docs, 16, 2, 3)
    lengths = [len(x) for x in blocks.ids]
    assert all(n == 16 for n in lengths[:-1]) and 3 <= lengths[-1] <= 16
    assert all(x[0] == 2 and x[-1] == 3 for x in blocks.ids)
    body = np.concatenate([x[1:-1] for x in blocks.ids])
    stream = np.concatenate([np.append(d[0].ids, 3) for d in docs])[:-1]  # documents joined by [SEP]
    assert np.array_equal(body, stream)
    batch = collate_blocks(blocks, np.arange(len(blocks) - 1), 0)
    assert batch.attention_mask.all()  # full blocks: no padding at all


def test_sop_blocks_hold_two_segments_in_or_out_of_order():
    seg = lambda *ids: TokenizedSegment(np.array(ids), np.ones(len(ids), bool))  # noqa: E731
    docs = [[seg(10, 11), seg(12, 13, 14), seg(15)] for _ in range(40)] + [[seg(20, 21)]]
    blocks = pack_sop(docs, 32, 2, 3, seed=0)
    labels = blocks.sop
    assert set(labels[:40]) == {0, 1} and labels[-1] == IGNORE  # the one-sentence document is MLM only
    for ids, types, label in zip(blocks.ids[:40], blocks.types[:40], labels[:40]):
        sep = list(ids).index(3)
        a, b = ids[1:sep].tolist(), ids[sep + 1:-1].tolist()
        first, second = (a, b) if label == 0 else (b, a)
        assert first + second == [10, 11, 12, 13, 14, 15]
        assert types.tolist() == [0] * (sep + 1) + [1] * (len(ids) - sep - 1)
    assert split_sentences("Good food. Bad service! 3.5 stars") == ["Good food.", "Bad service!", "3.5 stars"]
    assert split_sentences("价格不错。服务一般！") == ["价格不错。", "服务一般！"]


def test_mlm_head_weight_is_the_token_embedding():
    for embedding_size, sharing in ((None, "none"), (16, "all")):  # tied directly, and through E -> H
        model_cfg = tiny_model(embedding_size=embedding_size, sharing={"strategy": sharing})
        cfg = config_from_dict({"model": model_cfg, "data": {"max_length": 32}}).model
        model = PretrainModel(cfg, 100, sop=True)
        assert model.mlm.weight is model.embeddings.word.weight
        assert model.mlm.weight.data_ptr() == model.embeddings.word.weight.data_ptr()
        assert model.mlm.dense.weight.shape == (embedding_size or 32, 32)  # H -> E before the tied output
        keys = set(model.state_dict())
        assert not any(k.startswith("mlm.") and "weight" in k and "dense" not in k and "norm" not in k for k in keys)
        ids = torch.randint(5, 100, (2, 8))
        labels = torch.full_like(ids, IGNORE)
        labels[:, 3] = ids[:, 3]
        mlm_logits, sop_logits = model(ids, torch.ones_like(ids, dtype=torch.bool), torch.zeros_like(ids), labels)
        assert mlm_logits.shape == (2, 100) and sop_logits.shape == (2, 2)
        mlm_logits.sum().backward()
        assert model.embeddings.word.weight.grad is not None


def test_pre_tokenizer_keeps_latin_words_whole_and_isolates_cjk():
    # Regression: the CJK class once held the letters a, d, f (an escape Oniguruma does not read),
    # so "good" became the two words "goo" + "d" and whole-word masking split it.
    from textcls.data.tokenizer import _pre_tokenizer

    words = [w for w, _ in _pre_tokenizer(TokenizerConfig()).pre_tokenize_str("good food 2026 价格 \U00020000x")]
    assert words == ["good", "food", "2026", "价", "格", "\U00020000", "x"]
