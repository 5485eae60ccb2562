"""`train.compile: static`: training batches padded to a few lengths and one compiled graph per batch shape (on a
GPU replayed as CUDA graphs), with the weights eager training gives."""

from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo
from safetensors.torch import load_file
from torch._dynamo.utils import counters

from conftest import sst2_slice, tiny_config, write_tsv
from textcls.errors import ConfigError
from textcls.train.engine import STATIC_SHAPES, compile_model
from textcls.train.loop import train
from textcls.train.steps import STATIC_MULTIPLE


def test_static_compile_trains_on_a_few_shapes_to_the_eager_weights(tmp_path, monkeypatch):
    train_file = write_tsv(tmp_path / "train.tsv", sst2_slice(300))
    options, shapes = [], []
    real_compile = torch.compile

    def spy(model, **kwargs):  # dynamo as the run asks for it, without inductor's minutes of code generation
        options.append(kwargs)
        compiled = real_compile(model, backend="eager", dynamic=kwargs["dynamic"])

        def forward(input_ids, *args, **kw):
            shapes.append(tuple(input_ids.shape))
            return compiled(input_ids, *args, **kw)
        return forward

    monkeypatch.setattr(torch, "compile", spy)
    torch._dynamo.reset()
    counters.clear()
    fp32 = {"epochs": 2, "precision": "fp32"}  # bf16 rounds differently in differently padded matmuls
    train(tiny_config(train_file, None, tmp_path / "static", train={"compile": "static", **fp32}), quiet=True)
    graphs = counters["stats"]["unique_graphs"]
    assert options == [{"dynamic": False, "mode": None}]  # on the CPU: static shapes, no CUDA graphs
    assert shapes and all(length % STATIC_MULTIPLE == 0 for _, length in shapes)
    max_length = 48
    assert len(set(shapes)) <= 2 * math.ceil(max_length / STATIC_MULTIPLE)  # full and last batches per length
    assert len(set(shapes)) < len(shapes) and graphs == len(set(shapes))  # shapes recur; a graph each, no more

    train(tiny_config(train_file, None, tmp_path / "eager", train=fp32), quiet=True)  # padded to the longest row
    static, eager = load_file(tmp_path / "static" / "model.safetensors"), load_file(tmp_path / "eager" /
                                                                                       "model.safetensors")
    assert static.keys() == eager.keys()
    for name in eager:  # padding is masked: the same weights within float error
        assert torch.allclose(static[name], eager[name], atol=1e-5), name


def test_compile_settings_choose_the_graphs(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: calls.append(kwargs) or model)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 8)
    model = torch.nn.Linear(2, 2)
    assert compile_model(model, False, torch.device("cpu")) is model and not calls
    compile_model(model, True, torch.device("cpu"))
    compile_model(model, "static", torch.device("cuda"))  # only the options are chosen here: no GPU needed
    assert calls == [{"dynamic": True}, {"dynamic": False, "mode": "reduce-overhead"}]
    assert torch._dynamo.config.recompile_limit == STATIC_SHAPES  # every length bucket keeps its graph


@pytest.mark.parametrize("train_opts, model_opts, message", [
    ({"compile": "fast"}, {}, "train.compile"),
    ({"compile": "static", "batch_tokens": 512}, {}, "unset `train.batch_tokens`"),
    ({"compile": "static"}, {"padding_free": True}, "model.padding_free"),
])
def test_static_compile_refuses_what_varies_the_shapes(tmp_path, train_opts, model_opts, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path / "t.tsv", None, tmp_path / "out", train=train_opts, model=model_opts)
