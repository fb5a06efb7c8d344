"""PCM device noise on network weights: IBM aihwkit's statistical PCM model, in torch (beyond the paper).

Every Conv2d/Linear weight ``W`` (Brevitas layers: the quantized weight) is
stored on one pair of phase-change memory devices, programmed once and read
``t_inference`` s later (docs/protocol.md §13). The model is
aihwkit 1.1.0's ``PCMLikeNoiseModel`` (fitted to measured devices: Nandakumar
et al., ICECS 2019; Joshi et al., Nat. Commun. 2020) with its
``SinglePairConductanceConverter`` and ``GlobalDriftCompensation``, applied as
its inference tile applies them. Conductances in µS, times in s, ``xi ~ N(0, 1)``
per device and draw, ``c = prog_coeff``, ``g_ref = prog_coeff_g_max_reference``:

- mapping, per layer: ``s = (g_max - g_min) / max|W|`` (µS per weight unit),
  ``g+ = clip(s W, 0, g_max) + g_min``, ``g- = clip(-s W, 0, g_max) + g_min``; back ``W = (g+ - g-) / s``.
- programming: ``sigma_p = sum_i c_i (g_T / g_max)^i * g_max / g_ref``,
  ``g_P = max(0, g_T + prog_noise_scale * sigma_p * xi)``.
- drift exponent per device, from its target: ``r = max(g_T / g_max, 1e-7)``,
  ``mu = clip(-0.0155 ln r + 0.0244, 0.049, 0.1)``, ``sd = clip(-0.0125 ln r - 0.0059, 0.008, 0.045)``,
  ``nu = drift_scale * |mu + sd * xi|``.
- at ``t = t_inference + t_0``: drift ``g_D = g_P (t / t_0)^(-nu)``; 1/f read noise
  ``Q = min(0.0088 / max((g_P / g_max)^0.65, 1e-3), 0.2)``,
  ``g(t) = max(0, g_D + |g_D| * read_noise_scale * Q * sqrt(ln((t + t_read) / (2 t_read))) * xi)``;
  at ``t_inference = 0`` no drift, but read noise.
- the tile's order: ``W`` -> ``(g+, g-)`` -> programmed ``W_P``; at ``t``,
  ``W_P`` is mapped again (its own ``max|W_P|``, so the net conductance of a
  pair sits on the device of its sign), each device drifts with its ``nu``
  and gets read noise, and is mapped back to ``W(t)``.
- global drift compensation (optional): ``alpha = max(mean|W_P|, 1e-4) / max(mean|W(t)|, 1e-4)``
  (aihwkit's readout with the identity as input, baseline right after
  programming), one per layer; the layer computes with ``alpha W(t)``; biases stay digital and clean.

What differs from aihwkit: one tile per layer (aihwkit's default mapping
splits layers over 512 inputs or outputs into tiles, each with its own
``max|W|`` and ``alpha``); an ideal matrix-vector product (aihwkit's default
tile adds DAC/ADC quantization, output noise and bound management, and reads
the compensation reference through them); no weight clipping, remapping or
hardware-aware training; float64 conductances on the generator's device
(aihwkit: float32; so our mapping round trip is exact); explicit generators
and our own draw order (aihwkit: torch's global RNG), so a seed gives other
numbers from the same distributions (tests/test_pcm.py compares them).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import brevitas.nn as qnn
import pandas as pd
import torch
from torch import Tensor, nn

from .device import tf32
from .evaluate import eval_mode
from .inference import _conv, _linear, _plain_io, frozen_quantizers
from .noise import FROZEN_WEIGHT_ATTR, noise_modules, noise_settings, set_noise
from .threads import NUMERIC_THREADS, numeric_threads

_ZERO_CLIP = 1e-7  # aihwkit's floor on max|W| and on g_T / g_max
_READOUT_MIN = 1e-4  # aihwkit's floor on the compensation readout mean|W|
ANALOG_EXTRA = "aihwkit is not installed; install the analog extra: pip install -e '.[analog]'"


@dataclass(frozen=True)
class PCMModel:
    """aihwkit's ``PCMLikeNoiseModel()`` with its ``SinglePairConductanceConverter()``; defaults are aihwkit's."""

    g_max: float = 25.0
    """maximal conductance in µS; the layer's max|W| is mapped to it"""
    g_min: float = 0.0
    """minimal conductance in µS; a zero weight is mapped to it"""
    prog_coeff: tuple[float, ...] = (0.26348, 1.9650, -1.1731)
    """programming noise sigma in µS: polynomial coefficients in g_T / g_max, lowest order first"""
    prog_coeff_g_max_reference: float = 25.0
    """g_max in µS at which prog_coeff were fitted: sigma scales by g_max / it (aihwkit: g_max with own coefficients)"""
    t_0: float = 20.0
    """time in s of the first read after programming; drift is relative to it"""
    t_read: float = 250e-9
    """read duration in s of the 1/f noise fit"""
    prog_noise_scale: float = 1.0
    """factor on the programming noise sigma"""
    read_noise_scale: float = 1.0
    """factor on the 1/f read noise sigma"""
    drift_scale: float = 1.0
    """factor on every drift coefficient nu (mean and spread)"""
    drift_mean: tuple[float, float] = (-0.0155, 0.0244)
    """(a, b) of the mean of nu: a ln(g_T / g_max) + b"""
    drift_mean_range: tuple[float, float] = (0.049, 0.1)
    """clip range of the mean of nu"""
    drift_std: tuple[float, float] = (-0.0125, -0.0059)
    """(a, b) of the standard deviation of nu: a ln(g_T / g_max) + b"""
    drift_std_range: tuple[float, float] = (0.008, 0.045)
    """clip range of the standard deviation of nu"""
    read_q: float = 0.0088
    """1/f noise amplitude Q_s at g = g_max"""
    read_q_exponent: float = 0.65
    """Q_s falls as (g / g_max)^(-exponent)"""
    read_q_floor: float = 1e-3
    """floor on (g / g_max)^exponent in Q_s"""
    read_q_max: float = 0.2
    """cap on Q_s"""

    def __post_init__(self) -> None:
        for name in ("prog_coeff", "drift_mean", "drift_mean_range", "drift_std", "drift_std_range"):
            value, pair = getattr(self, name), name != "prog_coeff"
            if not (isinstance(value, Sequence) and value and all(map(_finite, value))) or (pair and len(value) != 2):
                what = "a pair of finite numbers" if pair else "a non-empty sequence of finite numbers"
                raise ValueError(f"PCMModel.{name} must be {what}, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        for name in ("g_max", "prog_coeff_g_max_reference", "t_0", "t_read", "read_q", "read_q_floor", "read_q_max"):
            _check_number(f"PCMModel.{name}", getattr(self, name), positive=True)
        for name in ("g_min", "prog_noise_scale", "read_noise_scale", "drift_scale", "read_q_exponent"):
            _check_number(f"PCMModel.{name}", getattr(self, name))
        if self.g_min >= self.g_max:
            raise ValueError(f"PCMModel.g_min must be below g_max, got g_min={self.g_min} >= g_max={self.g_max}")
        for name, (lo, hi) in (("drift_mean_range", self.drift_mean_range), ("drift_std_range", self.drift_std_range)):
            if not 0 <= lo <= hi:
                raise ValueError(f"PCMModel.{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")

    def scaled(self, noise_scale: float) -> PCMModel:
        """This model with all three noise sources multiplied by ``noise_scale`` (0: an ideal device)."""
        _check_number("noise_scale", noise_scale)
        return dataclasses.replace(self, prog_noise_scale=self.prog_noise_scale * noise_scale,
                                   read_noise_scale=self.read_noise_scale * noise_scale,
                                   drift_scale=self.drift_scale * noise_scale)

    def to_conductances(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(g+, g-, s)``: the pair's target conductances in µS (shape of ``weight``) and the scale ``s`` (µS/unit)."""
        scale = (self.g_max - self.g_min) / weight.abs().max().clamp(min=_ZERO_CLIP)
        w = weight * scale
        return w.clamp(0.0, self.g_max) + self.g_min, (-w).clamp(0.0, self.g_max) + self.g_min, scale

    def to_weights(self, g_plus: Tensor, g_minus: Tensor, scale: Tensor) -> Tensor:
        """Weights ``(g+ - g-) / s`` of a pair of conductances (µS) and its scale (µS per weight unit)."""
        return (g_plus - g_minus) / scale

    def programming_noise(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        """Programmed conductances in µS (shape of ``g_target``, µS), clipped at 0."""
        sigma, power = torch.zeros_like(g_target), torch.ones_like(g_target)
        for c in self.prog_coeff:
            sigma, power = sigma + c * power, power * (g_target / self.g_max)
        sigma = sigma * (self.g_max / self.prog_coeff_g_max_reference)
        return (g_target + self.prog_noise_scale * sigma * _randn(g_target, generator)).clamp(min=0.0)

    def drift_coefficients(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        """Drift exponents nu >= 0 (dimensionless, shape of ``g_target``), drawn from the target conductances (µS)."""
        log_r = (g_target / self.g_max).abs().clamp(min=_ZERO_CLIP).log()
        mu = (self.drift_mean[0] * log_r + self.drift_mean[1]).clamp(*self.drift_mean_range)
        sd = (self.drift_std[0] * log_r + self.drift_std[1]).clamp(*self.drift_std_range)
        return (mu + sd * _randn(g_target, generator)).abs() * self.drift_scale

    def conductance_at(self, g_prog: Tensor, nu: Tensor, t_inference: float, generator: torch.Generator) -> Tensor:
        """Conductances in µS ``t_inference`` s after programming (drift and 1/f read noise) of ``g_prog`` (µS)."""
        _check_number("t_inference", t_inference)
        t = t_inference + self.t_0
        g_drift = g_prog * (t / self.t_0) ** (-nu) if t > self.t_0 else g_prog
        q = (self.read_q / ((g_prog.abs() / self.g_max) ** self.read_q_exponent).clamp(min=self.read_q_floor))
        sigma = q.clamp(max=self.read_q_max) * math.sqrt(math.log((t + self.t_read) / (2 * self.t_read)))
        noise = g_drift.abs() * self.read_noise_scale * sigma * _randn(g_prog, generator)
        return (g_drift + noise).clamp(min=0.0)



def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_number(name: str, value: float, positive: bool = False) -> None:
    if not (_finite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (never the global RNG), got {type(generator).__name__}")


def _randn(like: Tensor, generator: torch.Generator) -> Tensor:
    _check_generator(generator)
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=generator.device).to(like.device)


DEFAULT_PCM = PCMModel()


def program_weight(
    weight: Tensor, t_inference: float, *, generator: torch.Generator, compensation: bool = True,
    pcm: PCMModel = DEFAULT_PCM,
) -> tuple[Tensor, float]:
    """One layer's weight (any shape) programmed and read ``t_inference`` s later, and its compensation factor.

    Returns ``(alpha * W(t), alpha)`` with ``W(t)`` in ``weight``'s dtype and
    device, ``alpha = 1.0`` without compensation. Computed in float64 on the
    generator's device; draws, in this order: programming noise of g+ and g-,
    nu of g+ and g-, read noise of g+ and g-.
    """
    _check_generator(generator)
    with numeric_threads(NUMERIC_THREADS):  # a mean over the weights: its bits depend on the thread count
        w = weight.detach().to(device=generator.device, dtype=torch.float64)
        g_plus, g_minus, scale = pcm.to_conductances(w)
        p_plus, p_minus = pcm.programming_noise(g_plus, generator), pcm.programming_noise(g_minus, generator)
        nu_plus, nu_minus = pcm.drift_coefficients(g_plus, generator), pcm.drift_coefficients(g_minus, generator)
        w_prog = pcm.to_weights(p_plus, p_minus, scale)
        h_plus, h_minus, scale = pcm.to_conductances(w_prog)  # the tile maps the programmed weights again
        h_plus = pcm.conductance_at(h_plus, nu_plus, t_inference, generator)
        h_minus = pcm.conductance_at(h_minus, nu_minus, t_inference, generator)
        w_t = pcm.to_weights(h_plus, h_minus, scale)
        alpha = 1.0
        if compensation:
            ref, now = (v.abs().mean().clamp(min=_READOUT_MIN) for v in (w_prog, w_t))
            alpha = float(ref / now)
            w_t = w_t * alpha
    return w_t.to(device=weight.device, dtype=weight.dtype), alpha


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    layers = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)) and not _plain_io(m):
            raise ValueError(f"layer {name!r} quantizes its input, output or bias; only weight-quantized Brevitas "
                             "layers can be programmed")
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            raise ValueError(f"layer {name!r} pads with {m.padding_mode!r}; only zero padding is supported")
        layers.append((name, m))
    return layers


@contextlib.contextmanager
def programmed(
    model: nn.Module, t_inference: float, *, generator: torch.Generator, noise_scale: float = 1.0,
    compensation: bool = True, pcm: PCMModel = DEFAULT_PCM,
) -> Iterator[dict[str, float]]:
    """Inside, every Conv2d/Linear of ``model`` (eval mode) computes with its PCM weight at ``t_inference`` s.

    Each weight (Brevitas ``QuantConv2d``/``QuantLinear``: ``quant_weight().value``)
    is programmed once on entry (:func:`program_weight`, layers in module order,
    all draws from ``generator``) and every forward pass in the block uses that
    fixed weight; biases stay clean. ``noise_scale`` multiplies programming
    noise, read noise and the drift coefficients nu (as aihwkit's three
    scales), so 0 gives the weights exactly. Yields ``{layer name: alpha}``.
    Forwards are restored on exit, also after an exception. Evaluate with
    your own loop or :func:`pcm_sweep`: ``paperlib.accuracy`` freezes Brevitas
    weights to their clean values.
    """
    if model.training:
        raise RuntimeError("programmed() is for inference: call model.eval() first")
    _check_number("t_inference", t_inference)
    pcm = pcm.scaled(noise_scale)
    layers, patched, alphas = _weight_layers(model), [], {}
    try:
        with torch.no_grad():
            for name, m in layers:
                quant = isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear))
                weight, alphas[name] = program_weight(m.quant_weight().value if quant else m.weight, t_inference,
                                                      generator=generator, compensation=compensation, pcm=pcm)
                patched.append((m, m.__dict__.get("forward"), m.__dict__.get(FROZEN_WEIGHT_ATTR)))
                m.forward = functools.partial(_conv if isinstance(m, nn.Conv2d) else _linear, m, weight)
                setattr(m, FROZEN_WEIGHT_ATTR, True)
        yield alphas
    finally:
        for m, forward, frozen in patched:
            for attr, before in (("forward", forward), (FROZEN_WEIGHT_ATTR, frozen)):
                if before is None:
                    m.__dict__.pop(attr, None)
                else:
                    m.__dict__[attr] = before


