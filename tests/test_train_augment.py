"""Word dropout: which tokens it may replace, its rate, and exact resume with it on."""

from __future__ import annotations

import pytest
import torch

from test_train_resume import interrupt_at, small_config, weights
from textcls.errors import ConfigError
from textcls.train.augment import drop_tokens
from textcls.train.loop import Interrupted, train

PAD, UNK, CLS, SEP = 0, 1, 2, 3


def test_drop_tokens_replaces_only_real_non_special_tokens_at_the_rate():
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (64, 40))
    ids[:, 0], ids[:, 30] = CLS, SEP
    ids[:, 31:] = PAD
    mask = ids != PAD
    assert drop_tokens(ids, mask, 0.0, UNK, (CLS, SEP)) is ids
    out = drop_tokens(ids, mask, 0.25, UNK, (CLS, SEP))
    changed = out != ids
    assert bool((out[changed] == UNK).all())
    assert not changed[:, [0, 30]].any() and not changed[:, 31:].any()  # specials and padding stay
    rate = changed.sum().item() / (64 * 29)
    assert 0.22 < rate < 0.28
    torch.manual_seed(0)
    torch.randint(5, 100, (64, 40))  # the same RNG position as above
    again = drop_tokens(ids, mask, 0.25, UNK, (CLS, SEP))
    assert torch.equal(again, out)


def test_token_dropout_changes_training_and_resumes_exactly(tmp_path, monkeypatch):
    opts = {"token_dropout": 0.3, "eval_every": 3}
    plain = train(small_config(tmp_path, "plain", eval_every=3), quiet=True)
    reference = train(small_config(tmp_path, "full", **opts), quiet=True)
    full, base = (weights(tmp_path / run / "last" / "model.safetensors") for run in ("full", "plain"))
    assert not all(torch.equal(full[k], base[k]) for k in full) and plain.steps == reference.steps
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(Interrupted):
            train(small_config(tmp_path, "cut", **opts), quiet=True)
    train(small_config(tmp_path, "cut", **opts), resume=True, quiet=True)
    cut = weights(tmp_path / "cut" / "last" / "model.safetensors")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_token_dropout_is_validated(tmp_path):
    from conftest import tiny_config

    with pytest.raises(ConfigError, match="token_dropout"):
        tiny_config(tmp_path / "t.tsv", None, tmp_path / "x", train={"token_dropout": 1.0})
