"""Fast evaluation of Brevitas QAT models with frozen quantizers (bitwise-identical outputs).

In evaluation, weights and activation scales do not change, yet Brevitas
re-quantizes every weight on every batch and runs its general fake-quant
graph (``x / s + z``, round, clamp by ``where``, ``(y - z) * s``) per
activation. :func:`frozen_quantizers` computes each quantized weight once and
runs each ``QuantReLU`` as ``clamp(round(relu(x) / s), 0, 2^b - 1) * s`` with
Brevitas' own float32 scale, which gives the same numbers (the tests compare
bit for bit), with fewer passes over memory.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import brevitas.nn as qnn
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .noise import FROZEN_WEIGHT_ATTR


def _plain_io(m: nn.Module) -> bool:
    """A Brevitas layer with only its weights quantized (no input, output or bias quantizer)."""
    return not any(getattr(m, name).is_quant_enabled for name in ("input_quant", "output_quant", "bias_quant"))


def _conv(m: qnn.QuantConv2d, weight: Tensor, x: Tensor) -> Tensor:
    return F.conv2d(x, weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _linear(m: qnn.QuantLinear, weight: Tensor, x: Tensor) -> Tensor:
    return F.linear(x, weight, m.bias)


def _relu(scale: Tensor, qmax: float, x: Tensor) -> Tensor:
    return torch.round(torch.relu(x) / scale).clamp_(0.0, qmax).mul_(scale)


@contextlib.contextmanager
def frozen_quantizers(model: nn.Module, weights: bool = True) -> Iterator[nn.Module]:
    """Inside, ``model`` (in eval mode) evaluates with quantized weights computed once and fused ReLU quantizers.

    Layers with an input, output or bias quantizer, and signed or narrow-range
    activation quantizers, keep Brevitas' own forward. The model's forwards
    are restored on exit. Must not be used for training.

    ``weights=False`` fuses the ReLU quantizers only and leaves every weight
    layer's own forward, which re-quantizes its weight on every pass: needed
    for weight noise (``kind="weight"``), which perturbs the float weight
    before Brevitas quantizes it.
    """
    if model.training:
        raise RuntimeError("frozen_quantizers is for evaluation: call model.eval() first")
    patched: list[nn.Module] = []
    try:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)) and _plain_io(m):
                    if not weights:
                        continue
                    weight = m.quant_weight().value.detach()
                    m.forward = functools.partial(_conv if isinstance(m, qnn.QuantConv2d) else _linear, m, weight)
                    setattr(m, FROZEN_WEIGHT_ATTR, True)
                elif isinstance(m, qnn.QuantReLU) and not m.act_quant.is_signed and not m.act_quant.is_narrow_range:
                    scale = m.act_quant.scale().detach()
                    m.forward = functools.partial(_relu, scale, float(2 ** int(m.act_quant.bit_width()) - 1))
                else:
                    continue
                patched.append(m)
        yield model
    finally:
        for m in patched:
            del m.forward
            m.__dict__.pop(FROZEN_WEIGHT_ATTR, None)
