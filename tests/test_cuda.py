"""The CUDA path: training in bf16/fp16 on a GPU, runs that move between GPU and CPU, eval/predict --device.

Skipped where torch sees no CUDA device (CI); run them on a GPU machine with `pytest tests/test_cuda.py`.
The last test (the CLI refusing a GPU that is not there) runs everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli, sst2_slice, tiny_config, tiny_model, write_tsv
from test_train_resume import interrupt_at
from textcls.predict import predict_probabilities
from textcls.run.load import load_run
from textcls.train.loop import Interrupted, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gpu_config(tmp_path, out: str, **train_opts):
    train_file, valid_file = tmp_path / "train.tsv", tmp_path / "valid.tsv"
    if not train_file.exists():
        write_tsv(train_file, sst2_slice(3000))
        write_tsv(valid_file, sst2_slice(200, "dev"))
    cfg = tiny_config(train_file, valid_file, tmp_path / out, tokenizer={"vocab_size": 2000, "min_frequency": 2},
                      model=tiny_model(hidden_size=64, intermediate_size=128, dropout=0.1))
    opts = {"device": "cuda", "epochs": 2, "batch_size": 32, "lr": 2e-3, "warmup": 10, "eval_every": 50,
            "log_every": 10, **train_opts}
    for key, value in opts.items():
        setattr(cfg.train, key, value)
    return cfg


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_cuda_training_learns_and_writes_cpu_loadable_weights(tmp_path, precision):
    result = train(gpu_config(tmp_path, precision, precision=precision), quiet=True)
    assert result.best_metric is not None and result.best_metric > 0.6  # 200 dev rows, 2 classes
    state = weights(result.run_dir)
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in state.values())
    assert all(torch.isfinite(t).all() for t in state.values())
    log = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_adversarial_training_under_autocast(tmp_path, precision):
    """The perturbation is computed in fp32 and cast to the embeddings' dtype; fp16's gradient scale cancels out."""
    result = train(gpu_config(tmp_path, precision, precision=precision, adversarial_eps=0.5), quiet=True)
    assert result.best_metric is not None and result.best_metric > 0.6
    assert all(torch.isfinite(t).all() for t in weights(result.run_dir).values())


@cuda
def test_gpu_and_cpu_predictions_agree(tmp_path):
    result = train(gpu_config(tmp_path, "run", precision="bf16"), quiet=True)
    texts = [t for t, _ in sst2_slice(300, "dev")]
    on_cpu = predict_probabilities(load_run(result.run_dir), texts)
    gpu_run = load_run(result.run_dir, device=torch.device("cuda"))
    assert next(gpu_run.model.parameters()).device.type == "cuda"
    on_gpu = predict_probabilities(gpu_run, texts, device=torch.device("cuda"))
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
    in_bf16 = predict_probabilities(gpu_run, texts, device=torch.device("cuda"), precision="bf16")
    assert np.abs(in_bf16 - on_cpu).max() < 0.05
    assert (in_bf16.argmax(1) == on_cpu.argmax(1)).mean() > 0.97


@cuda
def test_gpu_resume_after_sigterm_continues_the_run(tmp_path, monkeypatch):
    """Close to one uninterrupted run, not bitwise: CUDA's embedding backward adds in no fixed order."""
    full = train(gpu_config(tmp_path, "full", precision="fp32"), quiet=True)
    with monkeypatch.context() as m:
        interrupt_at(m, full.steps // 3)
        with pytest.raises(Interrupted):
            train(gpu_config(tmp_path, "cut", precision="fp32"), quiet=True)
    resumed = train(gpu_config(tmp_path, "cut", precision="fp32"), resume=True, quiet=True)
    assert resumed.steps == full.steps
    a, b = weights(full.run_dir), weights(resumed.run_dir)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-3, f"resumed weights differ from the uninterrupted run by up to {worst}"


@cuda
def test_gpu_checkpoint_resumes_on_a_machine_without_cuda(tmp_path, monkeypatch):
    """`device: auto` run interrupted on the GPU, resumed where torch sees no GPU (CUDA RNG state ignored)."""
    cfg = lambda: gpu_config(tmp_path, "run", precision="bf16", device="auto")  # noqa: E731
    with monkeypatch.context() as m:
        interrupt_at(m, 60)
        with pytest.raises(Interrupted):
            train(cfg(), quiet=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    resumed = train(cfg(), resume=True, quiet=True)
    assert resumed.steps > 60 and resumed.best_metric > 0.6
    assert all(torch.isfinite(t).all() for t in weights(resumed.run_dir).values())


@cuda
def test_cli_eval_and_predict_on_the_gpu(tmp_path):
    result = train(gpu_config(tmp_path, "run", precision="bf16"), quiet=True)
    dev = tmp_path / "valid.tsv"
    reports = {}
    for device in ("cpu", "cuda"):
        proc = run_cli("eval", str(result.run_dir), str(dev), "--device", device, "--report",
                       str(tmp_path / f"{device}.json"))
        assert proc.returncode == 0, proc.stderr
        reports[device] = json.loads((tmp_path / f"{device}.json").read_text())
    assert abs(reports["cpu"]["accuracy"] - reports["cuda"]["accuracy"]) <= 1 / 200
    proc = run_cli("predict", str(result.run_dir), str(dev), "--device", "cuda", "--precision", "bf16",
                   "-o", str(tmp_path / "pred.jsonl"))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert len(rows) == 200


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_device_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    train_file = write_tsv(tmp_path / "train.tsv", sst2_slice(40))
    run = train(tiny_config(train_file, None, tmp_path / "run"), quiet=True)
    proc = run_cli("predict", str(run.run_dir), str(train_file), "--device", "cuda")
    assert proc.returncode == 2
    assert "--device is 'cuda' but no CUDA device is available" in proc.stderr
    assert "Traceback" not in proc.stderr


@cuda
def test_bf16_attention_on_cuda_does_not_use_cudnn_attention(tmp_path):
    """cuDNN attention builds a plan per new shape (tens of ms); bucketed batches change shape all the time."""
    from torch.profiler import ProfilerActivity, profile

    from textcls.config import ModelConfig
    from textcls.model import TextClassifier

    model = TextClassifier(ModelConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128), 500, 2)
    model = model.cuda().eval()
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode(), \
            torch.autocast("cuda", dtype=torch.bfloat16):
        for length in (7, 9, 13):
            ids = torch.randint(5, 500, (4, length), device="cuda")
            model(ids, torch.ones_like(ids, dtype=torch.bool)).float().cpu()
    names = {e.key for e in prof.key_averages()}
    assert any("scaled_dot_product" in n for n in names), sorted(names)[:20]
    assert not any("cudnn_attention" in n for n in names), sorted(n for n in names if "attention" in n)


@cuda
@pytest.mark.timeout(900)  # the first compile of forward and backward takes minutes on a busy machine
def test_compiled_bf16_training_on_cuda(tmp_path):
    result = train(gpu_config(tmp_path, "run", precision="bf16", compile=True, epochs=1, eval_every=0), quiet=True)
    assert result.best_metric is not None and result.best_metric > 0.55
    assert all(torch.isfinite(t).all() for t in weights(result.run_dir).values())


@cuda
@pytest.mark.timeout(900)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_static_compiled_training_replays_cuda_graphs(tmp_path, precision):
    """`train.compile: static` on a GPU: CUDA graphs over the padded shapes train as eager training does."""
    result = train(gpu_config(tmp_path, "run", precision=precision, compile="static", epochs=1, eval_every=0),
                   quiet=True)
    assert result.best_metric is not None and result.best_metric > 0.55
    assert all(torch.isfinite(t).all() for t in weights(result.run_dir).values())


@pytest.mark.parametrize("spec, message", [("tpu", "is not a device"), ("mps", "is not supported"),
                                           ("cuda:99", "CUDA device")])
def test_device_names_are_checked(spec, message):
    from textcls.errors import ConfigError
    from textcls.train.loop import select_device

    with pytest.raises(ConfigError, match=message) as err:
        select_device(spec, "--device")
    assert "--device" in str(err.value)
    assert select_device("cpu").type == "cpu"
