"""Variance-aware noisy training (notebook 06, beyond the paper; docs/protocol.md §9; arXiv 2503.16183): robust when
the inference noise drifts away from the training noise.

The paper trains each network at exactly the sigma it meets at inference; variance-aware training draws the
training sigma at random around it (per image and step, ``sample``, or per epoch, ``epoch``) with the same mean.
:func:`specs` are its networks, :func:`train_infer_map` accuracy per training and inference sigma,
:func:`method_fits` peak accuracy and ``sigma_mid`` per method, :func:`mismatch`, :func:`figure` (seaborn heat
maps), :func:`check` and :func:`what_it_shows`.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import summarize
from .plots import new_figure, themed
from .prose import SMOKE_NOTE, caveat
from .specs import network_seeds
from .tables import Markdown, sig

#: The paper-layer modules this figure's numbers and drawing come from (recorded in its fingerprint).
MODULES: tuple[str, ...] = ("paper/plots", "paper/prose", "paper/rules", "paper/specs", "paper/tables",
                            "paper/variance_aware")
#: Variance-aware training (arXiv 2503.16183): sigma_i = ALPHA * sigma_train + theta * |z| with
#: theta = THETA_FACTOR * sigma_train, so that the mean sigma equals sigma_train
#: (alpha + theta_factor * sqrt(2/pi) = 1): fixed and random training see the same average noise.
ALPHA: float = 0.5
THETA_FACTOR: float = 0.5 * math.sqrt(math.pi / 2)
#: Training-sigma methods compared in the variance-aware notebook.
METHODS: tuple[str, ...] = ("fixed", "sample", "epoch")



def sigmas(profile: Profile, lo: float = 0.03, hi: float = 5.0) -> tuple[float, ...]:
    """Training sigmas of the variance-aware comparison: the points of ``profile.noisy_sigmas()`` in [lo, hi],
    the range where noisy-trained networks still work (their sigma_mid is about 2.6-3, Table II)."""
    return tuple(s for s in profile.noisy_sigmas() if lo <= s <= hi)


def specs(profile: Profile, seeds: int = 0, arch: str = "lenet5", train_sigmas: tuple[float, ...] | None = None
          ) -> list[RunSpec]:
    """Networks trained with each sigma of ``train_sigmas`` (default :func:`sigmas`) and each training-sigma
    method, swept over the profile's whole inference grid (docs/protocol.md §9); ``seeds`` 0 = the profile's number.

    ``fixed``: the paper's noisy training at ``sigma_train``. ``sample`` / ``epoch``: variance-aware training, a
    random sigma per image per step / per epoch, ``sigma_i = ALPHA * sigma_train + THETA_FACTOR * sigma_train * |z|``
    (mean ``sigma_train``).
    """
    out = []
    for sig_ in sigmas(profile) if train_sigmas is None else train_sigmas:
        for k in network_seeds(profile, arch, seeds):
            out.append(profile.spec(arch, sigma_train=sig_, seed=k))
            for method in METHODS[1:]:
                out.append(profile.spec(arch, sigma_train=sig_, seed=k, sigma_sampling=method,
                                        sigma_alpha=ALPHA, sigma_theta=THETA_FACTOR * sig_))
    return out


def train_infer_map(df: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy per training-sigma method, training sigma and inference sigma (over seeds and draws).

    Returns:
        Columns ``method``, ``sigma_train``, ``sigma`` (inference), ``acc_mean``, ``acc_std``.
    """
    return (df.dropna(subset=["accuracy"]).rename(columns={"sigma_sampling": "method"})
            .groupby(["method", "sigma_train", "sigma"], sort=False)["accuracy"]
            .agg(acc_mean="mean", acc_std="std").reset_index())



def method_fits(df: pd.DataFrame) -> pd.DataFrame:
    """Per training-sigma method and training sigma: peak accuracy (noise-free, mean over seeds, docs/protocol.md
    §11) in % (``peak acc. (%)``, one decimal), the ``sigma_mid`` of the accuracy-vs-inference-sigma curve (the
    robustness to inference noise that differs from training; ``fit``: it with its relative standard error in %)
    and how many of its networks diverged (``diverged``, e.g. "1 of 2")."""
    labelled = df.assign(variant=[f"{m}, sigma_train={t:.3g}" for m, t in zip(df.sigma_sampling, df.sigma_train)],
                         regime="noisy")
    s = summarize(labelled)
    keys = labelled.drop_duplicates("variant").set_index("variant")[["sigma_sampling", "sigma_train"]]
    s = s.join(keys, on="variant").rename(columns={"sigma_sampling": "method"})
    s["peak acc. (%)"] = (100 * s.peak_acc).round(1)
    return s[["method", "sigma_train", "seeds", "peak acc. (%)", "sigma_mid", "fit", "diverged", "failed"]]


def method_gain(grid: pd.DataFrame, method: str, baseline: str = "fixed") -> pd.DataFrame:
    """``acc_mean`` of ``method`` minus that of ``baseline`` per training and inference sigma (fractions)."""
    keys = ["sigma_train", "sigma"]
    a = grid[grid.method == method].set_index(keys)["acc_mean"]
    b = grid[grid.method == baseline].set_index(keys)["acc_mean"]
    return (a - b).rename("acc_mean").reset_index().assign(method=f"{method} - {baseline}")


