"""The sharing configs build the models they describe (tests/test_config.py validates every config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from textcls.config import load_config
from textcls.info import model_info

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name,attention,ffn,embedding_size", [
    ("albert_shared", [0] * 6, [0] * 6, 128),
    ("share_every2", [0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], 128),
    ("share_attention", [0] * 6, list(range(6)), 128),
])
def test_sharing_configs(name, attention, ffn, embedding_size):
    path = CONFIGS / f"{name}.yaml"
    cfg = load_config(path)
    assert cfg.model.embedding_size == embedding_size
    assert Path(cfg.data.train).parts[-3:] == ("data", "sst2", "train.tsv")  # a path in the config, never opened
    info = model_info(path)
    assert (info.attention_schedule, info.ffn_schedule) == (attention, ffn)
    assert info.counts.unique_total < info.counts.effective_total
