"""Test accuracy under noise, and noise sweeps over a sigma grid (docs/protocol.md §3).

Evaluation runs Brevitas models with frozen quantizers
(:func:`paperlib.inference.frozen_quantizers`: same numbers, less work), in
full fp32 on GPUs (no TF32).

A sweep evaluates many (sigma, repeat) pairs in one forward pass: each test
batch is replicated once per pair and every copy gets its own sigma (a
per-sample sigma of shape ``[pairs * batch]``). The noise is drawn per element,
so this gives the same distribution of accuracies as setting one sigma at a
time and looping over the test set, with far fewer forward passes.

Weight noise (``kind="weight"``) cannot differ between the samples of one
forward pass (they share the weights), so it evaluates one (sigma, repeat)
pair per forward pass instead, with a fresh weight draw for every test batch
of at most ``max_batch`` images.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import guards
from .device import tf32
from .inference import frozen_quantizers
from .noise import NoiseKind, check_kind, check_sigma, noise_settings, set_noise
from .threads import numeric_threads

#: The authors' sigma grid: 17 points, four per decade, 0.01 ... 100.
DEFAULT_SIGMAS: np.ndarray = np.logspace(-2, 2, 17)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; the previous mode is restored, also after an exception."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    sigma: float = 0.0,
    *,
    layer: int | None = None,
    kind: NoiseKind = "additive",
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> float:
    """Accuracy (fraction) of ``model`` in eval mode on ``x [N, ...]`` (e.g. ``[N, 3, 32, 32]``), ``y [N]``,
    at one noise level.

    ``layer`` and ``kind`` are as in :func:`paperlib.set_noise`. The model's
    noise settings and train/eval mode are restored afterwards.
    """
    check_sigma(sigma)
    check_kind(kind)
    device = _model_device(model)
    correct = 0
    with (
        numeric_threads(),
        eval_mode(model),
        noise_settings(model),
        frozen_quantizers(model, weights=kind != "weight"),
        tf32(False),
    ):
        set_noise(model, sigma, layer, kind=kind, generator=generator)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(x)


def noise_sweep(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    sigmas: np.ndarray | list[float] = DEFAULT_SIGMAS,
    repeats: int = 5,
    *,
    layer: int | None = None,
    kind: NoiseKind = "additive",
    seed: int = 0,
    max_batch: int = 4096,
    progress: bool = True,
) -> pd.DataFrame:
    """Test accuracy over a sigma grid, ``repeats`` independent noise draws per sigma.

    Args:
        model: a model with noise modules, on its device.
        x, y: test inputs ``[N, ...]`` (images: ``[N, 3, 32, 32]``) and labels ``[N]``
            (moved to the model's device).
        sigmas: absolute noise levels (>= 0).
        repeats: independent evaluations of the whole test set per sigma.
        layer: ``None`` for global noise, or the index of the one noisy site
            (see :func:`paperlib.noise.noise_sites`).
        kind: ``"additive"``, ``"multiplicative"``, ``"combined"`` or ``"weight"``
            (weight noise: one pair per forward pass, see the module docstring).
        seed: seeds the noise draws; same seed and ``max_batch`` -> same numbers.
        max_batch: most images in one forward pass (bounds memory).
        progress: show a progress bar.

    Returns:
        Tidy DataFrame with columns ``sigma``, ``repeat``, ``accuracy`` (fraction),
        one row per (sigma, repeat), sigmas in the given order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    pairs = [(float(s), r) for s in np.atleast_1d(np.asarray(sigmas, dtype=float)) for r in range(repeats)]
    return evaluate_pairs(model, x, y, pairs, layer=layer, kind=kind, seed=seed, max_batch=max_batch, progress=progress)


@torch.no_grad()
def evaluate_pairs(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    pairs: list[tuple[float, int]],
    *,
    layer: int | None = None,
    kind: NoiseKind = "additive",
    seed: int = 0,
    max_batch: int = 4096,
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy for each ``(sigma, repeat)`` pair; see :func:`noise_sweep` for the arguments."""
    guards.sweep_inputs(model, x, y)
    for s, _ in pairs:
        check_sigma(s)
    weight = check_kind(kind) == "weight"
    device = _model_device(model)
    x, y = x.to(device), y.to(device)
    batch = min(len(x), max_batch)
    per_pass = 1 if weight else max(1, max_batch // batch)
    gen = torch.Generator(device).manual_seed(seed)
    correct = torch.zeros(len(pairs), dtype=torch.long, device=device)
    steps = -(-len(pairs) // per_pass) * -(-len(x) // batch)
    with (
        numeric_threads(),
        eval_mode(model),
        noise_settings(model),
        frozen_quantizers(model, weights=not weight),
        tf32(False),
        tqdm(total=steps, desc="noise sweep", disable=not progress, leave=False) as bar,
    ):
        for c in range(0, len(pairs), per_pass):
            chunk = torch.tensor([s for s, _ in pairs[c : c + per_pass]], device=device, dtype=x.dtype)
            for i in range(0, len(x), batch):
                xb, yb = x[i : i + batch], y[i : i + batch]
                sigma = pairs[c][0] if weight else chunk.repeat_interleave(len(xb))  # weight noise: one sigma per pass
                set_noise(model, sigma, layer, kind=kind, generator=gen)
                pred = model(xb.repeat(len(chunk), *([1] * (xb.dim() - 1)))).argmax(1).view(len(chunk), len(xb))
                correct[c : c + len(chunk)] += (pred == yb).sum(1)
                bar.update()
    acc = (correct.double() / len(x)).cpu().numpy()
    return pd.DataFrame({"sigma": [s for s, _ in pairs], "repeat": [r for _, r in pairs], "accuracy": acc})


def nan_logit_accuracy(y: Tensor) -> float:
    """The accuracy of a network whose loss became NaN, as the authors' loop scores it (docs/protocol.md §11).

    Its logits are NaN, ``argmax`` picks class 0 for every image, so its
    accuracy is the fraction of labels ``y [N]`` equal to 0 (about chance,
    0.1 on CIFAR-10), at every sigma.
    """
    return float((y == 0).double().mean())


def summarize_sweep(curve: pd.DataFrame, by: str | list[str] = "sigma") -> pd.DataFrame:
    """Mean and standard deviation of accuracy per sigma (and any other ``by`` columns)."""
    return curve.groupby(by, sort=False)["accuracy"].agg(acc_mean="mean", acc_std="std", n="count").reset_index()