def mismatch(grid: pd.DataFrame, factors: tuple[float, ...] = (0.5, 2.0, 4.0)) -> pd.DataFrame:
    """Accuracy at inference sigmas ``factor * sigma_train`` (nearest grid point in log), per method, as a wide table.

    Rows: training sigma and mismatch factor; columns: the methods (mean accuracy in %, one decimal).
    """
    rows = []
    for (method, train), g in grid.groupby(["method", "sigma_train"], sort=False):
        logs = np.log10(g.sigma.to_numpy())
        for f in (1.0, *factors):
            i = int(np.abs(logs - math.log10(f * train)).argmin())
            rows.append({"sigma_train": train, "inference / training": f, "sigma": g.sigma.iloc[i], "method": method,
                         "accuracy": round(100 * float(g.acc_mean.iloc[i]), 1)})
    wide = pd.DataFrame(rows).pivot_table(index=["sigma_train", "inference / training", "sigma"], columns="method",
                                          values="accuracy", sort=False)
    return wide.reset_index()



def plot_train_infer_map(ax: plt.Axes, grid: pd.DataFrame, *, diverging: bool = False,
                         title: str | None = None) -> plt.Axes:
    """Accuracy (%) per training sigma (rows, bottom up) and inference sigma (columns), annotated: a seaborn heat
    map of ``grid`` (columns ``sigma_train``, ``sigma``, ``acc_mean``: one method of :func:`train_infer_map`, or
    :func:`method_gain`); ``diverging`` centres a red-blue map on 0 (differences)."""
    wide = grid.pivot_table(index="sigma_train", columns="sigma", values="acc_mean").sort_index(ascending=False) * 100
    wide.index = [f"{v:.3g}" for v in wide.index]
    wide.columns = [f"{v:.3g}" for v in wide.columns]
    if diverging:
        lim = max(1.0, float(np.nanmax(np.abs(wide.to_numpy()))) if wide.size else 1.0)
        style = {"cmap": "RdBu", "center": 0.0, "vmin": -lim, "vmax": lim}
    else:
        style = {"cmap": "viridis", "vmin": 0, "vmax": 100}
    sns.heatmap(wide, annot=True, fmt=".0f", annot_kws={"fontsize": 6}, cbar_kws={"shrink": 0.8}, ax=ax, **style)
    ax.tick_params(axis="x", labelrotation=90, labelsize="x-small")
    ax.tick_params(axis="y", labelrotation=0, labelsize="x-small")
    ax.set_xlabel(r"inference $\sigma$")
    ax.set_ylabel(r"training $\sigma$")
    if title:
        ax.set_title(title)
    return ax


@themed
def figure(grid: pd.DataFrame) -> Figure:
    """Accuracy maps (training x inference sigma) of each method of :data:`METHODS` in ``grid``
    (:func:`train_infer_map`), and the map of ``sample`` minus ``fixed`` in points of accuracy."""
    fig = new_figure((5 * (len(METHODS) + 1), 4.4), layout="constrained")
    axes = fig.subplots(1, len(METHODS) + 1)
    for ax, m in zip(axes, METHODS):
        plot_train_infer_map(ax, grid[grid.method == m], title=f"{m} training sigma")
    plot_train_infer_map(axes[-1], method_gain(grid, "sample"), diverging=True,
                         title="sample minus fixed (points of accuracy)")
    return fig


def check(df: pd.DataFrame) -> None:
    """Print what notebook 06's checked cell shows, coarse enough to read the same on every machine: whether the
    best clean accuracy is above chance (30%), and per method the accuracy at the largest inference sigma
    (to 10 points; "chance" up to 30%)."""
    def level(acc: float) -> str:
        return "chance" if acc <= 0.3 else f"{round(acc, 1):.0%}"

    top, best = df.sigma.max(), df.clean_accuracy.max()
    print(f"best clean accuracy of the three methods: {'above chance' if best > 0.3 else 'chance'}")
    for m, g in df.groupby("sigma_sampling", sort=False):
        print(f"{m}: at sigma {top:g} {level(g[g.sigma == top].accuracy.mean())}")


def what_it_shows(grid: pd.DataFrame, fits: pd.DataFrame, profile: Profile, arch: str) -> Markdown:
    """What this run shows about variance-aware training, as Markdown computed from its numbers: per training sigma,
    each random method against ``fixed`` (mean and largest gain over the inference grid above the training sigma,
    and ``sigma_mid``), with the test set's resolution and the profile's budget as caveats."""
    if grid.empty:
        return Markdown("No network finished: nothing to compare.")
    n_test = profile.for_arch(arch).test_subset or 10_000
    noise = 2 * 100 * math.sqrt(0.25 / n_test)  # two binomial standard errors at 50% accuracy, in points
    lines = []
    mids = fits.set_index(["method", "sigma_train"]).sigma_mid
    for t, g in grid.groupby("sigma_train", sort=False):
        parts = []
        for m in METHODS[1:]:
            gain = method_gain(g, m)
            above = gain[gain.sigma >= t].dropna(subset=["acc_mean"])
            if above.empty:
                continue
            mean, i = 100 * above.acc_mean.mean(), above.acc_mean.idxmax()
            verdict = ("gains" if mean > noise else "loses" if mean < -noise else "is level with fixed")
            parts.append(f"`{m}` {verdict} ({mean:+.1f} points on average at inference sigma >= training sigma, "
                         f"best {100 * above.acc_mean[i]:+.1f} at sigma {above.sigma[i]:.3g}; sigma_mid "
                         f"{sig(mids.get((m, t), math.nan))} vs {sig(mids.get(('fixed', t), math.nan))})")
        if parts:
            lines.append(f"- training sigma {t:.3g}: " + "; ".join(parts) + ".")
    lines.append(f"- Caveat: differences below about {noise:.0f} points are within two binomial standard errors of "
                 f"{n_test:,} test images; {caveat(profile, arch, int(fits.seeds.max()) if len(fits) else 0)}.")
    if profile.name == "smoke":
        lines.append(SMOKE_NOTE)
    return Markdown("\n".join(lines))


