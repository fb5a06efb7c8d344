"""Packs: many networks of one architecture trained as one (horizontal fusion; docs/protocol.md §12).

On a GPU a LeNet-5 is launch-bound: one network keeps a fraction of a percent
of the device busy. A pack puts ``N`` networks of one architecture into one
module, as HFTA does (Wang et al., MLSys 2021): their convolutions become one
grouped convolution (stacked weights, ``groups = N``), their linear layers one
batched matmul, their batch norms one batch norm over ``N x C`` channels, so a
step of the pack launches the kernels of one network for all ``N``.

Layout. A pack's activations are ``[B, N * C, H, W]`` (network ``n`` owns
channels ``n * C`` to ``(n + 1) * C``) and ``[B, N * F]`` after flattening,
so the architectures' own ``forward`` methods (flatten, residual adds,
pooling) run unchanged. :func:`pack_input` and :func:`unpack_output` convert.

Each network keeps everything that makes it itself: its weights and its
Adam state (one Adam over stacked parameters is ``N`` Adams: every update is
elementwise), its batch-norm statistics, and in :func:`train_pack` its own
generator for the data order, the augmentation and the noise draws, and its
own stream for the dropout masks, drawn in the same order as :func:`paperlib.train`
draws them for that network alone. What differs from training alone is the
kernels: a grouped convolution or a batched matmul may sum in another order
than one network's, so a pack's network equals the same network trained
alone to float tolerance, not bit for bit (tests/test_pack.py measures the
difference). A pack is therefore its own way of training: a result made in
one must say so: the run engine (:mod:`paperlib.runs.packs`) records the pack in each network's cache entry and
gives pack-made results their own code fingerprint.

Quantized networks pack too (the layers :mod:`paperlib.quant` builds, on
the fast QAT path of :mod:`paperlib.fastquant`): each network's weights are
quantized with their own scales (per network, or per network and output
channel) in one op over the stacked weights; a constant-scale ReLU
quantizer is one elementwise op for all; a dynamic-scale one is each
network's own module on its channels, one after another, while the networks
collect their statistics, then one op with each network's learned scale
(:class:`PackedActQuant`). Noise on activations, any noise kind of
:mod:`paperlib.noise` but ``"weight"`` (weight noise trains alone).
"""
from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

import brevitas.nn as qnn
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .atomic import write_atomic
from .data import CIFAR10Data, augment
from .device import resolve_device, tf32
from .evaluate import eval_mode
from .fastquant import (
    _SPEC_ATTR,
    ActFakeQuant,
    WeightFakeQuant,
    _plain_fp32,
    _relu_spec,
    _Unsupported,
    _weight_spec,
    fast_qat,
)
from .noise import GaussianNoise, check_sigma, noise_settings, set_noise
from .quant import load_stats_collection_state, stats_collection_state
from .resume import quantizers_kept
from .threads import numeric_threads
from .training import TrainConfig, TrainResult, _global_rng, _own_global_rng, _set_global_rng

#: Config fields in which the networks of one pack may differ; the rest are the pack's.
PER_NETWORK_FIELDS: tuple[str, ...] = ("seed", "sigma_train")
#: Modules without state of their own, shared by the pack's networks as they are.
STATELESS: tuple[type, ...] = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)


class PackedConv2d(nn.Module):
    """``N`` convolutions ``[B, Cin, H, W] -> [B, Cout, H', W']`` as one grouped convolution on ``[B, N*Cin, H, W]``.

    ``weight``: ``[N * Cout, Cin / groups, k, k]``, network ``n``'s rows ``n * Cout`` to ``(n + 1) * Cout``.
    """

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        c = convs[0]
        self.n, self.groups, self.stride, self.padding, self.dilation = len(convs), c.groups, c.stride, c.padding, \
            c.dilation
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in convs]))
        self.bias = None if c.bias is None else nn.Parameter(torch.cat([m.bias.detach() for m in convs]))

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(x, self.weight)

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.n * self.groups)

    def unpack_into(self, convs: Sequence[nn.Conv2d]) -> None:
        """Copy network ``n``'s weights into ``convs[n]``."""
        with torch.no_grad():
            for m, w, b in zip(convs, self.weight.chunk(self.n), _chunks(self.bias, self.n)):
                if m is not None:
                    m.weight.copy_(w)
                    if b is not None:
                        m.bias.copy_(b)


