"""Experiments beyond the paper (docs/protocol.md §9, the paper's outlook) as run specs and tables.

- walking noise (:func:`walking_models`, :func:`walking_sigmas`): which
  trained networks to profile layer by layer, and the sigma grid for it;
- variance-aware noisy training (:func:`variance_aware_specs`,
  :func:`train_infer_map`): fixed vs random training sigma, evaluated over
  the whole inference grid;
- noise kinds (:func:`kind_specs`): the same networks evaluated under
  additive, multiplicative, combined and weight noise.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from .reproduce import Variant, clean_specs, summarize, variant_name

#: Variance-aware training (arXiv 2503.16183): sigma_i = ALPHA * sigma_train + theta * |z| with
#: theta = THETA_FACTOR * sigma_train, so that the mean sigma equals sigma_train
#: (alpha + theta_factor * sqrt(2/pi) = 1): fixed and random training see the same average noise.
ALPHA: float = 0.5
THETA_FACTOR: float = 0.5 * math.sqrt(math.pi / 2)
#: Training-sigma methods compared in the variance-aware notebook.
METHODS: tuple[str, ...] = ("fixed", "sample", "epoch")


def _half_decades(lo: float, hi: float) -> tuple[float, ...]:
    n = int(round(2 * (math.log10(hi) - math.log10(lo)))) + 1
    return tuple(float(v) for v in np.logspace(math.log10(lo), math.log10(hi), n))


def walking_sigmas(profile: Profile, decades_above: float = 1.0) -> tuple[float, ...]:
    """Sigma grid of a walking-noise sweep: the profile's grid, extended ``decades_above`` decades upwards.

    Noise at one module hurts far less than noise at all of them, so the
    single-module curves fall later than the global ones. The spacing stays
    the profile's (quick: three points per decade): single-module curves fall
    steeply, and a coarser grid leaves too few points on the fall to fix the midpoint.
    """
    step = (math.log10(profile.sigma_max) - math.log10(profile.sigma_min)) / max(1, profile.n_sigmas - 1)
    n = profile.n_sigmas + int(round(decades_above / step))
    lo = math.log10(profile.sigma_min)
    return tuple(float(v) for v in np.logspace(lo, lo + step * (n - 1), n))


def kind_sigmas(profile: Profile) -> tuple[float, ...]:
    """Sigma grid of the noise-kind comparison: half-decade steps from ``sigma_min / 10`` to ``sigma_max``.

    A decade lower than the activation grid: weights are small (LeNet-5's are
    mostly below 0.1 in magnitude), so absolute weight noise bites earlier.
    """
    return _half_decades(profile.sigma_min / 10, profile.sigma_max)


def variance_aware_sigmas(profile: Profile, lo: float = 0.03, hi: float = 5.0) -> tuple[float, ...]:
    """Training sigmas of the variance-aware comparison: the points of ``profile.noisy_sigmas()`` in [lo, hi],
    the range where noisy-trained networks still work (their sigma_mid is about 2.6-3, Table II)."""
    return tuple(s for s in profile.noisy_sigmas() if lo <= s <= hi)


def walking_models(profile: Profile, arch: str, clean: pd.DataFrame, noisy: pd.DataFrame) -> dict[str, RunSpec]:
    """The three networks whose layer-wise profile 05 compares, chosen from finished sweeps (seed 0):

    - ``fp32``: trained without noise;
    - the **most robust constant-scale QAT** variant: the highest ``sigma_mid``
      among the constant scales of ``clean`` whose fit succeeded;
    - ``fp32, noisy training``: the noisy-trained fp32 network whose training
      sigma is closest (in log) to the clean fp32 ``sigma_mid``: trained at the
      noise level where the clean network breaks down.

    Args:
        clean: :func:`paperlib.run_sweep` table of :func:`~paperlib.reproduce.clean_specs` for ``arch``.
        noisy: the same for :func:`~paperlib.reproduce.noisy_specs` of fp32.

    Returns:
        Display name -> spec; variants without a usable fit are left out.
    """
    out = {"fp32": profile.spec(arch)}
    s = summarize(clean)
    const = s[s.scale.notna() & s.fit_ok & (s.arch == arch)]
    if len(const):
        best = const.loc[const.sigma_mid.idxmax()]
        out[f"{best.variant} (most robust QAT)"] = profile.spec(arch, bits=int(best.bits), scale=float(best.scale))
    fp32 = s[(s.variant == "fp32") & s.fit_ok & (s.arch == arch)]
    trained = noisy[(noisy.arch == arch) & noisy.bits.isna()].sigma_train.dropna().unique()
    if len(fp32) and len(trained):
        target = math.log10(float(fp32.sigma_mid.iloc[0]))
        sig = float(min(trained, key=lambda t: abs(math.log10(t) - target)))
        out[f"fp32, noisy training sigma={sig:.3g}"] = profile.spec(arch, sigma_train=sig, sigmas=(sig,))
    return out


def variance_aware_specs(profile: Profile, arch: str, train_sigmas: tuple[float, ...], seeds: int = 0) -> list[RunSpec]:
    """Networks trained with each sigma of ``train_sigmas`` and each training-sigma method, swept over the
    profile's whole inference grid (docs/protocol.md §9).

    ``fixed``: the paper's noisy training at ``sigma_train``. ``sample`` / ``epoch``:
    variance-aware training, a random sigma per image per step / per epoch,
    ``sigma_i = ALPHA * sigma_train + THETA_FACTOR * sigma_train * |z|`` (mean ``sigma_train``).
    """
    specs = []
    for sig in train_sigmas:
        for k in range(seeds if seeds > 0 else profile.for_arch(arch).seeds):
            specs.append(profile.spec(arch, sigma_train=sig, seed=k))
            for method in METHODS[1:]:
                specs.append(profile.spec(arch, sigma_train=sig, seed=k, sigma_sampling=method,
                                          sigma_alpha=ALPHA, sigma_theta=THETA_FACTOR * sig))
    return specs


def train_infer_map(df: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy per training-sigma method, training sigma and inference sigma (over seeds and draws).

    Returns:
        Columns ``method``, ``sigma_train``, ``sigma`` (inference), ``acc_mean``, ``acc_std``.
    """
    return (df.dropna(subset=["accuracy"]).rename(columns={"sigma_sampling": "method"})
            .groupby(["method", "sigma_train", "sigma"], sort=False)["accuracy"]
            .agg(acc_mean="mean", acc_std="std").reset_index())


