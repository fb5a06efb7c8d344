"""Noise injection: on activations (noise modules) or on weights (docs/protocol.md §2, §9).

A :class:`GaussianNoise` module sits after every layer of our models. It adds
zero-mean Gaussian noise with an *absolute* standard deviation ``sigma`` to a
plain tensor, drawn independently per element on every forward pass. The
backward pass treats the draw as a constant (no gradient flows into it), as in
the authors' ``AddGaussianNoise``.

Kinds (``kind``), with ``z, z' ~ N(0, 1)`` drawn per element:

- ``"additive"``: ``y = x + sigma * z`` (the paper's noise model),
- ``"multiplicative"``: ``y = x * (1 + sigma * z)``, i.e. ``x * N(1, sigma^2)``
  (the authors' code, beyond the paper),
- ``"combined"``: multiply, then add, with the same sigma:
  ``y = x * (1 + sigma * z) + sigma * z'``, i.e. ``x * N(1, sigma^2) + N(0, sigma^2)``
  (the authors' code, docs/protocol.md §2 last bullet),
- ``"weight"``: no activation noise; instead ``W + sigma * Z`` replaces the
  weight ``W`` of every Conv/Linear layer (:func:`weight_layers`) in each
  forward pass, see :class:`WeightNoise`. The noise modules stay silent.

``sigma`` is a float, or (activation kinds only) a tensor of shape ``[batch]``
giving one sigma per sample (used to evaluate many noise levels in one forward
pass). :func:`set_noise` selects the kind, the sigma and, for layer-wise
("walking") noise, the one noisy site.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch
from torch import Tensor, nn

from .threads import process_threads

NoiseKind = Literal["additive", "multiplicative", "combined", "weight"]
#: Every noise kind :func:`set_noise` accepts.
NOISE_KINDS: tuple[str, ...] = ("additive", "multiplicative", "combined", "weight")
#: The kinds applied by the :class:`GaussianNoise` modules (on activations).
ACTIVATION_KINDS: tuple[str, ...] = ("additive", "multiplicative", "combined")
NoiseWhen = Literal["train", "eval", "both"]
NOISE_WHEN: tuple[str, ...] = ("train", "eval", "both")
Sigma = float | Tensor


#: CPU draws of at least this many numbers are split into DRAW_CHUNKS chunks filled in parallel.
PARALLEL_DRAW_MIN = 1 << 20
#: Fixed number of chunks, so the numbers do not depend on the thread count.
DRAW_CHUNKS = 4


@functools.cache
def _draw_pool(helpers: int) -> ThreadPoolExecutor:
    """A pool of ``helpers`` threads that fill draw chunks alongside the calling thread (one pool per size)."""
    return ThreadPoolExecutor(max_workers=helpers, thread_name_prefix="paperlib-noise")


def standard_normal(
    shape: torch.Size, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``N(0, 1)`` draws of ``shape``, reproducible from ``generator``.

    PyTorch fills a CPU tensor with normal numbers on one core. Large CPU draws
    are therefore split into :data:`DRAW_CHUNKS` chunks, each with its own
    generator seeded from ``generator``, and filled by the calling thread plus
    helper threads, ``paperlib.threads.process_threads()`` threads in all (the
    process's share of the CPU, not the numerics' fixed intra-op count; the
    GIL is released while filling). The calling thread fills chunks too
    instead of waiting, so no more threads run than the process may use.
    The same generator state gives the same numbers whatever the thread count.
    """
    out = torch.empty(shape, device=device, dtype=dtype)
    if device.type != "cpu" or out.numel() < PARALLEL_DRAW_MIN:
        return out.normal_(generator=generator)
    seeds = torch.randint(0, 2**62, (DRAW_CHUNKS,), generator=generator).tolist()
    jobs = iter(
        [(chunk, torch.Generator().manual_seed(seed)) for chunk, seed in zip(out.view(-1).chunk(DRAW_CHUNKS), seeds)]
    )
    take = threading.Lock()

    def fill() -> None:  # take the next chunk until none is left; which thread fills which chunk does not matter
        while True:
            with take:
                job = next(jobs, None)
            if job is None:
                return
            job[0].normal_(generator=job[1])

    helpers = min(DRAW_CHUNKS, process_threads()) - 1
    futures = [_draw_pool(helpers).submit(fill) for _ in range(helpers)]
    fill()
    for f in futures:
        f.result()
    return out