class PackedLinear(nn.Module):
    """``N`` linear layers ``[B, F] -> [B, G]`` as one batched matmul on ``[B, N*F]`` -> ``[B, N*G]``.

    ``weight``: ``[N, G, F]``; ``bias``: ``[N, G]`` or None.
    """

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.n = len(linears)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))
        has_bias = linears[0].bias is not None
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears])) if has_bias else None

    def forward(self, x: Tensor) -> Tensor:
        return self._linear(x, self.weight)

    def _linear(self, x: Tensor, weight: Tensor) -> Tensor:
        b = x.shape[0]
        xs = x.reshape(b, self.n, -1).transpose(0, 1)  # [N, B, F]
        w = weight.transpose(1, 2)
        if self.bias is None:
            out = torch.bmm(xs, w)
        else:  # as F.linear's addmm: the bias is where the sums start (bit for bit one network's)
            out = torch.baddbmm(self.bias.unsqueeze(1).expand(self.n, b, -1), xs, w)
        return out.transpose(0, 1).reshape(b, -1)

    def unpack_into(self, linears: Sequence[nn.Linear]) -> None:
        """Copy network ``n``'s weights into ``linears[n]``."""
        with torch.no_grad():
            for n, m in enumerate(linears):
                if m is not None:
                    m.weight.copy_(self.weight[n])
                    if self.bias is not None:
                        m.bias.copy_(self.bias[n])


class PackedBatchNorm2d(nn.BatchNorm2d):
    """``N`` batch norms over ``C`` channels as one over ``N * C`` (each channel keeps its own statistics)."""

    def __init__(self, norms: Sequence[nn.BatchNorm2d]) -> None:
        c = norms[0]
        super().__init__(len(norms) * c.num_features, c.eps, c.momentum, c.affine, c.track_running_stats)
        self.n = len(norms)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(c, name) is not None:
                    getattr(self, name).copy_(torch.cat([getattr(m, name) for m in norms]))
            if c.num_batches_tracked is not None:
                self.num_batches_tracked.copy_(c.num_batches_tracked)

    def unpack_into(self, norms: Sequence[nn.BatchNorm2d]) -> None:
        """Copy network ``n``'s affine weights and running statistics into ``norms[n]``."""
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(self, name) is not None:
                    for m, v in zip(norms, getattr(self, name).chunk(self.n)):
                        if m is not None:
                            getattr(m, name).copy_(v)
            if self.num_batches_tracked is not None:
                for m in norms:
                    if m is not None:
                        m.num_batches_tracked.copy_(self.num_batches_tracked)


def _weight_quant_spec(layers: Sequence[nn.Module]):
    """The fast path's weight quantizer of ``layers`` (one spec for all of them), or one clear error."""
    try:
        specs = [_weight_spec(m) for m in layers]
    except (_Unsupported, AttributeError) as e:
        raise ValueError(f"a pack stacks Brevitas layers whose quantizers paperlib.fastquant covers; "
                         f"{type(layers[0]).__name__} has another ({e})") from None
    first = specs[0]
    for sp in specs[1:]:
        if (sp.qmax, sp.min_val, sp.per_channel, float(sp.thr)) != (first.qmax, first.min_val, first.per_channel,
                                                                    float(first.thr)):
            raise ValueError("a pack takes networks of one architecture and bit width; their weight quantizers "
                             "differ")
    return first


def _quantized_weight(w: Tensor, rows: int, spec) -> Tensor:
    """``N`` networks' stacked weight ``w`` fake-quantized as each network's layer quantizes its own
    (:class:`paperlib.fastquant.WeightFakeQuant`): ``rows`` scales, one per network (per-tensor quantizers) or
    one per network and output channel (per-channel ones)."""
    flat = w.reshape(rows, -1)
    shape = (rows,) + (1,) * (flat.dim() - 1)
    return WeightFakeQuant.apply(flat, spec.threshold(w.device), spec.min_val, spec.qmax, True, shape).view(w.shape)


