"""Walking noise: the layer-wise sensitivity profile (Borras et al., arXiv 2212.10430; docs/protocol.md §2, §9).

Noise of level ``sigma`` at **one** noise site at a time, all others silent
(``set_noise(..., layer=k)``), swept over a sigma grid; the midpoint noise
level ``sigma_mid`` of each site's accuracy curve (paper Eq. 1-2,
:func:`paperlib.fit_midpoint`) measures how much noise that site tolerates.
A small ``sigma_mid`` marks a sensitive site.

Sites are the noise modules (:func:`paperlib.noise_modules`) for the activation
kinds and the Conv/Linear layers (:func:`paperlib.noise.weight_layers`) for
``kind="weight"``, in forward order. Works on our three architectures and on
any model instrumented with :func:`paperlib.instrument.add_noise`.

- :func:`layer_curves`: the tidy accuracy table, one row per (site, sigma, repeat);
- :func:`fit_layer_curves`: one midpoint fit per site;
- :func:`layer_sensitivity`: both in one call, returning the fits.
"""
from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import pandas as pd
from torch import Tensor, nn
from tqdm.auto import tqdm

from .evaluate import DEFAULT_SIGMAS, evaluate_pairs, summarize_sweep
from .midpoint import fit_midpoint_calibrated
from .noise import WEIGHT_LAYER_TYPES, NoiseKind, check_kind, noise_sites

#: Columns of :func:`layer_sensitivity` / :func:`fit_layer_curves`.
SENSITIVITY_COLUMNS: tuple[str, ...] = ("index", "name", "follows", "sigma_mid", "sigma_mid_err", "rel_err",
                                        "fit_ok", "reason", "peak_accuracy")
_SITE_COLUMNS = ["index", "name", "follows"]


def layer_category(module: nn.Module) -> str:
    """Short name of a layer's kind: "conv", "linear", "relu", "pool", else the class name in lower case.

    Brevitas' QuantConv2d / QuantLinear / QuantReLU count as conv / linear / relu;
    an ``nn.Sequential`` counts as its last module.
    """
    if isinstance(module, nn.Sequential) and len(module):
        return layer_category(module[-1])
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.ReLU, qnn.QuantReLU)):
        return "relu"
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                           nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return "pool"
    return type(module).__name__.lower()


def noise_site_table(model: nn.Module, kind: NoiseKind = "additive") -> pd.DataFrame:
    """The noise sites of ``model`` for ``kind``, in forward order: index, name, follows.

    ``name`` is the qualified module name (``model.get_submodule(name)``).
    ``follows`` is the layer a noise module adds noise to: the category
    (:func:`layer_category`) of its preceding sibling in its parent module
    (our models and :func:`~paperlib.instrument.add_noise` put each noise
    module right after its layer), or ``"input"`` for a noise module that is
    the first child of its parent (the input noise: LeNet-5's ``0``, ResNet-18's
    ``conv1.0``, ``input_noise`` of instrumented models). For ``kind="weight"``
    the sites are the Conv/Linear layers themselves and ``follows`` is their
    own category.
    """
    sites = {id(m): k for k, m in enumerate(noise_sites(model, kind))}
    rows: list[dict] = []
    if check_kind(kind) == "weight":
        for name, m in model.named_modules():
            if id(m) in sites and isinstance(m, WEIGHT_LAYER_TYPES):
                rows.append({"index": sites[id(m)], "name": name, "follows": layer_category(m)})
    else:
        for parent_name, parent in model.named_modules():
            previous = None
            for child_name, child in parent.named_children():
                if id(child) in sites:
                    name = f"{parent_name}.{child_name}" if parent_name else child_name
                    rows.append({"index": sites[id(child)], "name": name,
                                 "follows": "input" if previous is None else layer_category(previous)})
                previous = child
    table = pd.DataFrame(rows, columns=_SITE_COLUMNS).drop_duplicates("index").sort_values("index")
    return table.reset_index(drop=True)