def _plain_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose Brevitas QuantConv2d/QuantLinear are torch layers with their quantized weight."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, m in list(parent.named_children()):
            if isinstance(m, qnn.QuantConv2d):
                plain = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                                  m.groups, bias=m.bias is not None)
            elif isinstance(m, qnn.QuantLinear):
                plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            else:
                continue
            with torch.no_grad():
                plain.weight.copy_(m.quant_weight().value)
                if m.bias is not None:
                    plain.bias.copy_(m.bias)
            setattr(parent, name, plain.to(m.weight.device))
    return model


def aihwkit_reference(
    model: nn.Module, t_inference: float, *, seed: int, noise_scale: float = 1.0, compensation: bool = True,
    pcm: PCMModel = DEFAULT_PCM,
) -> nn.Module:
    """An aihwkit copy of ``model`` (eval mode), programmed and drifted to ``t_inference`` s by aihwkit itself.

    aihwkit's ``TorchInferenceRPUConfig`` with an ideal forward (``is_perfect``)
    and ``PCMLikeNoiseModel`` with ``pcm``'s parameters, one tile per layer,
    digital biases; Brevitas layers become torch layers with their quantized
    weight. aihwkit draws from torch's global RNG: seeded with ``seed``, and
    its state restored afterwards. Needs the analog extra (``pip install -e '.[analog]'``).
    """
    try:
        from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel, SinglePairConductanceConverter
        from aihwkit.nn.conversion import convert_to_analog
        from aihwkit.simulator.configs import TorchInferenceRPUConfig
    except ImportError as exc:
        raise ImportError(ANALOG_EXTRA) from exc
    if model.training:
        raise RuntimeError("aihwkit_reference() is for inference: call model.eval() first")
    _check_number("t_inference", t_inference)
    fixed = ("drift_mean", "drift_mean_range", "drift_std", "drift_std_range", "read_q", "read_q_exponent",
             "read_q_floor", "read_q_max")
    if any(getattr(pcm, f) != getattr(DEFAULT_PCM, f) for f in fixed):
        raise ValueError(f"aihwkit hard-codes {', '.join(fixed)}; aihwkit_reference needs their default values")
    pcm = pcm.scaled(noise_scale)
    noise = PCMLikeNoiseModel(g_converter=SinglePairConductanceConverter(g_max=pcm.g_max, g_min=pcm.g_min),
                              t_read=pcm.t_read, t_0=pcm.t_0, prog_noise_scale=pcm.prog_noise_scale,
                              read_noise_scale=pcm.read_noise_scale, drift_scale=pcm.drift_scale)
    noise.prog_coeff, noise.prog_coeff_g_max_reference = list(pcm.prog_coeff), pcm.prog_coeff_g_max_reference
    config = TorchInferenceRPUConfig(noise_model=noise,
                                     drift_compensation=GlobalDriftCompensation() if compensation else None)
    config.forward.is_perfect = True
    config.mapping.max_input_size = config.mapping.max_output_size = 0  # one tile per layer, as ours
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # torch's RNG as it was
        torch.manual_seed(seed)
        analog = convert_to_analog(_plain_copy(model), config).eval()
        analog.program_analog_weights()
        analog.drift_analog_weights(float(t_inference))
    return analog


