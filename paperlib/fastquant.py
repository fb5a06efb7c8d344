"""Fast QAT training: Brevitas' fake quantization in a few plain-torch ops, same numbers (``docs/protocol.md §5``).

A Brevitas layer spends most of a training step in Python: proxies, injector
lookups, ``QuantTensor`` wrapping, and a generic fake-quant graph of about ten
autograd nodes per quantizer (``x / s + z``, round, clamp by ``where``,
``(y - z) * s``, and the scale's restrict/clamp wrappers). :func:`fast_qat`
runs the same computation with one autograd node per quantizer
(:class:`WeightFakeQuant`, :class:`ActFakeQuant`; while a dynamic scale collects statistics, the ReLU, the
statistic and the quantizer in one, :class:`CollectFakeQuant`) whose backward writes out the gradients that
autograd derives from Brevitas' graph, op for op, so that

- forward values are bitwise identical (the tests compare the bits),
- gradients are identical as well, including the gradient with respect to the
  learned activation scale (straight-through round, straight-through weight
  clamp, zero gradient where an activation is clipped, the
  ``scaling_min_val`` clamp with its straight-through gradient, ``abs`` of the
  learned parameter, the percentile statistic's gradient during Brevitas'
  statistics collection, the ``0 * value`` gradient that keeps the learned
  scale's Adam state counting during collection),
- Brevitas' modules stay the parameter holders: the fast forwards read each
  layer's own weight (so weight noise, which swaps the weight for one pass,
  still acts), bias, learned scale, statistics buffer and step counter, and
  update the counter and buffer as Brevitas does. State dicts, checkpoints,
  :func:`paperlib.quant.stats_collection_state` and
  :func:`paperlib.inference.frozen_quantizers` are unaffected.

Not matched: an activation element whose input is NaN gets gradient 0 here
(Brevitas passes the gradient through); such a step has a NaN loss anyway.
A second backward through one forward (``retain_graph``) is refused.

Covered quantizers (anything else keeps Brevitas' forward): ``QuantConv2d`` /
``QuantLinear`` with a per-tensor or per-output-channel abs-max weight scale
(``Int8WeightPerTensorFloat`` and our subclasses in :mod:`paperlib.quant`), no
input/output/bias quantizer; ``QuantReLU`` with a constant scale
(``ScalingImplType.CONST``) or Brevitas' default runtime-statistics-then-learned
scale (``ParameterFromRuntimeStatsScaling``), in training and in eval mode.

The switch: :func:`paperlib.train` trains inside :func:`fast_qat` unless
:func:`use_brevitas` is active (or the environment variable ``PAPERLIB_QAT`` is
``brevitas`` in the training process); both give the same numbers, so the
choice is not part of any cache key, and this module enters the code hash under
a fixed label (:data:`paperlib.runs.fingerprint.PROVEN_EQUAL`): a faster version
that passes tests/test_fastquant.py keeps every cached result.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import brevitas.nn as qnn
import torch
from brevitas.core.bit_width import BitWidthConst
from brevitas.core.function_wrapper import (
    Identity,
    OverOutputChannelView,
    OverTensorView,
    RoundSte,
    TensorClamp,
    TensorClampSte,
)
from brevitas.core.function_wrapper.misc import Abs, InplaceAbs
from brevitas.core.function_wrapper.ops_ste import ScalarSignedClampMinSte
from brevitas.core.quant import IntQuant, RescalingIntQuant
from brevitas.core.quant.delay import _NoDelay
from brevitas.core.restrict_val import FloatRestrictValue
from brevitas.core.scaling import ConstScaling, IntScaling, ParameterFromRuntimeStatsScaling, StatsFromParameterScaling
from brevitas.core.stats import AbsMax, AbsPercentile
from brevitas.core.utils import inplace_momentum_update, inplace_tensor_mul
from brevitas.core.zero_point import ZeroZeroPoint
from brevitas.function.ops import max_int, min_int
from torch import Tensor, nn
from torch.nn import functional as F

#: Training paths :func:`use_qat` accepts: our fused quantizers or Brevitas' own modules.
QAT_MODES: tuple[str, ...] = ("fast", "brevitas")
#: Attribute under which a layer running the fast path keeps its :class:`_Spec`.
_SPEC_ATTR = "_paperlib_fastquant"


def _initial_mode() -> str:
    mode = os.environ.get("PAPERLIB_QAT", "fast").strip().lower() or "fast"
    if mode not in QAT_MODES:
        raise ValueError(f"PAPERLIB_QAT={mode!r} is not a QAT path; set it to one of {', '.join(QAT_MODES)}")
    return mode


_mode = _initial_mode()


def qat_mode() -> str:
    """The QAT path :func:`paperlib.train` uses now: ``"fast"`` (default) or ``"brevitas"``."""
    return _mode


@contextlib.contextmanager
def use_qat(mode: str) -> Iterator[None]:
    """Inside the block, :func:`paperlib.train` trains QAT models on ``mode``'s path (``"fast"`` or ``"brevitas"``).

    Both paths compute the same numbers; ``"brevitas"`` is the reference (and
    slower). Process-wide; the previous mode is restored on exit. Worker
    processes (e.g. Dask) read ``PAPERLIB_QAT`` instead.
    """
    global _mode
    if mode not in QAT_MODES:
        raise ValueError(f"unknown QAT path {mode!r}; choose one of {', '.join(QAT_MODES)}")
    before, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = before


def use_brevitas() -> contextlib.AbstractContextManager[None]:
    """Inside the block, :func:`paperlib.train` runs Brevitas' own QAT modules (the reference path)."""
    return use_qat("brevitas")


