"""train.adversarial_eps: the perturbation's size and direction, training only, the loop's two passes, resume."""

from __future__ import annotations

import pytest
import torch

from conftest import metrics_records, tiny_config
from test_train_resume import interrupt_at, small_config, weights
from textcls.config import ModelConfig
from textcls.errors import ConfigError
from textcls.model import TextClassifier
from textcls.train.adversarial import EmbeddingAdversary
from textcls.train.loop import Interrupted, train


def _model_and_batch():
    torch.manual_seed(0)
    model = TextClassifier(ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                                       dropout=0.0, max_positions=16), vocab_size=50, num_labels=3)
    ids = torch.randint(5, 50, (6, 9))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[3:, 6:] = False
    ids[~mask] = 0
    labels = torch.randint(0, 3, (6,))
    return model, ids, mask, labels


def _per_example_loss(model, ids, mask, labels):
    return torch.nn.functional.cross_entropy(model(ids, mask), labels, reduction="none")


def test_perturbation_has_norm_eps_per_example_and_raises_the_loss():
    model, ids, mask, labels = _model_and_batch()
    model.train()
    adversary = EmbeddingAdversary(model.embeddings.norm, eps=0.5)
    captured = []
    model.embeddings.norm.register_forward_hook(lambda m, i, o: captured.append(o.detach()))

    clean = _per_example_loss(model, ids, mask, labels)
    clean.sum().backward()  # the sum: each example's gradient is its own loss's
    adversary.perturb()
    with torch.no_grad():
        perturbed = _per_example_loss(model, ids, mask, labels)
    delta = captured[1] - captured[0]
    norms = delta.flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((6,), 0.5), rtol=1e-4, atol=1e-5)
    assert (perturbed > clean.detach()).all()  # the gradient's direction raises every example's loss

    adversary.clear()
    with torch.no_grad():
        torch.testing.assert_close(_per_example_loss(model, ids, mask, labels), clean.detach())


def test_evaluation_is_never_perturbed():
    model, ids, mask, labels = _model_and_batch()
    model.train()
    adversary = EmbeddingAdversary(model.embeddings.norm, eps=5.0)
    _per_example_loss(model, ids, mask, labels).sum().backward()
    adversary.perturb()
    model.eval()
    with torch.no_grad():
        during = model(ids, mask)
    adversary.remove()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), during)


def test_no_gradient_means_no_perturbation():
    model, ids, mask, labels = _model_and_batch()
    model.train()
    adversary = EmbeddingAdversary(model.embeddings.norm, eps=1.0)
    with torch.no_grad():
        model(ids, mask)
    with pytest.raises(RuntimeError, match="no embedding gradient"):
        adversary.perturb()
    with pytest.raises(ValueError):
        EmbeddingAdversary(model.embeddings.norm, eps=0.0)


def test_training_with_adversarial_eps_differs_learns_and_resumes_exactly(tmp_path, monkeypatch):
    plain = train(small_config(tmp_path, "plain", epochs=3), quiet=True)
    adv = train(small_config(tmp_path, "adv", epochs=3, adversarial_eps=1.0), quiet=True)
    assert adv.steps == plain.steps
    a, b = (weights(tmp_path / run / "last" / "model.safetensors") for run in ("plain", "adv"))
    assert not all(torch.equal(a[k], b[k]) for k in a)
    losses = [r["loss"] for r in metrics_records(tmp_path / "adv") if r["kind"] == "train"]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # it trains

    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(Interrupted):
            train(small_config(tmp_path, "cut", epochs=3, adversarial_eps=1.0), quiet=True)
    train(small_config(tmp_path, "cut", epochs=3, adversarial_eps=1.0), resume=True, quiet=True)
    c = weights(tmp_path / "cut" / "last" / "model.safetensors")
    assert all(torch.equal(b[k], c[k]) for k in b)


def test_negative_eps_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="train.adversarial_eps"):
        tiny_config(tmp_path / "t.tsv", None, tmp_path / "out", train={"adversarial_eps": -1.0})
    with pytest.raises(ConfigError, match="train.compile: false"):
        tiny_config(tmp_path / "t.tsv", None, tmp_path / "out", train={"adversarial_eps": 0.5, "compile": True})


def test_frozen_embeddings_still_get_a_perturbation(tmp_path):
    """trainable: head freezes the embeddings, but the loss still has a gradient with respect to them."""
    model, ids, mask, labels = _model_and_batch()
    model.train()
    for p in model.embeddings.parameters():
        p.requires_grad_(False)
    adversary = EmbeddingAdversary(model.embeddings.norm, eps=0.5)
    clean = _per_example_loss(model, ids, mask, labels)
    clean.sum().backward()
    adversary.perturb()
    with torch.no_grad():
        assert (_per_example_loss(model, ids, mask, labels) > clean.detach()).all()

    plain = small_config(tmp_path, "plain", trainable="head")
    adv = small_config(tmp_path, "adv", trainable="head", adversarial_eps=1.0)
    train(plain, quiet=True), train(adv, quiet=True)
    a, b = (weights(tmp_path / run / "last" / "model.safetensors") for run in ("plain", "adv"))
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("embeddings."))  # still frozen
