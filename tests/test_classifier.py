import torch

from textcls.config import ModelConfig
from textcls.model import TextClassifier


def model(**kw) -> TextClassifier:
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, dropout=0.0,
                      max_positions=64, **kw)
    torch.manual_seed(0)
    return TextClassifier(cfg, vocab_size=50, num_labels=3).eval()


def test_extra_padding_does_not_change_logits():
    for pooling in ("cls", "mean", "max", "last", "cls_tanh"):
        m = model(pooling=pooling)
        ids = torch.tensor([[2, 10, 11, 12, 3]])
        padded = torch.cat([ids, torch.zeros(1, 7, dtype=torch.long)], 1)
        mask = padded != 0
        with torch.no_grad():
            a = m(ids)
            b = m(padded, mask)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=pooling)


def test_batch_with_mixed_lengths_equals_one_by_one():
    m = model(pooling="mean")
    rows = [[2, 5, 6, 3], [2, 7, 8, 9, 10, 11, 3]]
    ids = torch.zeros(2, 7, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    with torch.no_grad():
        batch = m(ids, ids != 0)
        single = torch.cat([m(torch.tensor([r])) for r in rows])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_a_single_batch_overfits():
    m = model(pooling="cls").train()
    torch.manual_seed(1)
    ids = torch.randint(5, 50, (8, 10))
    ids[:, 0] = 2
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(m(ids), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (m.eval()(ids).argmax(1) == labels).all()
