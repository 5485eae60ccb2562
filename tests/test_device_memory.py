"""reuse_freed_memory: glibc's malloc keeps large freed blocks for later requests (textcls/device.py)."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc only")

# Page faults in the last 8 of 24 rounds that make and free a 64 MB tensor (a step's gradient of that size).
# The first rounds may still fault: torch's aligned allocation leaves a small chunk after each block, and a freed
# block joins its neighbours (and can serve the same request again) only once those are consolidated.
SCRIPT = """
import resource, sys, torch
from textcls.device import reuse_freed_memory
print(reuse_freed_memory() if sys.argv[1] == "on" else False)
for round in range(24):
    if round == 16:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.zeros(16 * 1024 * 1024)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str, **env) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD",
                                                                                              "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


def test_freed_blocks_over_32_mib_are_reused_without_new_page_faults():
    applied, reused = faults("on")
    assert applied == "True"
    assert reused < 1000  # the freed 64 MB comes back from the heap, its pages already there
    _, fresh = faults("off")
    assert fresh > 8 * 10000  # glibc's default: a new mapping each round, 16,384 pages faulted in again


def test_a_user_tuned_malloc_is_left_as_it_is():
    applied, reused = faults("on", MALLOC_ARENA_MAX="2")
    assert applied == "False" and reused > 8 * 10000


def test_training_turns_the_reuse_on(tmp_path, monkeypatch):
    from test_train_resume import small_config
    from textcls.train import classify
    from textcls.train.loop import train

    calls = []
    monkeypatch.setattr(classify, "reuse_freed_memory", lambda: calls.append(True) or True)
    train(small_config(tmp_path, "run", max_steps=1), quiet=True)
    assert calls == [True]


def test_prediction_turns_the_reuse_on(monkeypatch):
    from types import SimpleNamespace

    import torch

    from textcls import predictor

    calls = []
    monkeypatch.setattr(predictor, "reuse_freed_memory", lambda: calls.append(True) or True)
    run = SimpleNamespace(groups=None, model=torch.nn.Identity(), tokenizer=None, cfg=SimpleNamespace(data=None),
                          labels=["a", "b"], nblr=None)
    assert isinstance(predictor.run_predictor(run), predictor.ModelPredictor)
    assert calls == [True]
