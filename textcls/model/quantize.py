"""Int8 dynamic quantization of a model's Linear layers (torch.ao's `quantize_dynamic`, per output channel),
and the quantized tensors as plain safetensors: no pickle, no packed parameters in the file.

Each quantized Linear NAME is stored as NAME.weight_int8 (out, in) int8, NAME.weight_scale (out,) float64,
NAME.weight_zero_point (out,) int64 and NAME.bias (float); every other tensor stays float. Loading builds
the float model, quantizes it the same way and then sets each layer's int8 weight from the file, so the
loaded model computes exactly what the quantized one did. Int8 layers run on the CPU only.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from textcls.errors import CheckpointError
from textcls.model.linear import Linear

METHOD = "dynamic_int8"  # run.json's `quantized.method`
INT8, SCALE, ZERO = "weight_int8", "weight_scale", "weight_zero_point"


def quantize_linear(model: nn.Module) -> nn.Module:
    """A copy of `model` whose nn.Linear layers compute with int8 weights (activations quantized per batch)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = copy.deepcopy(model)
    for module in model.modules():  # torch.ao converts exact nn.Linear layers; textcls's Linear only adds a kernel
        if isinstance(module, Linear):
            module.__class__ = nn.Linear
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def _quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicLinear)}


def int8_state(float_model: nn.Module, quantized: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors to save for `quantized` (= quantize_linear(float_model))."""
    layers = _quantized_layers(quantized)
    replaced = {f"{name}.{p}" for name in layers for p in ("weight", "bias")}
    out = {k: v for k, v in float_model.state_dict().items() if k not in replaced}
    for name, layer in layers.items():
        w = layer.weight()  # a per-channel quantized tensor
        out[f"{name}.{INT8}"] = w.int_repr()
        out[f"{name}.{SCALE}"] = w.q_per_channel_scales().double()
        out[f"{name}.{ZERO}"] = w.q_per_channel_zero_points().long()
        if layer.bias() is not None:
            out[f"{name}.bias"] = layer.bias().detach()
    return out


def load_int8(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """`model` (float, freshly built) quantized and loaded with `state` (int8_state's tensors); CheckpointError
    when the tensors do not fit it."""
    names = {k[: -len(INT8) - 1] for k in state if k.endswith("." + INT8)}
    float_state = {k: v for k, v in state.items() if not k.endswith((INT8, SCALE, ZERO))}
    for name in names:  # the dequantized weights stand in until the int8 ones are set below
        q, scale = state[f"{name}.{INT8}"], state.get(f"{name}.{SCALE}")
        if scale is None or state.get(f"{name}.{ZERO}") is None or q.dim() != 2 or scale.shape != q.shape[:1]:
            raise CheckpointError(f"{source}: the int8 layer {name} lacks its scales or has the wrong shape; "
                                  "the file is damaged: quantize the run again")
        float_state[f"{name}.weight"] = q.float() * scale.float()[:, None]
    own = model.state_dict()
    bad = [k for k, v in float_state.items() if k in own and own[k].shape != v.shape]
    missing, unexpected = model.load_state_dict(float_state, strict=False) if not bad else ([], [])
    if bad or missing or unexpected:
        raise CheckpointError(f"{source}: int8 weights do not fit the model (shapes {bad[:3]}, missing "
                              f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); the config does not "
                              "match the weights: quantize the run again")
    quantized = quantize_linear(model)
    layers = _quantized_layers(quantized)
    if set(layers) != names:
        raise CheckpointError(f"{source}: the file holds int8 weights for {len(names)} layers, the model has "
                              f"{len(layers)} Linear layers; quantize the run again with this textcls version")
    with warnings.catch_warnings():  # quantized tensor constructors are marked deprecated in torch 2.13
        warnings.simplefilter("ignore")
        for name, layer in layers.items():
            weight = torch._make_per_channel_quantized_tensor(
                state[f"{name}.{INT8}"], state[f"{name}.{SCALE}"].double(), state[f"{name}.{ZERO}"].long(), 0)
            layer.set_weight_bias(weight, state.get(f"{name}.bias"))
    return quantized.eval()