def check_sigma(sigma: Sigma) -> Sigma:
    """Return ``sigma`` if it is a valid noise level, else raise ``ValueError``.

    A valid sigma is a finite float >= 0, or a 1-D tensor of such values.
    """
    if isinstance(sigma, Tensor):
        if sigma.dim() != 1:
            raise ValueError(
                f"a per-sample sigma must be a 1-D tensor of shape [batch], got shape {tuple(sigma.shape)}"
            )
        if not bool(torch.isfinite(sigma).all()) or bool((sigma < 0).any()):
            raise ValueError(
                "sigma must be finite and >= 0 (an absolute standard deviation); got negative or non-finite values"
            )
        return sigma
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a number >= 0 or a 1-D tensor, got {sigma!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"sigma must be a finite number >= 0 (an absolute standard deviation), got {sigma!r}")
    return value


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is one of :data:`NOISE_KINDS`, else raise ``ValueError``."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
    return kind


def _mode_matches(when: str, training: bool) -> bool:
    return when == "both" or (when == "train") == training


class GaussianNoise(nn.Module):
    """Gaussian noise on a layer's output (docs/protocol.md §2).

    Attributes:
        sigma: absolute standard deviation; float, or tensor of shape ``[batch]``.
        kind: ``"additive"``, ``"multiplicative"`` or ``"combined"``; ``"weight"``
            makes the module silent (the noise is on the weights then).
        when: apply the noise in ``"train"`` mode, ``"eval"`` mode or ``"both"``.
        generator: ``torch.Generator`` for the draws (on the tensor's device);
            ``None`` uses torch's global generator.

    Input and output: any tensor ``[batch, ...]``; plain ``torch.Tensor`` only
    (never a Brevitas ``QuantTensor``, whose arithmetic folds noise into the
    zero point, docs/protocol.md §5).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sigma: Sigma = 0.0
        self.kind: NoiseKind = "additive"
        self.when: NoiseWhen = "both"
        self.generator: torch.Generator | None = None

    def active(self) -> bool:
        """Whether a forward pass in the current mode would add noise."""
        if self.kind == "weight" or (isinstance(self.sigma, float) and self.sigma == 0.0):
            return False
        return _mode_matches(self.when, self.training)

    def forward(self, x: Tensor) -> Tensor:
        if not self.active():
            return x
        if not isinstance(x, Tensor):
            raise TypeError(
                f"GaussianNoise expects a plain torch.Tensor, got {type(x).__name__}; "
                "build quantized layers with return_quant_tensor=False"
            )
        sigma = self.sigma
        if isinstance(sigma, Tensor):
            if sigma.shape[0] != x.shape[0]:
                raise ValueError(
                    f"per-sample sigma has {sigma.shape[0]} entries but the batch has {x.shape[0]} samples"
                )
            sigma = sigma.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
        if self.kind not in ACTIVATION_KINDS:
            raise ValueError(
                f"unknown noise kind {self.kind!r} for a noise module; choose one of {', '.join(ACTIVATION_KINDS)}"
            )
        draw = standard_normal(x.shape, self.generator, x.device, x.dtype)
        if self.kind == "additive":
            return draw.mul_(sigma).add_(x)  # x + sigma * draw, in the draw's buffer
        out = draw.mul_(sigma).add_(1.0).mul_(x)  # x * (1 + sigma * draw)
        if self.kind == "multiplicative":
            return out
        return out.add_(
            standard_normal(x.shape, self.generator, x.device, x.dtype).mul_(sigma)
        )  # combined: + sigma * draw2

    def extra_repr(self) -> str:
        sigma = f"tensor[{self.sigma.shape[0]}]" if isinstance(self.sigma, Tensor) else f"{self.sigma:g}"
        return f"sigma={sigma}, kind={self.kind}, when={self.when}"


def noise_modules(model: nn.Module) -> list[GaussianNoise]:
    """All :class:`GaussianNoise` modules of ``model``, in forward order.

    Our models register their modules in the order in which they first run, so
    module order is forward order (checked by the tests). Counts: LeNet-5 12,
    VGG-11 27, ResNet-18 33 (docs/protocol.md §2).
    """
    return [m for m in model.modules() if isinstance(m, GaussianNoise)]


# ---------------------------------------------------------------------------------------------
# Weight noise
# ---------------------------------------------------------------------------------------------

#: Layers whose weights ``kind="weight"`` perturbs (Brevitas' QuantConv2d/QuantLinear subclass them).
WEIGHT_LAYER_TYPES: tuple[type, ...] = (nn.modules.conv._ConvNd, nn.Linear)
#: Attribute under which a layer keeps its :class:`WeightNoise` settings.
_WEIGHT_NOISE_ATTR = "_paperlib_weight_noise"
#: Attribute that marks a layer whose forward reads precomputed weights (set by frozen_quantizers).
FROZEN_WEIGHT_ATTR = "_paperlib_frozen_weight"


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Every Conv/Linear layer of ``model`` (fp32 or Brevitas), in module order.

    For our models module order is forward order, as for :func:`noise_modules`.
    These are the sites of ``kind="weight"``: ``set_noise(..., kind="weight", layer=k)``
    perturbs the weights of ``weight_layers(model)[k]`` only.
    """
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


