"""Layer factory: fp32 layers or Brevitas QAT layers (docs/protocol.md §5).

The same model code builds an fp32 network or its quantized twin by asking a
:class:`Layers` factory for its convolutions, linear layers and ReLUs.

Quantization, as in the authors' ``models_noisy/util.py`` (UniHD-CEG/VANT):

- weights: signed, same bit width as activations; a per-output-channel scale
  on conv layers (``CommonIntWeightPerChannelQuant``), a per-tensor scale on
  linear layers (``CommonIntWeightPerTensorQuant``), both Brevitas'
  ``Int8WeightPerTensorFloat`` with the bit width set per layer. A linear
  layer built with ``per_channel=True`` takes the per-channel quantizer: the
  authors' VGG-11 (``models_noisy/vgg_qat.py``) quantizes its two hidden fc
  layers so, and the paper's tables were made with that code (docs/protocol.md §10).
- activations: unsigned, per tensor, at the ReLU only (input, pooling and
  BatchNorm are not quantized).

  * dynamic scaling (``scale=None``): Brevitas' default ``QuantReLU``
    quantizer (``Uint8ActPerTensorFloat``), a scale initialised from runtime
    statistics (99.999th percentile over the first training steps) and then
    learned;
  * constant scaling (``scale=s``): ``ScalingImplType.CONST`` with clipping
    maximum ``M * s``, ``M = 15 / 256 / 65536`` at 4 / 8 / 16 bits. Brevitas
    sets the step to ``M * s / (2**bits - 1)``: exactly ``s`` at 4 bits,
    ``256/255 s`` at 8 bits.

Every quantized layer returns a plain ``torch.Tensor``
(``return_quant_tensor=False``) so that noise is added to plain tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat
from torch import nn

#: Allowed bit widths (``None`` = fp32).
BIT_WIDTHS: tuple[int, ...] = (4, 8, 16)
#: Clipping maximum of constant scaling in units of ``s``, per bit width (authors' ``min_max_dict``).
CONST_SCALE_MAX: dict[int, int] = {4: 15, 8: 256, 16: 65536}


class CommonIntWeightPerTensorQuant(Int8WeightPerTensorFloat):
    """Signed per-tensor weight quantizer; the bit width comes from each layer."""

    scaling_min_val = 2e-16
    bit_width = None


class CommonIntWeightPerChannelQuant(CommonIntWeightPerTensorQuant):
    """Signed per-output-channel weight quantizer; the bit width comes from each layer."""

    scaling_per_output_channel = True


class ConstScaledActQuantUint(Uint8ActPerTensorFloat):
    """Unsigned activation quantizer with a constant (not learned) scale; ``max_val`` per layer."""

    scaling_impl_type = ScalingImplType.CONST
    min_val = 0.0
    max_val = None


def check_quant_args(bits: int | None, scale: float | None) -> None:
    """Raise ``ValueError`` unless ``bits`` and ``scale`` describe a model we can build."""
    if bits is not None and (isinstance(bits, bool) or bits not in BIT_WIDTHS):
        raise ValueError(f"bits={bits!r} is not supported; use None (fp32) or one of {', '.join(map(str, BIT_WIDTHS))}")
    if scale is None:
        return
    if bits is None:
        raise ValueError("scale is only meaningful for a quantized model; pass bits=4, 8 or 16, or scale=None for fp32")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale={scale!r} is invalid; use None (dynamic scaling) or a finite constant step s > 0")


@dataclass(frozen=True)
class Layers:
    """Builds the layers of one model: fp32 (``bits=None``) or Brevitas QAT."""

    bits: int | None = None
    """weight and activation bit width (4, 8 or 16); ``None`` = fp32"""
    scale: float | None = None
    """constant activation step ``s``; ``None`` = dynamic scaling (QAT only)"""

    def __post_init__(self) -> None:
        check_quant_args(self.bits, self.scale)

    @property
    def quantized(self) -> bool:
        """Whether the layers are Brevitas QAT layers (``bits`` is set) rather than fp32."""
        return self.bits is not None

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True) -> nn.Module:
        """Conv2d (bias by default); per-output-channel weight scale when quantized."""
        if self.bits is None:
            return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)
        return qnn.QuantConv2d(
            cin, cout, kernel, stride=stride, padding=padding, bias=bias,
            weight_bit_width=self.bits, weight_quant=CommonIntWeightPerChannelQuant,
            return_quant_tensor=False,
        )

    def linear(self, fin: int, fout: int, bias: bool = True, per_channel: bool = False) -> nn.Module:
        """Linear layer; when quantized, a per-tensor weight scale, or one per output feature with ``per_channel``.

        ``per_channel`` has no effect on an fp32 layer. The scale of a
        per-channel layer has shape ``[fout, 1]``, of a per-tensor one ``[]``.
        """
        if self.bits is None:
            return nn.Linear(fin, fout, bias=bias)
        return qnn.QuantLinear(
            fin, fout, bias=bias, weight_bit_width=self.bits,
            weight_quant=CommonIntWeightPerChannelQuant if per_channel else CommonIntWeightPerTensorQuant,
            return_quant_tensor=False,
        )

    def relu(self) -> nn.Module:
        """ReLU; quantized (unsigned, per tensor) with dynamic or constant scale."""
        if self.bits is None:
            return nn.ReLU()
        if self.scale is None:
            return qnn.QuantReLU(bit_width=self.bits, return_quant_tensor=False)
        return qnn.QuantReLU(
            bit_width=self.bits, return_quant_tensor=False,
            act_quant=ConstScaledActQuantUint, max_val=CONST_SCALE_MAX[self.bits] * float(self.scale),
        )


def stats_collection_state(model: nn.Module) -> dict[str, dict]:
    """The statistics-collection state of every dynamic-scaling quantizer of ``model``.

    Brevitas' ``ParameterFromRuntimeStatsScaling`` counts its first training
    steps in a plain attribute, and loading a state dict ends its statistics
    collection. A checkpoint therefore stores this state beside the state dict
    so that a resumed run continues exactly where it stopped.
    """
    from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling

    return {
        name: {
            "counter": int(m.counter),
            "value": m.value.detach().clone(),  # the state dict holds the running statistic here while collecting
            "buffer": m.buffer.detach().clone() if isinstance(getattr(m, "buffer", None), torch.Tensor) else None,
        }
        for name, m in model.named_modules() if isinstance(m, ParameterFromRuntimeStatsScaling)
    }


def load_stats_collection_state(model: nn.Module, state: dict[str, dict]) -> None:
    """Restore what :func:`stats_collection_state` saved (after ``load_state_dict``)."""
    modules = dict(model.named_modules())
    for name, entry in state.items():
        m = modules[name]
        m.counter = entry["counter"]
        with torch.no_grad():
            m.value.copy_(entry["value"])
        if entry["buffer"] is not None:
            m.buffer = entry["buffer"].to(m.value.device)