# ---------------------------------------------------------------------------------------------
# The fused fake quantizer
# ---------------------------------------------------------------------------------------------

def _threshold_backward_(g: Tensor, key: Tensor) -> Tensor:
    """``where(key > 0, g, +0.0)`` written into ``key`` (ReLU's backward kernel; no boolean mask, slow on CPUs)."""
    return torch.ops.aten.threshold_backward.grad_input(g, key, 0.0, grad_input=key)


def _scale(m: Tensor, thr: Tensor, min_val: float | None, clamp_after_div: bool) -> Tensor:
    """Brevitas' scale from the statistic ``m``: ``clamp_min(m, min_val) / thr``, or ``clamp_min(m / thr, min_val)``."""
    if clamp_after_div:
        s = m / thr
        return s if min_val is None else torch.clamp_min(s, min_val)
    return (m if min_val is None else torch.clamp_min(m, min_val)) / thr


def _consumed(ctx, name: str):
    value = getattr(ctx, name)
    if value is None:
        raise RuntimeError("the fast QAT path's backward ran twice through one forward; it does not support "
                           "retain_graph (train with paperlib.fastquant.use_brevitas() for that)")
    setattr(ctx, name, None)
    return value


class WeightFakeQuant(torch.autograd.Function):
    """Brevitas' weight quantizer (abs-max scale, signed narrow range) as one autograd node.

    Forward, as ``QuantConv2d.quant_weight().value`` computes it, for a weight
    ``w [C, ...]``: ``m = max |w|`` over the whole tensor (``per_channel=False``,
    scale shape ``[]``) or over each output channel (``True``, scale shape
    ``stats_shape = [C, 1, ...]``); ``s = clamp_min(m, min_val) / thr`` with
    ``thr = 2^(b-1) - 1``; ``out = clamp(round(w / s + 0), -thr, thr) * s``.

    Backward, as autograd derives it from Brevitas' graph, op for op: round
    and clamp straight-through, ``d/dw = (g * s) / s`` plus the scale's path
    ``d/ds = sum(g * q) - sum((g * s) * (w / s) / s)`` (reduced to the scale's
    shape), ``d/dm = (d/ds) / thr`` (the ``min_val`` clamp is straight-through),
    back through ``max`` (per tensor: shared evenly by the elements at the
    maximum; per channel: to the element ``max(dim=1)`` picked) and ``abs``.
    """

    @staticmethod
    def forward(ctx, w: Tensor, thr: Tensor, min_val: float | None, qmax: float, per_channel: bool,
                stats_shape: tuple) -> Tensor:
        a = w.abs()
        if per_channel:
            m, idx = torch.max(a.reshape(w.shape[0], -1), dim=1)
            m = m.view(stats_shape)
        else:
            m, idx = torch.max(a), None
        s = _scale(m, thr, min_val, False)
        q = (w / s).add_(0.0).round_().clamp_(-qmax, qmax)  # "+ 0.0": Brevitas' zero point
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(w)
            ctx.a, ctx.m, ctx.idx, ctx.s, ctx.thr, ctx.q = a, m, idx, s, thr, q
            return q * s
        return q.mul_(s)

    @staticmethod
    def backward(ctx, g: Tensor):
        (w,) = ctx.saved_tensors
        q, s = _consumed(ctx, "q"), ctx.s
        g_q = g * s
        g_s2 = (w / s).div_(s).mul_(g_q).sum_to_size(s.shape)  # sum(g_q * (w / s) / s)
        g_m = (q.mul_(g).sum_to_size(s.shape) - g_s2) / ctx.thr  # sum(g * q) - ...
        g_w = g_q.div_(s)
        if ctx.idx is not None:  # max over dim 1: the gradient goes to the selected element
            sel = ctx.idx.view(-1, 1)
            picked = w.reshape(w.shape[0], -1).gather(1, sel)
            g_w.view(w.shape[0], -1).scatter_add_(1, sel, g_m.reshape(-1, 1) * picked.sgn())
        else:  # max over the tensor: shared evenly by the elements at the maximum, as autograd's max backward
            at_max = ctx.a == ctx.m
            g_w.add_(torch.where(at_max, (g_m / at_max.sum()) * w.sgn(), 0.0))
        return g_w, None, None, None, None, None