class PackedQuantConv2d(PackedConv2d):
    """``N`` Brevitas ``QuantConv2d`` as one grouped convolution; each network's weight quantized with its own
    scales (per output channel, as :mod:`paperlib.quant` builds them), by the fast path's quantizer."""

    def __init__(self, convs: Sequence[nn.Module]) -> None:
        super().__init__(convs)
        self.spec = _weight_quant_spec(convs)
        self.cout = convs[0].out_channels

    def forward(self, x: Tensor) -> Tensor:
        rows = self.n * (self.cout if self.spec.per_channel else 1)
        return self._conv(x, _quantized_weight(self.weight, rows, self.spec))


class PackedQuantLinear(PackedLinear):
    """``N`` Brevitas ``QuantLinear`` as one batched matmul; each network's weight quantized with its own scale
    (per tensor, or per output feature), by the fast path's quantizer."""

    def __init__(self, linears: Sequence[nn.Module]) -> None:
        super().__init__(linears)
        self.spec = _weight_quant_spec(linears)

    def forward(self, x: Tensor) -> Tensor:
        rows = self.weight.shape[0] * (self.weight.shape[1] if self.spec.per_channel else 1)
        return self._linear(x, _quantized_weight(self.weight, rows, self.spec))


def _chunks(t: Tensor | None, n: int) -> Sequence[Tensor | None]:
    return [None] * n if t is None else t.chunk(n)


class _PerNetwork(nn.Module):
    """Applies network ``n``'s own module to its channels (``x.chunk(N, dim=1)[n]``, made contiguous)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(modules)

    def forward(self, x: Tensor) -> Tensor:
        if not self.any_active():
            return x
        return torch.cat([m(c.contiguous()) for m, c in zip(self.nets, x.chunk(len(self.nets), dim=1))], dim=1)

    def any_active(self) -> bool:
        return True

    def unpack_into(self, modules: Sequence[nn.Module | None]) -> None:
        """Nothing to copy: noise settings and RNG streams are the pack's, not the networks' weights."""


class PackedNoise(_PerNetwork):
    """``N`` :class:`paperlib.noise.GaussianNoise` modules, each on its network's channels with its own sigma,
    kind and generator (the same draws, in the same order, as for that network alone)."""

    def any_active(self) -> bool:
        return any(m.active() for m in self.nets)


class PackedDropout(_PerNetwork):
    """``N`` dropouts, each drawing its masks from its network's own stream of torch's global RNG.

    :func:`paperlib.train` runs each network on its own stream of the global
    RNG (dropout draws from it); a pack keeps ``N`` such streams (:attr:`states`,
    one per network, set by :func:`train_pack`) and swaps each in for its
    network's mask.
    """

    def __init__(self, modules: Sequence[nn.Dropout]) -> None:
        super().__init__(modules)
        self.states: list[dict] | None = None

    def any_active(self) -> bool:
        return self.training and self.nets[0].p > 0

    def forward(self, x: Tensor) -> Tensor:
        if not self.any_active():
            return x
        if self.states is None:
            raise RuntimeError("a pack's dropout needs each network's RNG stream: train it with paperlib.train_pack")
        outs = []
        for n, (m, c) in enumerate(zip(self.nets, x.chunk(len(self.nets), dim=1))):
            with _global_rng_state(self.states[n], x.device):
                outs.append(m(c.contiguous()))
        return torch.cat(outs, dim=1)


class PackedActQuant(_PerNetwork):
    """``N`` Brevitas ``QuantReLU`` with a dynamic scale, each on its network's channels: each collects its own
    statistics and learns its own scale, as for that network alone.

    While any network collects statistics (Brevitas' first steps), each
    network's own module runs on its channels, one after another (the same
    forward, bit for bit). Afterwards, on the fast QAT path, all networks are
    quantized in one op with their own scales (the learned values, or in eval
    mode what each module would use), as :class:`paperlib.fastquant.FastQuantReLU`
    computes each: the same outputs bit for bit; the gradient of each learned
    scale sums its network's elements in another order (float tolerance).
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__(modules)
        #: each network's Brevitas scale (counter, statistics buffer, learned value)
        self.scalings = [m.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl for m in self.nets]

    def forward(self, x: Tensor) -> Tensor:
        spec = self.nets[0].__dict__.get(_SPEC_ATTR)  # set while paperlib.fastquant.fast_qat is on
        scalings = self.scalings
        if spec is None or not _plain_fp32(x) or not x.is_contiguous() or any(
                sc.training and sc.counter < sc.collect_stats_steps for sc in scalings):
            return super().forward(x)
        for sc in scalings:
            if sc.training and sc.counter == sc.collect_stats_steps:
                sc.init_scale()  # the learned value starts from the collected statistic
        m = torch.stack([torch.abs(sc.value) if sc.training or sc.counter > sc.collect_stats_steps
                         else torch.abs(sc.buffer) for sc in scalings]).view(1, len(scalings), 1)
        out = ActFakeQuant.apply(x.view(x.shape[0], len(scalings), -1), m, spec.threshold(x.device), spec.min_val,
                                 spec.qmax, True, not scalings[0].training)
        return out.view(x.shape)

    def unpack_into(self, modules: Sequence[nn.Module | None]) -> None:
        """Copy each network's scale state (learned value, statistics buffer, step counter) into ``modules[n]``."""
        from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling

        for own, m in zip(self.nets, modules):
            if m is None:
                continue
            for a, b in zip(own.modules(), m.modules()):
                if isinstance(a, ParameterFromRuntimeStatsScaling):
                    with torch.no_grad():
                        b.value.copy_(a.value)
                    b.counter = a.counter
                    if isinstance(getattr(a, "buffer", None), Tensor):
                        b.buffer = a.buffer.detach().clone()