def noise_sites(model: nn.Module, kind: NoiseKind = "additive") -> list[nn.Module]:
    """The modules that ``set_noise(model, ..., layer=k, kind=kind)`` indexes with ``k``.

    :func:`noise_modules` for the activation kinds, :func:`weight_layers` for ``"weight"``.
    """
    return weight_layers(model) if check_kind(kind) == "weight" else noise_modules(model)


class WeightNoise:
    """Weight-noise settings of one Conv/Linear layer (``kind="weight"``, docs/protocol.md §9).

    In every forward pass of the layer in which the noise is active, its weight
    ``W`` (any shape, e.g. ``[out, in, k, k]``) is replaced by ``W + sigma * Z``
    with ``Z ~ N(0, 1)`` drawn per element, afresh on every forward pass, then
    restored after the pass (also after an exception). The bias is left clean.

    Choices:

    - ``sigma`` is **absolute**, in the units of the weight, like the
      activation noise (not relative to ``|W|`` or to the layer's weight scale).
    - The draw is a constant for autograd: the gradient with respect to ``W``
      is the gradient of the loss at the noisy weight ``W + sigma * Z``, and it
      flows to the clean parameter ``W`` (the optimizer updates ``W``).
    - Brevitas layers (``QuantConv2d``/``QuantLinear``) quantize the *noisy*
      float weight: the noise is added before the weight quantizer, whose
      per-channel/per-tensor scale (max ``|W|``) is then computed from the
      noisy weight, as Brevitas computes it from whatever weight it quantizes.
    - One sigma per forward pass: all samples of a batch share the layer's
      weights, so a per-sample sigma ``[batch]`` is refused.

    Installed on a layer (as two hooks, and this object as an attribute) the
    first time :func:`set_noise` is called with ``kind="weight"``; with sigma 0
    the hooks do nothing. The layer's parameters and state dict do not change.
    """

    def __init__(self) -> None:
        self.sigma: float = 0.0
        """absolute standard deviation of the weight noise"""
        self.when: NoiseWhen = "both"
        """the modes that see the noise: ``"train"``, ``"eval"`` or ``"both"``"""
        self.generator: torch.Generator | None = None
        """generator of the draws; ``None`` uses torch's global one"""
        self._clean: list[Tensor] = []

    def active(self, training: bool) -> bool:
        """Whether a forward pass in this mode perturbs the weight."""
        return self.sigma != 0.0 and _mode_matches(self.when, training)

    def settings(self) -> tuple:
        """``(sigma, when, generator)``, as :func:`noise_settings` saves them."""
        return self.sigma, self.when, self.generator


def _weight_noise_pre_hook(module: nn.Module, args: tuple) -> None:
    state: WeightNoise = getattr(module, _WEIGHT_NOISE_ATTR)
    if not state.active(module.training):
        return
    if getattr(module, FROZEN_WEIGHT_ATTR, False):
        raise RuntimeError(
            f"weight noise cannot act on {type(module).__name__} while its weights are frozen "
            "(frozen_quantizers(model, weights=False) keeps the weights live)"
        )
    weight = module._parameters["weight"]
    state._clean.append(weight)
    draw = standard_normal(weight.shape, state.generator, weight.device, weight.dtype).mul_(state.sigma)
    module._parameters["weight"] = weight + draw  # a plain tensor for this pass; the gradient flows to ``weight``


def _weight_noise_post_hook(module: nn.Module, args: tuple, output: object) -> None:
    state: WeightNoise = getattr(module, _WEIGHT_NOISE_ATTR)
    if state._clean:
        module._parameters["weight"] = state._clean.pop()