class ActFakeQuant(torch.autograd.Function):
    """Brevitas' unsigned activation quantizer (after a ReLU) as one autograd node.

    Forward, as ``QuantReLU`` computes it, for ``x`` of any shape and a scale
    statistic ``m`` (0-dim): ``a = relu(x)`` (``relu=True``; else ``x >= 0``
    is the ReLU's output already), ``s`` from ``m`` as :func:`_scale`,
    ``out = clamp(round(a / s + 0), 0, qmax) * s`` with ``qmax = 2^b - 1``;
    ``thr = qmax`` as a 0-dim tensor on ``x``'s device; ``clamp_after_div``:
    a learned scale in eval mode.

    Backward, as autograd derives it from Brevitas' graph, op for op: the round
    is straight-through; the clamp (``TensorClamp``) blocks the gradient of the
    elements it clips, the ReLU that of ``x <= 0``; ``d/da = ((g * s) masked) / s``;
    ``d/ds = sum(g * q) - sum(g_q * (a / s) / s)`` (``g_q``: the masked ``g * s``);
    ``d/dm = (d/ds) / thr`` (the ``min_val`` clamp is straight-through).

    An element passes the gradient iff ``round(a / s) <= qmax``, i.e.
    ``a / s < qmax + 0.5`` (round half to even, ``qmax`` odd), and ``x > 0``;
    the forward keeps the key ``min(qmax + 0.5 - a / s, x) > 0`` instead of
    boolean masks. ``threshold(x / s)`` equals ``relu(x) / s`` bit for bit, with
    Brevitas' ``+0.0`` for ``x <= 0`` (its ``+ zero point``). Not matched: an
    element whose input is NaN gets gradient 0 here; Brevitas passes it through.
    """

    @staticmethod
    def forward(ctx, x: Tensor, m: Tensor, thr: Tensor, min_val: float | None, qmax: float, relu: bool,
                clamp_after_div: bool) -> Tensor:
        return _act_forward(ctx, x, m, thr, min_val, qmax, relu, clamp_after_div, *ctx.needs_input_grad[:2])

    @staticmethod
    def backward(ctx, g: Tensor):
        g_x, g_m = _act_backward(ctx, g, *ctx.needs_input_grad[:2])
        return g_x, g_m, None, None, None, None, None


def _act_forward(ctx, x: Tensor, m: Tensor, thr: Tensor, min_val: float | None, qmax: float, relu: bool,
                 clamp_after_div: bool, need_x: bool, need_m: bool) -> Tensor:
    """:class:`ActFakeQuant`'s forward; ``need_x`` / ``need_m``: which gradients the backward will give."""
    s = _scale(m, thr, min_val, clamp_after_div)
    y = x / s
    if relu:
        F.threshold(y, 0.0, 0.0, inplace=True)
    if not (need_x or need_m):
        return y.round_().clamp_(max=qmax).mul_(s)  # a >= 0: the lower clamp (0) never acts
    key = torch.rsub(y, qmax + 0.5)  # > 0 iff round(a / s) <= qmax
    if relu:
        key.clamp_(max=x)  # and x > 0
    ctx.key, ctx.s, ctx.thr, ctx.y = key, s, thr, None
    if not need_m:
        return y.round_().clamp_(max=qmax).mul_(s)
    out = torch.round(y).clamp_(max=qmax).mul_(s)
    ctx.y = y  # a / s, for d/ds
    # q = round(out / s) exactly when out = q * s is a normal float (q <= 2^22): then q needs no buffer
    normal = min_val is not None and min_val / float(qmax) >= 2.0 ** -100
    ctx.q = None if normal else torch.round(y).clamp_(max=qmax)
    ctx.save_for_backward(out)
    return out


def _act_backward(ctx, g: Tensor, need_x: bool, need_m: bool) -> tuple[Tensor | None, Tensor | None]:
    """:class:`ActFakeQuant`'s backward: the gradients of ``x`` and ``m`` (None where not needed)."""
    s = ctx.s
    g_q = _threshold_backward_(g, _consumed(ctx, "key")).mul_(s)  # where(pass, g, 0) * s = where(pass, g * s, 0)
    g_m = None
    if need_m:
        y = _consumed(ctx, "y")
        g_s2 = y.div_(s).mul_(g_q).sum_to_size(s.shape)  # sum(g_q * (a / s) / s)
        q = ctx.q if ctx.q is not None else torch.div(ctx.saved_tensors[0], s, out=y).round_()
        g_m = (q.mul_(g).sum_to_size(s.shape) - g_s2) / ctx.thr  # sum(g * q) - ...
    g_x = g_q.div_(s) if need_x else None
    return g_x, g_m


