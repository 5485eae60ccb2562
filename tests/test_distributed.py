"""Distributed training: sharding, single-process no-ops, resume layout, and a 2-process gloo run.

The end-to-end test launches `torchrun --nproc_per_node 2` on CPU (gloo) and compares with
single-process runs of the same global batch (batch_size 16 x grad_accum 2). With one thread per
process the two compute bit-identical gradients (each micro-batch's backward is the same, the
scaling by 1/2 is exact, and a + b is the same sum in either order), so the weights are compared
with atol 1e-6: anything larger is a sharding, scaling or bookkeeping bug, not rounding.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import child_env, metrics_records, tiny_config
from textcls.config import save_config
from textcls.data.batching import BucketSampler, lengths_of
from textcls.data.pipeline import get_tokenizer, prepare_data
from textcls.errors import CheckpointError
from textcls.evaluation import evaluate_file
from textcls.run.load import load_run
from textcls.train import distributed
from textcls.train.loop import Interrupted, train

TORCHRUN = Path(sys.executable).with_name("torchrun")


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("start", [0, 5])
def test_shards_cover_each_example_once(world, start):
    lengths = np.random.default_rng(0).integers(3, 40, size=203)
    batches = BucketSampler(lengths, 16, shuffle=True, seed=1).batches(epoch=2)
    expected = np.concatenate(batches[start:])
    seen, steps = [], set()
    for r in range(world):
        shares = list(distributed.shard(batches, start, r, world))
        steps.add(len(shares))
        for indices, own, _consumed, _examples in shares:
            assert own or r > 0  # rank 0 always has a real batch; a stand-in only on later ranks
            if own:
                seen.extend(indices.tolist())
        assert sum(s[2] for s in shares) == len(batches) - start  # the position advances over all ranks
        assert sum(s[3] for s in shares) == len(expected)
    assert steps == {-(-(len(batches) - start) // world)}  # every rank runs the same number of micro-steps
    assert sorted(seen) == sorted(expected.tolist())  # each example exactly once


def test_rank_r_takes_the_rth_batch_of_each_group():
    batches = [np.arange(i * 4, i * 4 + 4) for i in range(5)]
    shares = list(distributed.shard(batches, 0, 1, 2))
    assert [s[0].tolist() for s in shares[:2]] == [batches[1].tolist(), batches[3].tolist()]
    last, own, consumed, examples = shares[2]  # the short last group: a 1-example stand-in
    assert (not own, consumed, examples, len(last)) == (True, 1, 4, 1)


def test_micro_batches_count_the_tokens_of_all_ranks(tmp_path, sst2_files):
    """One epoch's token count (padding excluded) is the dataset's, at any start and world size."""
    data = prepare_data(tiny_config(*sst2_files, tmp_path / "run"))
    lengths = lengths_of(data.train)
    sampler = BucketSampler(lengths, 16, shuffle=True, seed=0)
    got = [m.tokens for m in distributed.shard_batches(data.train, sampler, 2, epoch=1)]
    assert sum(got) == lengths.sum() and len(got) == len(sampler.batches(1))
    assert all(m.tokens == m.batch.num_tokens for m in distributed.shard_batches(data.train, sampler, 2, epoch=1))
    skipped = sum(lengths[b].sum() for b in sampler.batches(1)[:3])
    assert sum(m.tokens for m in distributed.shard_batches(data.train, sampler, 2, epoch=1, start=3)) == \
        lengths.sum() - skipped


def test_single_process_helpers_are_no_ops():
    assert not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, torch.device("cpu")) is model
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert distributed.all_sum(array) is array
    assert distributed.any_true(True) and not distributed.any_true(False)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    calls = []
    with distributed.main_first():
        calls.append(1)
    assert calls == [1]
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")


def test_resume_keeps_the_global_batch(tmp_path, monkeypatch):
    last = tmp_path / "last"
    last.mkdir()
    (last / "state.json").write_text(json.dumps({"step": 3, "batches_per_step": 4}))
    assert distributed.grad_accum_on_resume(last, grad_accum=1) == 4
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert distributed.grad_accum_on_resume(last, grad_accum=1) == 2
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(CheckpointError, match=r"\[1, 2, 4\]"):
        distributed.grad_accum_on_resume(last, grad_accum=1)
    (last / "state.json").write_text(json.dumps({"step": 3}))  # written before the key existed
    monkeypatch.setattr(distributed, "world_size", lambda: 1)
    assert distributed.grad_accum_on_resume(last, grad_accum=3) == 3


# --------------------------------------------------------------------------- torchrun, 2 processes

# Runs inside each torchrun worker: records every file this rank creates, writes, renames or
# deletes under WATCHED, then runs the given `textcls` commands in the same process group.
WORKER = r'''
import json, os, sys
watched, log_dir, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
writes = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
        paths = [path] if writing else []
    elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
        paths = list(args[:2]) if event == "os.rename" else [args[0]]
    else:
        return
    for p in paths:
        if isinstance(p, (str, os.PathLike)) and os.fspath(p).startswith(watched):
            writes.append([event, os.fspath(p)])

sys.addaudithook(hook)
from textcls.cli import app
for args in commands:
    app(args, standalone_mode=False)
with open(os.path.join(log_dir, "writes-%s.json" % os.environ["RANK"]), "w") as handle:
    json.dump(writes, handle)
'''


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst <= atol, f"{a} and {b} differ by {worst}"


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this python")
def test_torchrun_two_processes_match_single_process(tmp_path, sst2_files, monkeypatch):
    train_file, valid_file = sst2_files
    # A fixed tokenizer file: tokenizer training is not bit-reproducible across processes, and the
    # torchrun run below starts from an empty cache.
    cfg = tiny_config(train_file, valid_file, tmp_path / "unused")
    tok_path = tmp_path / "tokenizer.json"
    tok_path.write_text(get_tokenizer(cfg).to_str())
    cfg.tokenizer.path = str(tok_path)
    cfg.train.eval_batch_size = 16  # 7 eval batches: both ranks evaluate a share
    cfg.train.device = "cpu"  # two ranks on gloo, also where one GPU is visible
    cfg.train.precision = "fp32"  # equal to 1e-6 across partitions of the batch; bf16 (auto here) is not
    config = tmp_path / "config.yaml"
    save_config(cfg, config)

    # Single process, the same global batch: batch_size 16 x grad_accum 2.
    cfg.train.grad_accum = 2
    train(cfg, tmp_path / "single", quiet=True)
    cfg.train.adversarial_eps = 0.5  # two passes per micro-batch; the all-reduce only after the second
    train(cfg, tmp_path / "single_adversarial", quiet=True)
    cfg.train.adversarial_eps = 0.0
    calls = []

    def stop_at_step_5(flag: bool) -> bool:
        calls.append(flag)
        return len(calls) == 5

    with monkeypatch.context() as patch, pytest.raises(Interrupted):
        patch.setattr(distributed, "any_true", stop_at_step_5)  # the loop's SIGINT/SIGTERM check
        train(cfg, tmp_path / "half", quiet=True)
    assert json.loads((tmp_path / "half" / "last" / "state.json").read_text())["step"] == 5

    # Two processes: a fresh run (grad_accum 1) on an empty cache, then the resume of the
    # single-process checkpoint (global batch 2 micro-batches -> grad_accum 1 on 2 ranks).
    watched = tmp_path / "watched"
    cache = watched / "cache"
    shutil.move(str(tmp_path / "half"), watched / "half")
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    commands = [["train", str(config), "-o", str(watched / "ddp"), "-q"],
                ["train", str(config), "-o", str(watched / "half"), "--resume", "-q"],
                ["train", str(config), "-o", str(watched / "adversarial"), "-q", "--set", "train.adversarial_eps=0.5"],
                ["train", str(config), "-o", str(watched / "nblr"), "--set", "nblr.weight=0.5"]]
    env = child_env(TEXTCLS_CACHE=str(cache), OMP_NUM_THREADS="1")
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(worker), str(watched),
                           str(logs), json.dumps(commands)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    single, ddp, resumed = tmp_path / "single", watched / "ddp", watched / "half"
    _assert_same_weights(ddp / "model.safetensors", single / "model.safetensors")
    _assert_same_weights(ddp / "last" / "model.safetensors", single / "last" / "model.safetensors")
    _assert_same_weights(resumed / "last" / "model.safetensors", single / "last" / "model.safetensors")
    _assert_same_weights(watched / "adversarial" / "last" / "model.safetensors",
                         tmp_path / "single_adversarial" / "last" / "model.safetensors")
    with pytest.raises(AssertionError):  # and adversarial training did change the weights
        _assert_same_weights(watched / "adversarial" / "last" / "model.safetensors",
                             single / "last" / "model.safetensors")

    # Evaluation reduced across ranks = the single-process numbers.
    ours, theirs = metrics_records(ddp), metrics_records(single)
    assert [r["accuracy"] for r in ours] == [r["accuracy"] for r in theirs]
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in theirs], abs=1e-6)

    # The position is stored in world-size-independent terms.
    state = json.loads((ddp / "last" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["position"]) == (13, 1, 0)  # 25 batches / 2 per step
    assert (state["batches_per_step"], state["world_size"]) == (2, 2)

    # Rank 0 alone wrote the run directories and the tokenized cache; rank 1 wrote nothing.
    rank0 = json.loads((logs / "writes-0.json").read_text())
    rank1 = json.loads((logs / "writes-1.json").read_text())
    assert rank1 == []
    written = {Path(p).name for _, p in rank0}
    assert {"model.safetensors", "state.json", "config.yaml", "meta.json"} <= written
    assert any(p.startswith(str(cache)) for _, p in rank0)
    # The same files: under torchrun `textcls train` draws no curves.png, as the library's train() does not.
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert proc.stderr.count("done:") == 1  # -q silences the report; the one command without it: rank 0 only

    # Rank 0 alone fits the NB-LR model and reports the mix (no collective the other rank would miss).
    report = json.loads((watched / "nblr" / "eval_report.json").read_text())
    run = load_run(watched / "nblr")
    assert run.nblr[1] == 0.5 and report["nblr"]["weight"] == 0.5
    assert evaluate_file(run, str(valid_file))["accuracy"] == pytest.approx(report["accuracy"])