def _weight_noise(layer: nn.Module, install: bool) -> WeightNoise | None:
    """The layer's :class:`WeightNoise`; installed first when ``install``, else None when absent."""
    state = getattr(layer, _WEIGHT_NOISE_ATTR, None)
    if state is None and install:
        if not isinstance(layer._parameters.get("weight"), Tensor):
            raise ValueError(f"weight noise needs a layer with a weight parameter; {type(layer).__name__} has none")
        state = WeightNoise()
        setattr(layer, _WEIGHT_NOISE_ATTR, state)
        layer.register_forward_pre_hook(_weight_noise_pre_hook)
        layer.register_forward_hook(_weight_noise_post_hook, always_call=True)
    return state


def set_noise(
    model: nn.Module,
    sigma: Sigma,
    layer: int | None = None,
    *,
    kind: NoiseKind = "additive",
    when: NoiseWhen = "both",
    generator: torch.Generator | None = None,
) -> None:
    """Set the noise of every noise site of ``model``.

    Args:
        model: a model holding :class:`GaussianNoise` modules (any model with
            Conv/Linear layers for ``kind="weight"``).
        sigma: absolute noise standard deviation (>= 0), or a tensor ``[batch]``
            (activation kinds only).
        layer: ``None`` for global injection (same sigma everywhere); an index
            ``k`` into :func:`noise_sites` for layer-wise injection (only site
            ``k`` is noisy, all others silent; "walking noise"). The sites are
            the noise modules (:func:`noise_modules`) for the activation kinds
            and the Conv/Linear layers (:func:`weight_layers`) for ``"weight"``.
        kind: ``"additive"``, ``"multiplicative"``, ``"combined"`` or
            ``"weight"`` (see the module docstring); the sites of the other
            family are silenced.
        when: ``"train"``, ``"eval"`` or ``"both"``: the modes that see noise.
        generator: generator for the draws; ``None`` uses torch's global one.
    """
    sigma = check_sigma(sigma)
    check_kind(kind)
    if when not in NOISE_WHEN:
        raise ValueError(f"unknown value when={when!r}; choose one of {', '.join(NOISE_WHEN)}")
    modules = noise_modules(model)
    weighted = weight_layers(model)
    if kind == "weight":
        if isinstance(sigma, Tensor):
            raise ValueError(
                "weight noise takes one float sigma per forward pass, not a per-sample tensor: "
                "all samples of a batch share the layer's weights"
            )
        if not weighted:
            raise ValueError("the model has no Conv/Linear layers, so there are no weights to add noise to")
        sites, what = weighted, "weight layers"
    else:
        if not modules:
            raise ValueError(
                "the model has no GaussianNoise modules; build it with paperlib.build_model or paperlib.add_noise"
            )
        sites, what = modules, "noise modules"
    if layer is not None and not -len(sites) <= layer < len(sites):
        raise IndexError(f"layer={layer} is out of range: the model has {len(sites)} {what} (0..{len(sites) - 1})")
    target = None if layer is None else sites[layer]

    def level(site: nn.Module, own_kind: bool) -> Sigma:
        return sigma if own_kind and (target is None or site is target) else 0.0

    for m in modules:
        m.sigma = level(m, kind != "weight")
        m.kind, m.when, m.generator = kind, when, generator
    for w in weighted:
        state = _weight_noise(w, install=kind == "weight")
        if state is not None:
            state.sigma, state.when, state.generator = level(w, kind == "weight"), when, generator


@contextlib.contextmanager
def noise_settings(model: nn.Module) -> Iterator[list[GaussianNoise]]:
    """Context manager that restores every noise module's and weight layer's noise settings on exit."""
    modules = noise_modules(model)
    saved: Sequence[tuple] = [(m.sigma, m.kind, m.when, m.generator) for m in modules]
    weighted = weight_layers(model)
    saved_weights = [None if (st := _weight_noise(w, install=False)) is None else st.settings() for w in weighted]
    try:
        yield modules
    finally:
        for m, (s, k, w, g) in zip(modules, saved):
            m.sigma, m.kind, m.when, m.generator = s, k, w, g
        for layer, before in zip(weighted, saved_weights):
            state = _weight_noise(layer, install=False)
            if state is not None:
                state.sigma, state.when, state.generator = before if before is not None else (0.0, "both", None)