class CollectFakeQuant(torch.autograd.Function):
    """A ReLU and its activation quantizer while Brevitas collects a dynamic scale's statistics, as one node.

    What the chain ``a = relu(x)`` (Brevitas' ``+0.0`` for ``x <= 0``), ``m = |a|[i] + 0 * value``
    (:func:`_collect_stats`: ``i`` the element Brevitas' percentile picks) and ``ActFakeQuant(a, m)`` computes under
    autograd, bit for bit, for the case :func:`_picked` finds (``x[i] > 0``, unique, no NaN): the same output; the
    gradient of ``x``: :class:`ActFakeQuant`'s (its ReLU fused: ``relu(x) / s`` is ``threshold(x / s)`` bit for
    bit), plus the ``+0.0`` that autograd adds to every element from the statistic's path (so that ``-0.0``
    becomes ``+0.0`` as there) and ``d/dm`` at ``i`` (``sgn(a[i]) = 1``); of ``value``: ``d/dm * 0``. It skips
    the chain's ``relu``, ``abs`` and their backward passes and a tensor of zeros per call.
    """

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor, m: Tensor, index: int, thr: Tensor, min_val: float | None,
                qmax: float) -> Tensor:
        # m: the statistic x[i] + 0 * value, computed by the caller (which records it); value: the learned scale,
        # here for its gradient only
        need_x, need_value = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.index = index
        return _act_forward(ctx, x, m, thr, min_val, qmax, True, False, need_x, need_x or need_value)

    @staticmethod
    def backward(ctx, g: Tensor):
        need_x, need_value = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_x, g_m = _act_backward(ctx, g, need_x, True)
        if need_x:
            flat = g_x.view(-1)
            picked = flat[ctx.index] + g_m  # ActFakeQuant's gradient there plus d/dm * sgn(a[i])
            g_x.add_(0.0)
            flat[ctx.index] = picked
        return g_x, (g_m * 0. if need_value else None), None, None, None, None, None


# ---------------------------------------------------------------------------------------------
# Specs: what each supported layer's quantizer is, read once from its Brevitas modules
# ---------------------------------------------------------------------------------------------

class _Unsupported(Exception):
    pass


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise _Unsupported(what)


def _clamp_min_val(clamp_module: nn.Module) -> float | None:
    """``min_val`` of a ``ScalarSignedClampMinSte``, ``None`` for ``Identity``."""
    if isinstance(clamp_module, ScalarSignedClampMinSte):
        return float(clamp_module.min_val)
    _need(type(clamp_module) is Identity, f"scale clamp {type(clamp_module).__name__}")
    return None


def _check_restrict(rc: nn.Module, restrict: type, clamp_min: float | None | str = None) -> float | None:
    """Check a ``_RestrictClampValue`` (restrict_value_impl of type ``restrict``); return its clamp's min_val."""
    _need(type(rc.restrict_value_impl) is restrict, f"restrict {type(rc.restrict_value_impl).__name__}")
    if restrict is FloatRestrictValue:
        _need(type(rc.restrict_value_impl.apply_abs) is Abs, "restrict without abs")
    return _clamp_min_val(rc.clamp_ste)


def _int_quant_parts(tq: nn.Module) -> tuple[float, float, bool, Tensor]:
    """Check a ``RescalingIntQuant``; return ``(qmin, qmax, ste_clamp, thr)``."""
    _need(type(tq) is RescalingIntQuant and not tq.observer_only, f"tensor quant {type(tq).__name__}")
    iq = tq.int_quant
    _need(type(iq) is IntQuant and type(iq.float_to_int_impl) is RoundSte, "int quant or rounding")
    _need(type(iq.input_view_impl) is Identity and type(iq.delay_wrapper.delay_impl) is _NoDelay, "view or delay")
    _need(type(iq.tensor_clamp_impl) in (TensorClamp, TensorClampSte), "tensor clamp")
    _need(type(tq.zero_point_impl) is ZeroZeroPoint, "zero point")
    _need(type(tq.msb_clamp_bit_width_impl) is BitWidthConst and type(tq.int_scaling_impl) is IntScaling, "bit width")
    with torch.no_grad():
        bit_width = tq.msb_clamp_bit_width_impl()
        thr = tq.int_scaling_impl(bit_width).detach()
        qmin = float(min_int(iq.signed, iq.narrow_range, bit_width))
        qmax = float(max_int(iq.signed, iq.narrow_range, bit_width))
    return qmin, qmax, type(iq.tensor_clamp_impl) is TensorClampSte, thr


