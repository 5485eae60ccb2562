"""`textcls pretrain` under torchrun (2 CPU processes, gloo) equals one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import child_env, sst2_slice, tiny_model
from textcls.config import TokenizerConfig, config_from_dict
from textcls.data.tokenizer import train_tokenizer
from textcls.pretrain.loop import pretrain

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


def _raw(tmp_path, grad_accum: int) -> dict:
    txt = tmp_path / "unlabelled.txt"
    if not txt.exists():
        txt.write_text("\n".join(s for s, _ in sst2_slice(300, offset=3000)) + "\n", encoding="utf-8")
        (tmp_path / "tokenizer.json").write_text(
            train_tokenizer([s for s, _ in sst2_slice(300, offset=3000)],
                            TokenizerConfig(vocab_size=300, min_frequency=1)).to_str())
    return {
        "data": {"max_length": 32},
        "tokenizer": {"path": str(tmp_path / "tokenizer.json")},
        # dropout 0: each rank draws its own dropout masks, so only dropout-free runs can match exactly
        "model": tiny_model(embedding_size=16, dropout=0.0),
        "train": {"max_steps": 5, "batch_size": 4, "grad_accum": grad_accum, "lr": 2e-3, "seed": 0,
                  "log_every": 1000, "eval_every": 5, "num_threads": 1,
                  "device": "cpu"},  # gloo on CPU, also where a GPU is visible
        "pretrain": {"files": [str(txt)], "block_size": 32},
    }


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed next to this python")
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    single = tmp_path / "single"
    pretrain(config_from_dict(_raw(tmp_path, grad_accum=2)), single, quiet=True)

    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(_raw(tmp_path, grad_accum=1)))
    ddp = tmp_path / "ddp"
    env = child_env(OMP_NUM_THREADS="1")
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "textcls", "pretrain",
                           str(cfg_path), "--output", str(ddp), "--quiet"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:  # gloo sums in another order than one process does: allow float rounding only
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0, msg=key)
    state = yaml.safe_load((ddp / "last" / "state.json").read_text())
    assert state["step"] == 5 and state["world_size"] == 2 and state["batches_per_step"] == 2
    assert proc.stdout.count("done") <= 1  # rank 0 alone reports
