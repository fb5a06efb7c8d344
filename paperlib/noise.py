"""Noise injection modules (REFERENCE §2).

A :class:`GaussianNoise` module sits after every layer of our models. It adds
zero-mean Gaussian noise with an *absolute* standard deviation ``sigma`` to a
plain tensor, drawn independently per element on every forward pass. The
backward pass treats the draw as a constant (no gradient flows into it), as in
the authors' ``AddGaussianNoise``.

Kinds (``kind``):

- ``"additive"``: ``y = x + sigma * z`` (the paper's noise model),
- ``"multiplicative"``: ``y = x * (1 + sigma * z)``, i.e. ``x * N(1, sigma^2)``
  (the authors' code, beyond the paper).

``sigma`` is a float, or a tensor of shape ``[batch]`` giving one sigma per
sample (used to evaluate many noise levels in one forward pass).
"""
from __future__ import annotations

import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Literal, Sequence

import torch
from torch import Tensor, nn

NoiseKind = Literal["additive", "multiplicative"]
NOISE_KINDS: tuple[str, ...] = ("additive", "multiplicative")
NoiseWhen = Literal["train", "eval", "both"]
NOISE_WHEN: tuple[str, ...] = ("train", "eval", "both")
Sigma = float | Tensor


#: CPU draws of at least this many numbers are split into DRAW_CHUNKS chunks filled in parallel.
PARALLEL_DRAW_MIN = 1 << 20
#: Fixed number of chunks, so the numbers do not depend on the thread count.
DRAW_CHUNKS = 4


@functools.lru_cache(maxsize=None)
def _draw_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paperlib-noise")


def standard_normal(shape: torch.Size, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``N(0, 1)`` draws of ``shape``, reproducible from ``generator``.

    PyTorch fills a CPU tensor with normal numbers on one core. Large CPU draws
    are therefore split into :data:`DRAW_CHUNKS` chunks, each with its own
    generator seeded from ``generator``, and filled on up to
    ``torch.get_num_threads()`` threads (the GIL is released while filling).
    The same generator state gives the same numbers whatever the thread count.
    """
    out = torch.empty(shape, device=device, dtype=dtype)
    if device.type != "cpu" or out.numel() < PARALLEL_DRAW_MIN:
        return out.normal_(generator=generator)
    seeds = torch.randint(0, 2**62, (DRAW_CHUNKS,), generator=generator).tolist()
    jobs = [(chunk, torch.Generator().manual_seed(seed)) for chunk, seed in zip(out.view(-1).chunk(DRAW_CHUNKS), seeds)]
    workers = min(DRAW_CHUNKS, torch.get_num_threads())
    if workers > 1:
        list(_draw_pool(workers).map(lambda job: job[0].normal_(generator=job[1]), jobs))
    else:
        for chunk, gen in jobs:
            chunk.normal_(generator=gen)
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
            raise ValueError("sigma must be finite and >= 0 (an absolute standard deviation); got negative or non-finite values")
        return sigma
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a number >= 0 or a 1-D tensor, got {sigma!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"sigma must be a finite number >= 0 (an absolute standard deviation), got {sigma!r}")
    return value


class GaussianNoise(nn.Module):
    """Gaussian noise on a layer's output (REFERENCE §2).

    Attributes:
        sigma: absolute standard deviation; float, or tensor of shape ``[batch]``.
        kind: ``"additive"`` or ``"multiplicative"``.
        when: apply the noise in ``"train"`` mode, ``"eval"`` mode or ``"both"``.
        generator: ``torch.Generator`` for the draws (on the tensor's device);
            ``None`` uses torch's global generator.

    Input and output: any tensor ``[batch, ...]``; plain ``torch.Tensor`` only
    (never a Brevitas ``QuantTensor``, whose arithmetic folds noise into the
    zero point, REFERENCE §5).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sigma: Sigma = 0.0
        self.kind: NoiseKind = "additive"
        self.when: NoiseWhen = "both"
        self.generator: torch.Generator | None = None

    def active(self) -> bool:
        """Whether a forward pass in the current mode would add noise."""
        if isinstance(self.sigma, float) and self.sigma == 0.0:
            return False
        return self.when == "both" or (self.when == "train") == self.training

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
        draw = standard_normal(x.shape, self.generator, x.device, x.dtype)
        if self.kind == "additive":
            return draw.mul_(sigma).add_(x)  # x + sigma * draw, in the draw's buffer
        return draw.mul_(sigma).add_(1.0).mul_(x)  # x * (1 + sigma * draw)

    def extra_repr(self) -> str:
        sigma = f"tensor[{self.sigma.shape[0]}]" if isinstance(self.sigma, Tensor) else f"{self.sigma:g}"
        return f"sigma={sigma}, kind={self.kind}, when={self.when}"


def noise_modules(model: nn.Module) -> list[GaussianNoise]:
    """All :class:`GaussianNoise` modules of ``model``, in forward order.

    Our models register their modules in the order in which they first run, so
    module order is forward order (checked by the tests). Counts: LeNet-5 12,
    VGG-11 27, ResNet-18 33 (REFERENCE §2).
    """
    return [m for m in model.modules() if isinstance(m, GaussianNoise)]


def set_noise(
    model: nn.Module,
    sigma: Sigma,
    layer: int | None = None,
    *,
    kind: NoiseKind = "additive",
    when: NoiseWhen = "both",
    generator: torch.Generator | None = None,
) -> None:
    """Set the noise of every noise module of ``model``.

    Args:
        model: a model holding :class:`GaussianNoise` modules.
        sigma: absolute noise standard deviation (>= 0), or a tensor ``[batch]``.
        layer: ``None`` for global injection (same sigma everywhere); an index
            ``k`` into :func:`noise_modules` for layer-wise injection (only
            module ``k`` is noisy, all others silent; "walking noise").
        kind: ``"additive"`` or ``"multiplicative"``.
        when: ``"train"``, ``"eval"`` or ``"both"``: the modes that see noise.
        generator: generator for the draws; ``None`` uses torch's global one.
    """
    sigma = check_sigma(sigma)
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
    if when not in NOISE_WHEN:
        raise ValueError(f"unknown value when={when!r}; choose one of {', '.join(NOISE_WHEN)}")
    modules = noise_modules(model)
    if not modules:
        raise ValueError("the model has no GaussianNoise modules; build it with paperlib.build_model")
    if layer is not None and not -len(modules) <= layer < len(modules):
        raise IndexError(f"layer={layer} is out of range: the model has {len(modules)} noise modules (0..{len(modules) - 1})")
    target = None if layer is None else modules[layer]
    for m in modules:
        m.sigma = sigma if target is None or m is target else 0.0
        m.kind, m.when, m.generator = kind, when, generator


@contextlib.contextmanager
def noise_settings(model: nn.Module) -> Iterator[list[GaussianNoise]]:
    """Context manager that restores every noise module's settings on exit."""
    modules = noise_modules(model)
    saved: Sequence[tuple] = [(m.sigma, m.kind, m.when, m.generator) for m in modules]
    try:
        yield modules
    finally:
        for m, (s, k, w, g) in zip(modules, saved):
            m.sigma, m.kind, m.when, m.generator = s, k, w, g