def _const_act_quant(relus: Sequence[nn.Module]) -> nn.Module | None:
    """One copy of ``relus[0]`` when every network's ReLU quantizer has the same constant scale (an elementwise
    op: one module serves the whole pack), else None."""
    try:
        specs = [_relu_spec(m) for m in relus]
    except (_Unsupported, AttributeError) as e:
        raise ValueError(f"a pack stacks Brevitas layers whose quantizers paperlib.fastquant covers; "
                         f"{type(relus[0]).__name__} has another ({e})") from None
    if specs[0].kind != "const":
        return None
    key = [(sp.kind, sp.qmax, sp.min_val, float(sp.thr), float(sp.const_m)) for sp in specs]
    if any(k != key[0] for k in key):
        raise ValueError("a pack takes networks of one architecture, bit width and scale; their ReLU quantizers "
                         "differ")
    return copy.deepcopy(relus[0])


class _global_rng_state:  # noqa: N801  (a context manager used like a function)
    """Inside the block torch's global RNG (CPU, and ``device`` when CUDA) is at ``state``; afterwards ``state``
    holds where it got to and the caller's RNG is restored."""

    def __init__(self, state: dict, device: torch.device) -> None:
        self.state, self.device = state, device

    def __enter__(self) -> None:
        self.saved = _global_rng(self.device)
        _set_global_rng(self.state, self.device)

    def __exit__(self, *exc) -> None:
        self.state.update(_global_rng(self.device))
        _set_global_rng(self.saved, self.device)


def _noise_copy(m: GaussianNoise) -> GaussianNoise:
    new = GaussianNoise()
    new.sigma, new.kind, new.when, new.generator = m.sigma, m.kind, m.when, m.generator
    return new