def kind_specs(profile: Profile, arch: str, variants: list[Variant], kinds: tuple[str, ...],
               sigmas: tuple[float, ...], seeds: int = 0) -> list[RunSpec]:
    """The clean-trained ``variants`` evaluated under each noise kind on ``sigmas`` (evaluation only:
    the trained networks are those of :func:`~paperlib.reproduce.clean_specs`, from the cache)."""
    return [RunSpec.from_dict({**s.to_dict(), "noise_kind": kind, "sigmas": sigmas})
            for s in clean_specs(profile, arch, variants, seeds) for kind in kinds]


def kind_label(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``variant`` set to "<variant>, <noise kind>", for :func:`~paperlib.reproduce.summarize` per kind."""
    out = df.copy()
    out["variant"] = [f"{variant_name(b, s)}, {k}" for b, s, k in zip(out.bits, out.scale, out.noise_kind)]
    out["regime"] = "clean"
    return out


def method_fits(df: pd.DataFrame) -> pd.DataFrame:
    """Per training-sigma method and training sigma: peak accuracy (noise-free, mean over seeds, docs/protocol.md
    §11), the ``sigma_mid`` of the accuracy-vs-inference-sigma curve (the robustness to inference noise that
    differs from training) and how many of its networks diverged (``diverged``, e.g. "1 of 2")."""
    labelled = df.assign(variant=[f"{m}, sigma_train={t:.3g}" for m, t in zip(df.sigma_sampling, df.sigma_train)],
                         regime="noisy")
    s = summarize(labelled)
    keys = labelled.drop_duplicates("variant").set_index("variant")[["sigma_sampling", "sigma_train"]]
    s = s.join(keys, on="variant").rename(columns={"sigma_sampling": "method"})
    return s[["method", "sigma_train", "seeds", "peak_acc", "sigma_mid", "rel_err", "fit", "diverged", "failed"]]


def method_gain(grid: pd.DataFrame, method: str, baseline: str = "fixed") -> pd.DataFrame:
    """``acc_mean`` of ``method`` minus that of ``baseline`` per training and inference sigma (fractions)."""
    keys = ["sigma_train", "sigma"]
    a = grid[grid.method == method].set_index(keys)["acc_mean"]
    b = grid[grid.method == baseline].set_index(keys)["acc_mean"]
    return (a - b).rename("acc_mean").reset_index().assign(method=f"{method} - {baseline}")


def mismatch(grid: pd.DataFrame, factors: tuple[float, ...] = (0.5, 2.0, 4.0)) -> pd.DataFrame:
    """Accuracy at inference sigmas ``factor * sigma_train`` (nearest grid point in log), per method, as a wide table.

    Rows: training sigma and mismatch factor; columns: the methods (mean accuracy, fractions).
    """
    rows = []
    for (method, sig), g in grid.groupby(["method", "sigma_train"], sort=False):
        logs = np.log10(g.sigma.to_numpy())
        for f in (1.0, *factors):
            i = int(np.abs(logs - math.log10(f * sig)).argmin())
            rows.append({"sigma_train": sig, "inference / training": f, "sigma": g.sigma.iloc[i], "method": method,
                         "accuracy": g.acc_mean.iloc[i]})
    wide = pd.DataFrame(rows).pivot_table(index=["sigma_train", "inference / training", "sigma"], columns="method",
                                          values="accuracy", sort=False)
    return wide.reset_index()


def extremes(walking: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The ``n`` most and ``n`` least sensitive noise modules (smallest / largest ``sigma_mid``) per arch and model.

    Modules whose fit failed because their curve never falls inside the grid
    count as least sensitive (``sigma_mid`` beyond the grid), ahead of fitted ones.
    """
    rows = []
    for (arch, model), g in walking.groupby(["arch", "model"], sort=False):
        never = g[~g.fit_ok & g.reason.str.contains("never falls", na=False)]
        fitted = g[g.fit_ok].sort_values("sigma_mid")
        for rank, r in enumerate(fitted.head(n).itertuples(), 1):
            rows.append({"arch": arch, "model": model, "group": "most sensitive", "rank": rank, "index": r.index,
                         "name": r.name, "follows": r.follows, "sigma_mid": r.sigma_mid,
                         "fit": f"{r.sigma_mid:.3g} ({100 * r.rel_err:.1f}%)"})
        least = [*never.itertuples(), *fitted.iloc[::-1].itertuples()][:n]
        for rank, r in enumerate(least, 1):
            rows.append(
                {
                    "arch": arch,
                    "model": model,
                    "group": "least sensitive",
                    "rank": rank,
                    "index": r.index,
                    "name": r.name,
                    "follows": r.follows,
                    "sigma_mid": r.sigma_mid,
                    "fit": f"{r.sigma_mid:.3g} ({100 * r.rel_err:.1f}%)" if r.fit_ok else "beyond the grid",
                }
            )
    return pd.DataFrame(rows)