def _site_seed(seed: int, index: int) -> int:
    """An independent, reproducible evaluation seed per site."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 2)


def layer_curves(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    sigmas: np.ndarray | list[float] = DEFAULT_SIGMAS,
    repeats: int = 1,
    *,
    kind: NoiseKind = "additive",
    seed: int = 0,
    max_batch: int = 4096,
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy with noise at one site at a time: the walking-noise curves.

    For each site ``k`` (:func:`noise_site_table`) this is
    ``evaluate_pairs(model, x, y, pairs, layer=k, kind=kind, ...)`` over the
    ``sigmas x repeats`` pairs, seeded per site from ``(seed, k)``.

    Args:
        model: a model with noise modules (Conv/Linear layers for ``kind="weight"``), on its device.
        x, y: test inputs ``[N, ...]`` and labels ``[N]``.
        sigmas: absolute noise levels (>= 0) at the one noisy site.
        repeats: independent evaluations of the whole test set per sigma and site.
        kind: noise kind (see :func:`paperlib.set_noise`).
        seed: seeds the noise draws; same seed -> same numbers.
        max_batch: most inputs in one forward pass.
        progress: show a progress bar over the sites.

    Returns:
        Tidy DataFrame with columns ``index``, ``name``, ``follows``, ``sigma``,
        ``repeat``, ``accuracy`` (fraction), sites in forward order.
    """
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    pairs = [(float(s), r) for s in np.atleast_1d(np.asarray(sigmas, dtype=float)) for r in range(repeats)]
    sites = noise_site_table(model, kind)
    if sites.empty:
        raise ValueError(f"the model has no noise sites for kind={kind!r}; "
                         "build it with paperlib.build_model or instrument it with paperlib.instrument.add_noise")
    parts = []
    bar = tqdm(sites.itertuples(index=False), total=len(sites), desc="walking noise", disable=not progress, leave=False)
    for site in bar:
        curve = evaluate_pairs(
            model,
            x,
            y,
            pairs,
            layer=site.index,
            kind=kind,
            seed=_site_seed(seed, site.index),
            max_batch=max_batch,
            progress=False,
        )
        parts.append(curve.assign(index=site.index, name=site.name, follows=site.follows))
    return pd.concat(parts, ignore_index=True)[[*_SITE_COLUMNS, "sigma", "repeat", "accuracy"]]


def fit_layer_curves(curves: pd.DataFrame, a_min: float = 0.1) -> pd.DataFrame:
    """One midpoint fit per site of a :func:`layer_curves` table (:func:`paperlib.midpoint.fit_midpoint_calibrated`).

    Args:
        curves: the output of :func:`layer_curves`.
        a_min: the accuracy the curves fall to (chance: 0.1 for 10 classes).

    Returns:
        One row per site, in forward order, with :data:`SENSITIVITY_COLUMNS`:
        ``sigma_mid`` (absolute sigma; NaN when the fit fails), its standard
        error ``sigma_mid_err`` (from the fit residuals: this network's noise
        draws, docs/protocol.md §11) and relative error ``rel_err``, ``fit_ok`` and
        ``reason`` (why the fit failed, else empty), ``peak_accuracy`` (the
        largest mean accuracy over the grid, a fraction).
    """
    missing = {*_SITE_COLUMNS, "sigma", "repeat", "accuracy"} - set(curves.columns)
    if missing:
        raise ValueError(f"curves lacks the column(s) {', '.join(sorted(missing))}; pass the output of layer_curves")
    rows = []
    for (index, name, follows), curve in curves.groupby(_SITE_COLUMNS, sort=False):
        summary = summarize_sweep(curve)
        fit = fit_midpoint_calibrated(summary.sigma, summary.acc_mean, a_min=a_min)  # one network: docs/protocol.md §11
        rows.append(
            {
                "index": index,
                "name": name,
                "follows": follows,
                "sigma_mid": fit.sigma_mid,
                "sigma_mid_err": fit.sigma_mid_err,
                "rel_err": fit.rel_err,
                "fit_ok": fit.ok,
                "reason": fit.reason,
                "peak_accuracy": float(summary.acc_mean.max()),
            }
        )
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS)).sort_values("index").reset_index(drop=True)


def layer_sensitivity(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    sigmas: np.ndarray | list[float] = DEFAULT_SIGMAS,
    repeats: int = 1,
    *,
    kind: NoiseKind = "additive",
    seed: int = 0,
    max_batch: int = 4096,
    a_min: float = 0.1,
    progress: bool = True,
) -> pd.DataFrame:
    """Per-site midpoint noise level with noise at one site at a time ("walking noise", arXiv 2212.10430).

    ``fit_layer_curves(layer_curves(model, x, y, sigmas, repeats, ...), a_min)``;
    see those for the arguments. Call the two yourself to keep the curves.

    Returns:
        One row per noise site in forward order: ``index`` (the ``layer`` of
        :func:`paperlib.set_noise`), ``name``, ``follows`` ("input", "conv",
        "relu", "pool", "linear", ...), ``sigma_mid``, ``sigma_mid_err``,
        ``rel_err``, ``fit_ok``, ``reason``, ``peak_accuracy``. The smallest
        ``sigma_mid`` marks the most sensitive site.
    """
    curves = layer_curves(model, x, y, sigmas, repeats, kind=kind, seed=seed, max_batch=max_batch, progress=progress)
    return fit_layer_curves(curves, a_min=a_min)