def _pack_module(mods: Sequence[nn.Module | None]) -> nn.Module | None:
    first = mods[0]
    if first is None:
        return None
    kinds = {type(m) for m in mods}
    if len(kinds) > 1:
        raise ValueError(f"a pack takes networks of one architecture; found {sorted(k.__name__ for k in kinds)} "
                         "at the same place")
    if type(first) is qnn.QuantConv2d:
        return PackedQuantConv2d(mods)
    if type(first) is qnn.QuantLinear:
        return PackedQuantLinear(mods)
    if type(first) is qnn.QuantReLU:
        shared = _const_act_quant(mods)
        return shared if shared is not None else PackedActQuant([copy.deepcopy(m) for m in mods])
    if type(first) is nn.Conv2d:
        return PackedConv2d(mods)
    if type(first) is nn.Linear:
        return PackedLinear(mods)
    if type(first) is nn.BatchNorm2d:
        return PackedBatchNorm2d(mods)
    if type(first) is GaussianNoise:
        return PackedNoise([_noise_copy(m) for m in mods])
    if type(first) is nn.Dropout:
        return PackedDropout([copy.deepcopy(m) for m in mods])
    if isinstance(first, STATELESS):
        return copy.deepcopy(first)
    if any(True for _ in first.named_parameters(recurse=False)) or any(True for _ in first.named_buffers(
            recurse=False)):
        raise ValueError(f"a pack takes networks of paperlib's layers; {type(first).__name__} has weights of its own "
                         "that a pack cannot stack (such a network trains alone: paperlib.train)")
    if not first._modules:
        raise ValueError(f"a pack cannot stack {type(first).__name__} layers; packs take networks of paperlib's "
                         "layers (such a network trains alone: paperlib.train)")
    new = type(first).__new__(type(first))
    nn.Module.__init__(new)  # its own parameter, buffer, module and hook tables
    for key, value in first.__dict__.items():
        if key not in new.__dict__:
            new.__dict__[key] = copy.deepcopy(value)  # the container's own settings (e.g. a stride)
    for name in first._modules:
        new._modules[name] = _pack_module([m._modules[name] for m in mods])
    return new


def _unpack_module(packed: nn.Module | None, mods: Sequence[nn.Module | None]) -> None:
    if packed is None:
        return
    if hasattr(packed, "unpack_into"):
        packed.unpack_into(mods)
        return
    for name, child in packed._modules.items():
        _unpack_module(child, [None if m is None else m._modules[name] for m in mods])


def pack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One module computing ``len(models)`` networks of one architecture at once (the module docstring).

    Args:
        models: networks of one architecture, bit width and scale (e.g. ``build_model("lenet5", 8, None, seed=s)``);
            their weights, quantizer states, batch-norm
            statistics and noise settings are copied, the models are left as they are.

    Returns:
        The pack, in the first model's train/eval mode; input ``[B, N*3, 32, 32]`` (:func:`pack_input`), output
        ``[B, N*10]`` (:func:`unpack_output`). Its ``networks`` attribute is ``N``.
    """
    if len(models) < 1:
        raise ValueError("a pack needs at least one network")
    packed = _pack_module(list(models))
    packed.networks = len(models)
    packed.train(models[0].training)
    return packed


def unpack_into(pack: nn.Module, models: Sequence[nn.Module | None]) -> None:
    """Copy each network's weights, batch-norm statistics and dynamic scales' state from ``pack`` into ``models``
    (as given to :func:`pack_models`), in place; a None entry is skipped."""
    if len(models) != pack.networks:
        raise ValueError(f"the pack holds {pack.networks} networks, got {len(models)} models to unpack into")
    _unpack_module(pack, list(models))


def pack_input(batches: Sequence[Tensor]) -> Tensor:
    """``N`` batches ``[B, C, H, W]`` (one per network) as the pack's input ``[B, N*C, H, W]``."""
    return torch.cat(list(batches), dim=1)


def unpack_output(out: Tensor, networks: int) -> Tensor:
    """The pack's output ``[B, N*K]`` as ``[N, B, K]``."""
    return out.reshape(out.shape[0], networks, -1).transpose(0, 1)


def network_noise_modules(pack: nn.Module, n: int) -> nn.Module:
    """Network ``n``'s noise modules in forward order, as a module that :func:`paperlib.set_noise` can act on."""
    view = nn.Module()
    view.sites = nn.ModuleList([m.nets[n] for m in pack.modules() if isinstance(m, PackedNoise)])
    return view