@dataclass
class _Spec:
    """One layer's quantizer as the fast forward needs it."""

    base: type
    """the layer's Brevitas class (restored on exit, and the fallback forward)"""
    qmin: float
    """lowest integer level"""
    qmax: float
    """highest integer level"""
    ste_clamp: bool
    """the clamp to [qmin, qmax] passes gradients straight through (weights)"""
    thr: Tensor
    """integer threshold (0-dim) on the layer's device when installed"""
    min_val: float | None
    """``scaling_min_val`` of the scale, None when unclamped"""
    kind: str
    """"weight", "const" or "stats" (runtime statistics, then learned)"""
    per_channel: bool = False
    """weights: one scale per output channel"""
    scaling: nn.Module | None = None
    """the Brevitas scaling module (read on every call: counter, buffer, value)"""
    stats_shape: tuple = ()
    """shape of the weight scale"""
    const_m: Tensor | None = None
    """constant activation scaling value (before clamp and division)"""
    percentile_q: float = 0.0
    """"stats": percentile of |x| collected"""
    _thr_by_device: dict = field(default_factory=dict)

    def threshold(self, device: torch.device) -> Tensor:
        if self.thr.device == device:
            return self.thr
        if device not in self._thr_by_device:
            self._thr_by_device[device] = self.thr.to(device)
        return self._thr_by_device[device]


def _weight_spec(m: nn.Module) -> _Spec:
    for name in ("input_quant", "output_quant", "bias_quant"):
        _need(not getattr(m, name).is_quant_enabled, f"{name} enabled")
    wq = m.weight_quant
    _need(wq.is_quant_enabled and not wq.export_mode and not m.return_quant_tensor, "weight quant off or export")
    _need(not getattr(wq, "requires_quant_input", False), "weight quant needs the input")
    _need(not getattr(m, "is_same_padded_strided", False), "same padding")
    qmin, qmax, ste_clamp, thr = _int_quant_parts(wq.tensor_quant)
    sc = wq.tensor_quant.scaling_impl
    _need(type(sc) is StatsFromParameterScaling, f"weight scaling {type(sc).__name__}")
    pls = sc.parameter_list_stats
    _need(pls.extra_tracked_params_list is None, "extra tracked parameters")
    view = pls.first_tracked_param.view_shape_impl
    stats = pls.stats.stats_impl
    _need(type(stats) is AbsMax and not stats.keepdim, f"weight statistic {type(stats).__name__}")
    if type(view) is OverOutputChannelView:
        _need(type(view.permute_impl) is Identity and stats.stats_reduce_dim == 1, "channel view")
        per_channel = True
    else:
        _need(type(view) is OverTensorView and stats.stats_reduce_dim is None, f"weight view {type(view).__name__}")
        per_channel = False
    ss = sc.stats_scaling_impl
    _need(type(ss.affine_rescaling) is Identity, "affine rescaling")
    _need(type(ss.restrict_scaling_pre) is Abs and type(ss.restrict_threshold_pre) is Abs, "restrict pre")
    min_val = _check_restrict(ss.restrict_clamp_scaling, FloatRestrictValue)
    _need(_clamp_min_val(ss.clamp_scaling.clamp_min_ste) == min_val, "two different scale clamps")
    _need(_check_restrict(ss.restrict_clamp_threshold, FloatRestrictValue) is None, "threshold clamp")
    _need(_check_restrict(ss.restrict_clamp_scale_threshold, Identity) is None, "scale/threshold clamp")
    _need(ste_clamp and qmin == -qmax, "weight clamp not straight-through or not symmetric")
    return _Spec(base=type(m), qmin=qmin, qmax=qmax, ste_clamp=ste_clamp, thr=thr, min_val=min_val, kind="weight",
                 per_channel=per_channel, stats_shape=tuple(pls.stats.stats_output_shape))


