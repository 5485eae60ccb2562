"""Every config in configs/ loads and validates; the sharing configs build the models they describe."""

from __future__ import annotations

from pathlib import Path

import pytest

from textcls.config import load_config
from textcls.info import model_info

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_validates(path):
    cfg = load_config(path)
    assert cfg.model.num_layers >= 1


@pytest.mark.parametrize("name,attention,ffn,embedding_size", [
    ("albert_shared", [0] * 6, [0] * 6, 128),
    ("share_every2", [0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], 128),
    ("share_attention", [0] * 6, list(range(6)), 128),
])
def test_sharing_configs(name, attention, ffn, embedding_size):
    path = CONFIGS[0].parent / f"{name}.yaml"
    cfg = load_config(path)
    assert cfg.model.embedding_size == embedding_size
    assert Path(cfg.data.train).resolve() == (path.parent / "../../shared/data/sst2/train.tsv").resolve()
    info = model_info(path)
    assert (info.attention_schedule, info.ffn_schedule) == (attention, ffn)
    assert info.counts.unique_total < info.counts.effective_total