@torch.no_grad()
def pack_accuracy(pack: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 1000) -> list[float]:
    """Each network's clean accuracy (fraction) on ``x [M, C, H, W]``, ``y [M]``, in one pass of the pack.

    Noise off; the pack's train/eval mode and noise settings are restored.
    """
    device = next(pack.parameters()).device
    n_nets = pack.networks
    correct = torch.zeros(n_nets, dtype=torch.long, device=device)
    with numeric_threads(), eval_mode(pack), noise_settings(pack), fast_qat(pack):
        set_noise(pack, 0.0)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            out = unpack_output(pack(pack_input([xb] * n_nets)), n_nets)
            correct += (out.argmax(2) == yb).sum(1)
    return (correct.double() / len(x)).tolist()


@torch.no_grad()
def pack_evaluate_pairs(
    pack: nn.Module,
    x: Tensor,
    y: Tensor,
    pairs: list[tuple[float, int]],
    seeds: Sequence[int],
    *,
    layer: int | None = None,
    kind: str = "additive",
    max_batch: int = 4096,
) -> list[pd.DataFrame]:
    """Each network's :func:`paperlib.evaluate_pairs` (same arguments; ``seeds[n]`` seeds network ``n``'s draws),
    in one pass of the pack per batch.

    Network ``n`` draws its noise from its own generator in the order in which
    it would draw alone, so its numbers are its own sweep's up to the pack's
    rounding (an image at a decision boundary may flip). ``x [M, 3, 32, 32]``,
    ``y [M]``; returns one tidy frame per network (``sigma``, ``repeat``,
    ``accuracy``). Activation noise only.
    """
    n_nets = pack.networks
    if len(seeds) != n_nets:
        raise ValueError(f"the pack holds {n_nets} networks, got {len(seeds)} seeds")
    if kind == "weight":
        raise ValueError("a pack's sweep puts noise on activations; weight noise is swept per network "
                         "(paperlib.evaluate_pairs)")
    for s, _ in pairs:
        check_sigma(s)
    device = next(pack.parameters()).device
    x, y = x.to(device), y.to(device)
    batch = min(len(x), max_batch)
    per_pass = max(1, max_batch // batch)
    gens = [torch.Generator(device).manual_seed(s) for s in seeds]
    views = [network_noise_modules(pack, i) for i in range(n_nets)]
    correct = torch.zeros(n_nets, len(pairs), dtype=torch.long, device=device)
    with numeric_threads(), eval_mode(pack), noise_settings(pack), tf32(False), fast_qat(pack):
        for c in range(0, len(pairs), per_pass):
            chunk = torch.tensor([s for s, _ in pairs[c : c + per_pass]], device=device, dtype=x.dtype)
            for i in range(0, len(x), batch):
                xb, yb = x[i : i + batch], y[i : i + batch]
                sigma = chunk.repeat_interleave(len(xb))
                for view, g in zip(views, gens):
                    set_noise(view, sigma, layer, kind=kind, generator=g)
                xr = xb.repeat(len(chunk), *([1] * (xb.dim() - 1)))
                out = unpack_output(pack(pack_input([xr] * n_nets)), n_nets)  # [N, len(chunk) * B, 10]
                pred = out.argmax(2).view(n_nets, len(chunk), len(xb))
                correct[:, c : c + len(chunk)] += (pred == yb).sum(2)
    acc = (correct.double() / len(x)).cpu().numpy()
    return [pd.DataFrame({"sigma": [s for s, _ in pairs], "repeat": [r for _, r in pairs], "accuracy": a})
            for a in acc]


def _check_configs(configs: Sequence[TrainConfig]) -> None:
    first = configs[0]
    for c in configs[1:]:
        for f in fields(TrainConfig):
            if f.name not in PER_NETWORK_FIELDS and getattr(c, f.name) != getattr(first, f.name):
                raise ValueError(f"the networks of a pack share their training settings but {PER_NETWORK_FIELDS}; "
                                 f"they differ in {f.name} ({getattr(first, f.name)!r} vs {getattr(c, f.name)!r})")
    if first.noise_kind == "weight":
        raise ValueError("a pack trains with noise on activations; weight noise (noise_kind='weight') trains alone")


def _resume(ckpt: Path, pack: nn.Module, opt, sched, gens: list, streams: list[dict], results: list[TrainResult],
            live: list[bool], configs: Sequence[TrainConfig], dev: torch.device) -> int:
    """Restore :func:`train_pack`'s state from checkpoint ``ckpt`` in place; returns the epochs it had finished."""
    state = torch.load(ckpt, map_location=dev, weights_only=False)
    if state["configs"] != [c.state() for c in configs]:
        raise ValueError(f"checkpoint {ckpt} was written for another pack ({len(state['configs'])} networks with "
                         f"other configs); delete it or pass another path")
    with quantizers_kept():  # else the optimizer would lose the learned scales (paperlib.resume)
        pack.load_state_dict(state["pack"])
    load_stats_collection_state(pack, state["quant_stats"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    for g, s in zip(gens, state["generators"]):
        g.set_state(s.cpu())  # set_state takes a CPU byte tensor, also for a CUDA generator
    for own, saved in zip(streams, state["streams"]):
        own.update(saved)  # the dropout modules hold these very dicts
    for r, history, ok, error in zip(results, state["histories"], state["live"], state["errors"]):
        r.history, r.error = history, error
        r.diverged = not ok
    live[:] = state["live"]
    return state["epoch"]


def train_pack(
    models: Sequence[nn.Module],
    data: CIFAR10Data,
    configs: Sequence[TrainConfig],
    *,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, list[dict]], None] | None = None,
) -> list[TrainResult]:
    """Train ``N`` networks of one architecture as one pack; each as :func:`paperlib.train` would alone.

    Args:
        models: the networks (``build_model(arch, seed=...)``), trained in place: their weights and batch-norm
            statistics are the pack's when it returns (each left in eval mode with noise off, as by ``train``).
        data: training and test tensors (normalized), shared by the networks.
        configs: one :class:`paperlib.TrainConfig` per network; they may differ in :data:`PER_NETWORK_FIELDS` only.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` ...
        checkpoint: file written atomically after every epoch (the pack's weights, quantizer statistics, Adam and
            schedule, each network's generator, dropout stream, history and divergence); when it exists (written
            for the same configs) training resumes from it, to the numbers of an uninterrupted pack.
        progress: show a tqdm bar.
        on_epoch: called after each epoch with the epoch (from 1) and each network's history entry.

    Returns:
        One :class:`paperlib.TrainResult` per network, as ``train`` returns it (``images_per_s`` counts the pack's
        images: ``N`` per training image). A network whose loss becomes NaN or infinite stops learning (its
        result says ``diverged``) while the others go on.
    """
    from tqdm.auto import tqdm

    if len(models) != len(configs) or not models:
        raise ValueError(f"train_pack needs one config per network, got {len(models)} models and "
                         f"{len(configs)} configs")
    _check_configs(configs)
    config, n_nets = configs[0], len(models)
    dev = resolve_device(device)
    data = data.to(dev)
    for m in models:
        m.to(dev)
    pack = pack_models(models).to(dev)
    opt = torch.optim.Adam(pack.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    gens = [torch.Generator(dev).manual_seed(c.seed) for c in configs]
    results = [TrainResult() for _ in models]
    live = [True] * n_nets
    dropouts = [m for m in pack.modules() if isinstance(m, PackedDropout)]
    streams = []
    for c in configs:  # each network's own stream of the global RNG, seeded as train() seeds it
        with _own_global_rng(c.seed, dev, None):
            streams.append(_global_rng(dev))
    for d in dropouts:
        d.states = streams
    noise_views = [network_noise_modules(pack, i) for i in range(n_nets)]
    start, ckpt = 0, Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        start = _resume(ckpt, pack, opt, sched, gens, streams, results, live, configs, dev)
        unpack_into(pack, models)
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    t0, train_time, images = time.perf_counter(), 0.0, 0
    with (
        numeric_threads(),
        tf32(config.allow_tf32),
        fast_qat(pack),  # the quantized ReLUs' fast forward, as train() runs them (their own, per network)
        tqdm(total=config.epochs, initial=start, desc=f"train pack of {n_nets}", unit="epoch", disable=not progress,
             leave=False) as bar,
    ):
        for epoch in range(start, config.epochs if any(live) else start):
            pack.train()
            sigmas = [c.sigma_at(epoch) for c in configs]
            sampling = config.sigma_sampling
            sigma_epoch = [float(c.draw_sigma(epoch, 1, g)[0]) for c, g in zip(configs, gens)] \
                if sampling == "epoch" else None
            for i, (view, g) in enumerate(zip(noise_views, gens)):
                set_noise(view, sigma_epoch[i] if sampling == "epoch" else sigmas[i], kind=config.noise_kind,
                          generator=g)
            sigma_sum = torch.zeros(n_nets, device=dev, dtype=torch.float64)
            sigma_sq = torch.zeros(n_nets, device=dev, dtype=torch.float64)
            t_ep = time.perf_counter()
            orders = [torch.randperm(n, generator=g, device=dev) for g in gens]
            loss_sum = torch.zeros(n_nets, device=dev)
            correct = torch.zeros(n_nets, device=dev, dtype=torch.long)
            for step in range(steps_per_epoch):
                xs, ys = [], []
                for i, (order, g) in enumerate(zip(orders, gens)):
                    idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                    xb, yb = data.x_train[idx], data.y_train[idx]
                    if config.augment:
                        xb = augment(xb, g)
                    if sampling == "sample":
                        drawn = configs[i].draw_sigma(epoch, len(yb), g)
                        set_noise(noise_views[i], drawn, kind=config.noise_kind, generator=g)
                        sigma_sum[i] += drawn.double().sum()
                        sigma_sq[i] += drawn.double().square().sum()
                    xs.append(xb)
                    ys.append(yb)
                out = unpack_output(pack(pack_input(xs)), n_nets)  # [N, B, 10]
                y = torch.stack(ys)
                losses = torch.stack([F.cross_entropy(o, t) for o, t in zip(out, y)])  # each network's mean loss
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()  # network n's weights get the gradient of its own loss only
                opt.step()
                loss_sum += losses.detach() * len(y[0])
                correct += (out.argmax(2) == y).sum(1)
            mean_loss = [float(v) / n for v in loss_sum]  # as train(): one float32 sum, divided in float64
            train_time += time.perf_counter() - t_ep
            images += n * n_nets
            lr = sched.get_last_lr()[0]
            sched.step()
            unpack_into(pack, [m if ok else None for m, ok in zip(models, live)])  # a diverged one keeps its last
            accs = pack_accuracy(pack, data.x_test, data.y_test)
            entries = []
            for i in range(n_nets):
                if not live[i]:
                    entries.append({})
                    continue
                if not math.isfinite(mean_loss[i]):
                    live[i] = False
                    results[i].diverged = True
                    results[i].error = (f"loss became {mean_loss[i]} in epoch {epoch} (sigma_train={sigmas[i]:g}, "
                                        f"lr={lr:.3g})")
                    entries.append({})
                    continue
                test_acc = accs[i]
                entry = {"epoch": epoch + 1, "sigma_train": sigmas[i], "lr": lr, "loss": mean_loss[i],
                         "train_acc": float(correct[i]) / n, "test_acc": test_acc}
                if sampling == "epoch":
                    entry.update(sigma_mean=sigma_epoch[i], sigma_std=0.0)
                elif sampling == "sample":
                    mean = float(sigma_sum[i]) / n
                    entry.update(sigma_mean=mean,
                                 sigma_std=math.sqrt(max(0.0, float(sigma_sq[i]) / n - mean * mean)))
                results[i].history.append(entry)
                entries.append(entry)
            bar.update()
            if ckpt is not None:
                state = {"configs": [c.state() for c in configs], "epoch": epoch + 1, "pack": pack.state_dict(),
                         "quant_stats": stats_collection_state(pack), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "generators": [g.get_state() for g in gens],
                         "streams": streams, "histories": [r.history for r in results], "live": live,
                         "errors": [r.error for r in results]}
                write_atomic(ckpt, lambda f, state=state: torch.save(state, f))
            if on_epoch is not None:
                on_epoch(epoch + 1, entries)
            if not any(live):
                break
    for m in models:
        set_noise(m, 0.0)
        m.eval()
    for r in results:
        if r.history:
            r.test_accuracy = r.history[-1]["test_acc"]
        r.images_per_s = images / train_time if train_time > 0 else math.nan
        r.wall_time_s = time.perf_counter() - t0
    return results