def _relu_spec(m: nn.Module) -> _Spec:
    _need(not m.input_quant.is_quant_enabled and not m.return_quant_tensor, "input quant or quant tensor output")
    aq = m.act_quant
    _need(aq.is_quant_enabled and not aq.export_mode and aq.fused_activation_quant_proxy is not None, "act quant off")
    act = aq.fused_activation_quant_proxy.activation_impl
    _need(type(act) is nn.ReLU and not act.inplace, f"activation {type(act).__name__}")
    tq = aq.fused_activation_quant_proxy.tensor_quant
    qmin, qmax, ste_clamp, thr = _int_quant_parts(tq)
    _need(qmin == 0.0 and not ste_clamp, "signed or straight-through activation quantizer")
    _need(qmax % 2 == 1, "narrow-range activation quantizer")
    sc = tq.scaling_impl
    if type(sc) is ConstScaling:
        min_val = _check_restrict(sc.restrict_clamp_scaling, FloatRestrictValue)
        _need(_check_restrict(sc.restrict_clamp_threshold, FloatRestrictValue) is None, "threshold clamp")
        _need(_check_restrict(sc.restrict_clamp_scale_threshold, Identity) is None, "scale/threshold clamp")
        _need(type(sc.restrict_threshold_pre) is Abs, "restrict threshold pre")
        with torch.no_grad():
            const_m = sc.restrict_clamp_scaling.restrict_value_impl(sc.value()).detach()  # |value|, clamped in the op
        return _Spec(base=type(m), qmin=qmin, qmax=qmax, ste_clamp=False, thr=thr, min_val=min_val, kind="const",
                     const_m=const_m)
    _need(type(sc) is ParameterFromRuntimeStatsScaling, f"activation scaling {type(sc).__name__}")
    _need(type(sc.stats_input_view_shape_impl) is OverTensorView and not sc.local_loss_mode, "stats view or local loss")
    stats = sc.stats.stats_impl
    _need(type(stats) is AbsPercentile and stats.stats_reduce_dim is None,
          f"activation statistic {type(stats).__name__}")
    _need(tuple(sc.stats.stats_output_shape) == () and sc.value.dim() == 0, "per-channel activation scale")
    for name in ("restrict_scaling", "restrict_threshold"):
        _need(type(getattr(sc, name).restrict_value_impl) is FloatRestrictValue, name)
    _need(type(sc.restrict_scale_threshold.restrict_value_impl) is Identity, "restrict scale threshold")
    _need(type(sc.restrict_inplace_preprocess) is InplaceAbs, "inplace restrict")
    _need(type(sc.restrict_scaling_pre) is Abs and type(sc.restrict_threshold_pre) is Abs, "restrict pre")
    return _Spec(base=type(m), qmin=qmin, qmax=qmax, ste_clamp=False, thr=thr,
                 min_val=_clamp_min_val(sc.clamp_scaling.clamp_min_ste), kind="stats", scaling=sc,
                 percentile_q=float(stats.q))


# ---------------------------------------------------------------------------------------------
# Fast forwards (the classes the layers wear while fast_qat is active)
# ---------------------------------------------------------------------------------------------

def _plain_fp32(x: object) -> bool:
    return type(x) is Tensor and x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type)


def _quant_weight(m: nn.Module, spec: _Spec) -> Tensor:
    """The layer's fake-quantized weight, as ``m.quant_weight().value`` (same bits, same gradients)."""
    w = m.weight  # read per call: weight noise swaps in a noisy tensor for one pass
    return WeightFakeQuant.apply(w, spec.threshold(w.device), spec.min_val, spec.qmax, spec.per_channel,
                                 spec.stats_shape)


class FastQuantConv2d(qnn.QuantConv2d):
    """A ``QuantConv2d`` whose forward runs :class:`WeightFakeQuant` (worn only inside :func:`fast_qat`)."""

    def forward(self, x):
        spec: _Spec = self.__dict__[_SPEC_ATTR]
        if not (_plain_fp32(x) and self.weight.dtype == torch.float32):
            return spec.base.forward(self, x)
        return self._conv_forward(x, _quant_weight(self, spec), self.bias)


class FastQuantLinear(qnn.QuantLinear):
    """A ``QuantLinear`` whose forward runs :class:`WeightFakeQuant` (worn only inside :func:`fast_qat`)."""

    def forward(self, x):
        spec: _Spec = self.__dict__[_SPEC_ATTR]
        if not (_plain_fp32(x) and self.weight.dtype == torch.float32):
            return spec.base.forward(self, x)
        return F.linear(x, _quant_weight(self, spec), self.bias)


#: Up to how many of the largest elements :func:`kth_smallest` searches with ``topk`` before it leaves the selection
#: to ``kthvalue`` (a high percentile of a large tensor is a handful of them).
TOPK_MAX = 1024


#: Elements per block in :func:`_largest`.
_BLOCK = 1024