@torch.no_grad()
def _accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int) -> float:
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(images), batch_size):
        xb, yb = images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device)
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(images)


def pcm_sweep(
    model: nn.Module, images: Tensor, labels: Tensor, times: Sequence[float], *,
    noise_scales: Sequence[float] = (1.0,), seeds: Sequence[int] = (0, 1, 2),
    compensation: Sequence[bool] = (True, False), batch_size: int = 1000, pcm: PCMModel = DEFAULT_PCM,
    backend: str = "paperlib",
) -> pd.DataFrame:
    """Test accuracy of ``model`` on PCM devices, over inference times, noise scales, compensation and seeds.

    ``images [N, ...]`` and ``labels [N]`` are moved to the model's device
    batch by batch; ``times`` in s after programming. Each seed programs new
    devices (``torch.Generator().manual_seed(seed)``); within a seed, every time,
    scale and compensation reads the same devices, and the same seed gives the
    same numbers. Activation noise is off (restored afterwards). ``backend``:
    ``"paperlib"`` (:func:`programmed`) or ``"aihwkit"`` (:func:`aihwkit_reference`).

    Returns a tidy DataFrame, one row per (t_inference, noise_scale,
    compensation, seed) in that order, with columns ``t_inference``,
    ``noise_scale``, ``compensation``, ``seed``, ``accuracy`` (fraction),
    ``clean_accuracy`` (the digital model's) and ``backend``.
    """
    if backend not in ("paperlib", "aihwkit"):
        raise ValueError(f"unknown backend {backend!r}; choose 'paperlib' or 'aihwkit'")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"images and labels must be non-empty and equally long, got {len(images)} and {len(labels)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for t in times:
        _check_number("times", t)
    rows = []
    with numeric_threads(), eval_mode(model), noise_settings(model), tf32(False):
        if noise_modules(model):
            set_noise(model, 0.0)
        with frozen_quantizers(model, weights=False):
            clean = _accuracy(model, images, labels, batch_size)
            for t, scale, comp, seed in itertools.product(times, noise_scales, compensation, seeds):
                kw = dict(noise_scale=scale, compensation=comp, pcm=pcm)
                if backend == "aihwkit":
                    acc = _accuracy(aihwkit_reference(model, t, seed=seed, **kw), images, labels, batch_size)
                else:
                    with programmed(model, t, generator=torch.Generator().manual_seed(seed), **kw):
                        acc = _accuracy(model, images, labels, batch_size)
                rows.append({"t_inference": float(t), "noise_scale": float(scale), "compensation": bool(comp),
                             "seed": int(seed), "accuracy": acc, "clean_accuracy": clean, "backend": backend})
    return pd.DataFrame(rows)