def _largest(flat: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``torch.topk(flat, m, sorted=True)`` of a 1-D tensor for ``m`` much smaller than it, searching only the
    blocks that can hold the answer: the same values (equal elements may come back in another order).

    With ``t`` the ``m``-th largest of the blocks' maxima, there are ``m`` elements at least ``t``, so an element
    below ``t`` is not among the ``m`` largest and neither is any element of a block whose maximum is below
    ``t``: ``topk`` runs over the other blocks (and the elements after the last whole block) only. A NaN maximum,
    or more than ``4 m`` such blocks (many equal maxima), leave it to ``topk`` over all of ``flat``.
    """
    n = flat.numel()
    blocks = n // _BLOCK
    if blocks < 4 * m:
        return torch.topk(flat, m, sorted=True)
    maxima = flat[:blocks * _BLOCK].view(blocks, _BLOCK).amax(1)
    largest = torch.topk(maxima, m, sorted=True).values  # a NaN maximum comes first
    kept = (maxima >= largest[m - 1]).nonzero().squeeze(1)
    if kept.numel() > 4 * m or bool(torch.isnan(largest[0])):
        return torch.topk(flat, m, sorted=True)
    inside = torch.arange(_BLOCK, device=flat.device)
    candidates = torch.cat([(kept.unsqueeze(1) * _BLOCK + inside).reshape(-1),
                            torch.arange(blocks * _BLOCK, n, device=flat.device)])
    values, order = torch.topk(flat[candidates], m, sorted=True)
    return values, candidates[order]


def _unique_kth(flat: Tensor, k: int) -> int | None:
    """The index of the k-th smallest element of the 1-D, detached ``flat`` when :func:`_largest` finds it among
    the few largest and its value occurs once (its neighbours in that order differ from it, none is NaN); None
    otherwise (equal elements, among which kthvalue makes its own choice; NaN; more than :data:`TOPK_MAX` elements
    above it)."""
    n = flat.numel()
    top = n - k + 1  # the k-th smallest is the top-th largest
    if not 1 <= top <= min(TOPK_MAX, n):
        return None
    values, index = _largest(flat, min(top + 1, n))
    unique = (values[max(top - 2, 0):top + 1] == values[top - 1]).sum() == 1
    return int(index[top - 1]) if bool(unique & ~torch.isnan(values).any()) else None


def kth_smallest(flat: Tensor, k: int) -> Tensor:
    """``torch.kthvalue(flat, k)[0]`` of a 1-D tensor (``k`` 1-indexed): the same value, and the same gradient (all
    of it to the one element kthvalue selects), several times quicker at a high percentile.

    Brevitas' ``AbsPercentile`` (the 99.999th percentile of ``|x|`` while a dynamic scale collects statistics)
    runs ``kthvalue``, a selection over all elements that took most of such a training step on the CPU (about
    6 ms of 600,000 LeNet-5 activations). The k-th smallest of ``n`` elements is the ``(n - k + 1)``-th largest;
    ``topk`` finds the few largest (7 of those 600,000) in a fraction of the time. When that value is unique in
    ``flat`` (:func:`_unique_kth`), it is the element kthvalue selects, so ``flat`` at its index carries the same
    value and gradient; otherwise ``kthvalue`` decides.
    """
    i = _unique_kth(flat.detach(), k)
    return torch.kthvalue(flat, k)[0] if i is None else flat[i]


def _rank(spec: _Spec, n: int) -> int:
    """Brevitas' ``AbsPercentile`` rank ``k`` (1-indexed, rounded away from zero) of its percentile among ``n``."""
    return int(math.floor(.01 * spec.percentile_q * n + 0.5))


def _collect_stats(spec: _Spec, a: Tensor) -> Tensor:
    """One statistics-collection call of ``ParameterFromRuntimeStatsScaling.training_forward``.

    Returns the percentile of ``|a|`` (``a``: the ReLU output) plus Brevitas'
    ``0 * value`` (which gives the learned value a zero gradient), the
    statistic the scale is built from; updates Brevitas' buffer (first value,
    then the momentum average) and step counter as Brevitas does.
    """
    sc = spec.scaling
    flat = a.reshape(-1).abs().view(-1)
    stats = kth_smallest(flat, _rank(spec, flat.numel())) + 0. * sc.value
    _record_stats(spec, stats.detach())
    return stats


def _picked(spec: _Spec, x: Tensor) -> int | None:
    """The index into ``x.view(-1)`` of the element whose ``|relu(x)|`` is Brevitas' percentile statistic, when
    that element is positive and its value unique in ``x`` (then :class:`CollectFakeQuant` applies); None
    otherwise (zero, ties, NaN, a low percentile or a non-contiguous ``x``: :func:`_collect_stats` decides)."""
    if not x.is_contiguous():
        return None
    flat = x.detach().view(-1)  # the top-th largest of |relu(x)| is x's, when positive
    i = _unique_kth(flat, _rank(spec, flat.numel()))
    return i if i is not None and bool(flat[i] > 0) else None


def _record_stats(spec: _Spec, stats: Tensor) -> None:
    """Brevitas' bookkeeping of one statistics-collection call with the (detached) statistic ``stats``: the
    buffer (first value, then the momentum average of the ``min_val``-clamped statistic) and the step counter."""
    sc = spec.scaling
    clamped = stats if spec.min_val is None else torch.clamp_min(stats, spec.min_val)
    new_counter = sc.counter + 1
    with torch.no_grad():
        if sc.counter == 0:
            inplace_tensor_mul(sc.buffer, clamped)
        else:
            inplace_momentum_update(sc.buffer, clamped, sc.momentum, sc.counter, new_counter)
    sc.counter = new_counter


class FastQuantReLU(qnn.QuantReLU):
    """A ``QuantReLU`` whose forward runs :class:`ActFakeQuant` (worn only inside :func:`fast_qat`)."""

    def forward(self, x):
        spec: _Spec = self.__dict__[_SPEC_ATTR]
        if not _plain_fp32(x):
            return spec.base.forward(self, x)
        thr = spec.threshold(x.device)
        if spec.kind == "const":
            m = spec.const_m
            if m.device != x.device:
                m = spec.const_m = m.to(x.device)
            return ActFakeQuant.apply(x, m, thr, spec.min_val, spec.qmax, True, False)
        sc = spec.scaling
        if sc.training and sc.counter < sc.collect_stats_steps:  # statistics collection: the scale depends on x
            index = _picked(spec, x)
            if index is not None:  # the usual case, as one node
                m = x.detach().view(-1)[index] + 0. * sc.value.detach()
                _record_stats(spec, m)
                return CollectFakeQuant.apply(x, sc.value, m, index, thr, spec.min_val, spec.qmax)
            a = F.threshold(x, 0.0, 0.0)  # ReLU with +0.0 for x <= 0, as Brevitas' "+ zero point" makes it
            m = _collect_stats(spec, a)
            return ActFakeQuant.apply(a, m, thr, spec.min_val, spec.qmax, False, False)
        if sc.training and sc.counter == sc.collect_stats_steps:
            sc.init_scale()  # the learned value starts from the collected statistic
        m = torch.abs(sc.value) if sc.training or sc.counter > sc.collect_stats_steps else torch.abs(sc.buffer)
        return ActFakeQuant.apply(x, m, thr, spec.min_val, spec.qmax, True, not sc.training)


_FAST_CLASS: dict[type, type] = {qnn.QuantConv2d: FastQuantConv2d, qnn.QuantLinear: FastQuantLinear,
                                 qnn.QuantReLU: FastQuantReLU}


def _spec_for(m: nn.Module) -> _Spec:
    return _relu_spec(m) if isinstance(m, qnn.QuantReLU) else _weight_spec(m)


def install(model: nn.Module) -> tuple[list[nn.Module], dict[str, str]]:
    """Switch every supported Brevitas layer of ``model`` to its fast forward; see :func:`fast_qat`.

    Returns the switched layers and, per module name, why a Brevitas layer
    was left on Brevitas' own forward. Undo with :func:`uninstall`.
    """
    switched, skipped = [], {}
    for name, m in model.named_modules():
        fast = _FAST_CLASS.get(type(m))
        if fast is None:
            continue
        try:
            spec = _spec_for(m)
        except (_Unsupported, AttributeError) as e:
            skipped[name] = str(e)
            continue
        m.__dict__[_SPEC_ATTR] = spec
        m.__class__ = fast
        switched.append(m)
    return switched, skipped


def uninstall(layers: list[nn.Module]) -> None:
    """Give the layers that :func:`install` switched their Brevitas class (and forward) back."""
    for m in layers:
        spec = m.__dict__.pop(_SPEC_ATTR, None)
        if spec is not None:
            m.__class__ = spec.base


@contextlib.contextmanager
def fast_qat(model: nn.Module, enabled: bool | None = None) -> Iterator[list[nn.Module]]:
    """Inside, ``model``'s Brevitas layers run the fast QAT path; their classes are restored on exit.

    Every ``QuantConv2d`` / ``QuantLinear`` / ``QuantReLU`` whose quantizers the
    fast path covers (see the module docstring) temporarily becomes a
    :class:`FastQuantConv2d` / :class:`FastQuantLinear` / :class:`FastQuantReLU`
    (a subclass, so ``isinstance`` checks, hooks, parameters and the state dict
    are unchanged). Inputs that are not plain float32 tensors, and autocast,
    fall back to Brevitas' forward. Yields the switched layers.

    ``enabled=None`` follows :func:`qat_mode` (``use_brevitas()`` turns it off);
    ``False`` switches nothing. Install after moving the model to its device.
    """
    if enabled is None:
        enabled = qat_mode() == "fast"
    switched = install(model)[0] if enabled else []
    try:
        yield switched
    finally:
        uninstall(switched)
