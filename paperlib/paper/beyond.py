"""Experiments beyond the paper (docs/protocol.md §9, the paper's outlook): runs, tables, figures and what they show.

Each notebook 05-07 calls one function per step; the logic lives here.

- walking noise (notebook 05): :func:`walking_noise` profiles the networks that
  :func:`walking_models` picks, one noise module at a time, over :func:`walking_sigmas`;
  :func:`walking_fits`, :func:`extremes`, :func:`walking_figure`, :func:`walking_check`,
  :func:`what_walking_noise_shows`, :func:`print_noise_sites`;
- variance-aware noisy training (notebook 06): :func:`variance_aware_specs`,
  :func:`train_infer_map`, :func:`method_fits`, :func:`mismatch`,
  :func:`variance_aware_figure`, :func:`variance_aware_check`, :func:`what_variance_aware_shows`;
- noise kinds (notebook 07): :func:`kind_specs` (the networks of :func:`kind_variants`
  under each noise kind), :func:`kind_label`, :func:`kind_summary`, :func:`kind_figure`,
  :func:`what_noise_kinds_show`.

Tables shown in the notebooks give accuracies in % (one decimal); the tidy run tables stay in fractions.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import guards
from ..data import load_cifar10
from ..device import resolve_device
from ..models import ARCH_NAMES, build_model
from ..noise import NOISE_KINDS
from ..runs import Profile, RunSpec, run
from ..runs.progress import duration, report
from ..runs.summary import Variant, curves, summarize, variant_name
from ..walking import fit_layer_curves, layer_curves, noise_site_table
from .experiments import Markdown, clean_specs, noisy_specs, qat_variants
from .plotting import plot_curves, plot_layer_sensitivity, plot_train_infer_map

if TYPE_CHECKING:
    from .session import Session

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
        clean: :func:`paperlib.run_sweep` table of :func:`~paperlib.paper.experiments.clean_specs` for ``arch``.
        noisy: the same for :func:`~paperlib.paper.experiments.noisy_specs` of fp32.

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
    guards.seeds(seeds)
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


def kind_variants(profile: Profile) -> list[Variant]:
    """The networks of the noise-kind comparison: fp32, and the profile's widest bit width with dynamic scaling and
    with the constant scale of noisy training (``profile.noisy_scale``)."""
    return [(None, None), (profile.bits[-1], None), (profile.bits[-1], profile.noisy_scale)]


def kind_specs(profile: Profile, arch: str = "lenet5", variants: list[Variant] | None = None,
               kinds: tuple[str, ...] = NOISE_KINDS, sigmas: tuple[float, ...] | None = None,
               seeds: int = 0) -> list[RunSpec]:
    """The clean-trained ``variants`` (default :func:`kind_variants`) evaluated under each noise kind on ``sigmas``
    (default :func:`kind_sigmas`); evaluation only: the trained networks are those of
    :func:`~paperlib.paper.experiments.clean_specs`, from the cache. ``seeds``: 0 means the profile's number."""
    variants = kind_variants(profile) if variants is None else variants
    sigmas = kind_sigmas(profile) if sigmas is None else tuple(sigmas)
    return [RunSpec.from_dict({**s.to_dict(), "noise_kind": kind, "sigmas": sigmas})
            for s in clean_specs(profile, arch, variants, seeds) for kind in kinds]


def kind_label(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``variant`` set to "<variant>, <noise kind>", for :func:`~paperlib.runs.summary.summarize`
    per kind."""
    out = df.copy()
    out["variant"] = [f"{variant_name(b, s)}, {k}" for b, s, k in zip(out.bits, out.scale, out.noise_kind)]
    out["regime"] = "clean"
    return out


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
    for (method, sig), g in grid.groupby(["method", "sigma_train"], sort=False):
        logs = np.log10(g.sigma.to_numpy())
        for f in (1.0, *factors):
            i = int(np.abs(logs - math.log10(f * sig)).argmin())
            rows.append({"sigma_train": sig, "inference / training": f, "sigma": g.sigma.iloc[i], "method": method,
                         "accuracy": round(100 * float(g.acc_mean.iloc[i]), 1)})
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


# --- walking noise (notebook 05) ---------------------------------------------------------------------------------

#: Seed of the stratified test subset of every walking-noise sweep (``walking_test_subset`` images).
WALKING_SUBSET_SEED: int = 0
#: Columns of :func:`walking_noise`: what was measured, then what made the network (for the caption).
WALKING_COLUMNS: tuple[str, ...] = ("arch", "model", "seed", "index", "name", "follows", "sigma", "repeat", "accuracy",
                                    "bits", "scale", "sigma_train", "epochs", "train_subset", "test_subset",
                                    "dataset", "revision", "code")


def _networks(profile: Profile, arch: str, seeds: int) -> int:
    """Networks per variant: ``seeds``, or the profile's number for ``arch`` when ``seeds`` is 0."""
    if not (isinstance(seeds, int) and seeds >= 0):
        raise ValueError(f"seeds must be an integer >= 0 (0: the profile's number), got {seeds!r}")
    return seeds if seeds > 0 else profile.for_arch(arch).seeds


def print_noise_sites(archs: tuple[str, ...] = ("lenet5", "resnet18")) -> None:
    """Print the noise modules of each of ``archs`` in forward order, "index:what it follows" (deterministic:
    the indices of :func:`walking_noise` and :func:`walking_fits`)."""
    for arch in archs:
        sites = noise_site_table(build_model(arch))
        print(f"{ARCH_NAMES[arch]}: {len(sites)} sites;",
              " ".join(f"{i}:{f}" for i, f in zip(sites["index"], sites["follows"])))


def walking_noise(session: Session, seeds: int = 0) -> pd.DataFrame:
    """The walking-noise curves of notebook 05 (docs/protocol.md §9; Borras et al., arXiv 2212.10430).

    For each architecture of ``session.profile``: run (or read from the cache) the clean QAT sweep
    (:func:`~paperlib.paper.experiments.clean_specs` of every QAT variant) and the fp32 noisy-training sweep, each
    with ``seeds`` networks per variant; pick the three networks of :func:`walking_models` from them; then, for
    each pick and each seed ``0 .. seeds-1``, load the trained network (``paperlib.run(..., need_weights=True)``)
    and measure its accuracy with noise at one noise module at a time (:func:`paperlib.layer_curves`, one noise
    draw per sigma, seeded by the network's seed) on :func:`walking_sigmas` and ``walking_test_subset`` test
    images (stratified, seed :data:`WALKING_SUBSET_SEED`). Networks whose training diverged are left out.

    Args:
        session: the notebook's :class:`~paperlib.paper.Session` (profile, data, cache, device, executor).
        seeds: networks per variant, in the sweeps and in the profile; 0 means the profile's number.

    Returns:
        One row per (arch, model, seed, noise module, sigma), columns :data:`WALKING_COLUMNS`: ``accuracy`` a
        fraction; ``test_subset`` the walking test images; the rest as in :func:`paperlib.run_sweep`.
    """
    profile = session.profile
    sigmas = walking_sigmas(profile)
    device = resolve_device(session.device)
    data = None
    jobs = []  # (arch, pick, spec, seed, test images): every network to profile, known before the first one
    for arch in profile.archs:
        n = _networks(profile, arch, seeds)
        clean = session.sweep(clean_specs(profile, arch, qat_variants(profile, arch), n))
        noisy = session.sweep(noisy_specs(profile, arch, [(None, None)], n))
        data = data if data is not None else load_cifar10(session.data_root, device="cpu")
        test = data.subset(test=profile.for_arch(arch).walking_test_subset, seed=WALKING_SUBSET_SEED)
        for name, spec in walking_models(profile, arch, clean, noisy).items():
            jobs += [(arch, name, replace(spec, seed=seed), seed, test) for seed in range(n)]
    parts = []
    took: dict[str, list[float]] = {}  # seconds per network, by architecture
    for i, (arch, name, spec, seed, test) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        result = run(spec, session.data_root, session.results_dir, device, data=data, progress=False,
                     need_weights=True)
        if result.diverged:
            how = "diverged, left out"
        else:
            x, y = test.x_test.to(device), test.y_test.to(device)
            table = layer_curves(result.load_model(device), x, y, sigmas, repeats=1, seed=seed, progress=False)
            s = result.spec
            parts.append(table.assign(arch=arch, model=name, seed=seed, bits=s.bits, scale=s.scale,
                                      sigma_train=s.sigma_train, epochs=s.epochs, train_subset=s.train_subset,
                                      test_subset=len(y), dataset=s.dataset, revision=result.revision,
                                      code=result.code))
            how = f"{table['index'].nunique()} noise modules x {len(sigmas)} sigmas on {len(y):,} test images"
        took.setdefault(arch, []).append(time.perf_counter() - t0)
        report(f"walking noise {i}/{len(jobs)}: {arch} {name} seed {seed}: {how} "
               f"({time_left(took, [a for a, *_ in jobs[i:]])})")
    if not parts:
        return pd.DataFrame(columns=list(WALKING_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(WALKING_COLUMNS)]


def time_left(took: dict[str, list[float]], rest: list[str]) -> str:
    """``"3 to go; about 4 min left"``: the networks ``rest`` (their architectures) still to profile, each charged
    the mean time (s) a network of its architecture ``took``; architectures not timed yet are named, not guessed
    (a ResNet-18 network costs far more than a LeNet-5 one)."""
    if not rest:
        return "0 to go"
    counts = pd.Series(rest).value_counts(sort=False)
    known = {a: k for a, k in counts.items() if took.get(a)}
    untimed = ", ".join(f"{k} {ARCH_NAMES.get(a, a)}" for a, k in counts.items() if a not in known)
    if not known:
        return f"{len(rest)} to go, not yet timed"
    eta = f"about {duration(sum(float(np.mean(took[a])) * k for a, k in known.items()))}"
    if untimed:
        return f"{len(rest)} to go; {eta} left for {sum(known.values())}, then {untimed} not yet timed"
    return f"{len(rest)} to go; {eta} left"


def walking_fits(walking: pd.DataFrame) -> pd.DataFrame:
    """One midpoint fit per (arch, model, noise module) of a :func:`walking_noise` table.

    The curve of a module is the mean over its networks (seeds) and draws at each sigma
    (:func:`paperlib.fit_layer_curves`); ``sigma_mid_err`` comes from the fit residuals.

    Returns:
        Columns ``arch``, ``model``, ``seeds`` (networks), then those of :func:`paperlib.layer_sensitivity`
        with the peak accuracy in % (``peak acc. (%)``, one decimal) instead of the fraction.
    """
    rows = []
    for (arch, model), g in walking.groupby(["arch", "model"], sort=False):
        fits = fit_layer_curves(g[["index", "name", "follows", "sigma", "repeat", "accuracy"]])
        fits.insert(0, "seeds", g.seed.nunique())
        fits.insert(0, "model", model)
        fits.insert(0, "arch", arch)
        fits["peak acc. (%)"] = (100 * fits.pop("peak_accuracy")).round(1)
        rows.append(fits)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _figure(figsize: tuple[float, float], **kwargs) -> Figure:
    """A figure that pyplot lets go of: made through pyplot (so that a notebook's inline backend shows it as an
    image), then closed, so that a notebook shows it once, as its cell's last expression."""
    fig = plt.figure(figsize=figsize, **kwargs)
    plt.close(fig)
    return fig


def walking_figure(fits: pd.DataFrame) -> Figure:
    """``sigma_mid`` per noise module along the depth, one panel per architecture of ``fits``
    (:func:`walking_fits`), one line per model (:func:`paperlib.paper.plotting.plot_layer_sensitivity`)."""
    archs = list(fits.arch.unique())
    fig = _figure((11, 4.2 * max(1, len(archs))), layout="constrained")
    axes = fig.subplots(max(1, len(archs)), 1, squeeze=False)[:, 0]
    for ax, arch in zip(axes, archs):
        plot_layer_sensitivity(ax, fits[fits.arch == arch], title=ARCH_NAMES.get(arch, arch))
    return fig


def walking_check(walking: pd.DataFrame) -> None:
    """Print per network kind what notebook 05's checked cell shows, coarse enough to read the same on every machine:
    sites, sigmas and networks profiled, and whether the peak accuracy with noise at any one site is above chance
    (30%)."""
    for (arch, model), g in walking.groupby(["arch", "model"], sort=False):
        peak = g.groupby(["index", "sigma"]).accuracy.mean().groupby("index").max()
        where = "above chance" if peak.min() > 0.3 else "at chance"
        print(f"{ARCH_NAMES.get(arch, arch)} {model}: {g['index'].nunique()} sites x {g.sigma.nunique()} sigmas x "
              f"{g.seed.nunique()} network(s); peak accuracy with noise at any one site {where}")


def _budget(profile: Profile, arch: str, networks: int, test_images: int | None = None) -> str:
    """The training budget behind a run's numbers, as a caveat sentence."""
    p = profile.for_arch(arch)
    train = f"{p.train_subset:,}" if p.train_subset else "all 50,000"
    test = test_images or p.test_subset
    tests = f"{test:,}" if test else "all 10,000"
    says = ("the paper trains 500 epochs on all 50,000 images" if p.epochs < 500 or p.train_subset
            else "the paper's budget")
    return (f"profile `{profile.name}`: {ARCH_NAMES.get(arch, arch)} trained {p.epochs} epoch(s) on {train} images "
            f"({says}), {networks} network(s) per variant, {tests} test images")


def _markdown(text: str) -> Markdown:
    return Markdown(text)


def _sig(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def what_walking_noise_shows(fits: pd.DataFrame, profile: Profile) -> Markdown:
    """What this run's walking-noise fits (:func:`walking_fits`) show, as Markdown computed from their numbers:
    per network its most and least sensitive modules, how the networks compare at their median module, and the
    caveats (fits too uncertain to rank, the profile's budget)."""
    if fits.empty:
        return _markdown("No network could be profiled (every picked network diverged or none was picked).")
    lines = []
    for arch, a in fits.groupby("arch", sort=False):
        lines.append(f"**{ARCH_NAMES.get(arch, arch)}**")
        medians = {}
        for model, g in a.groupby("model", sort=False):
            ok = g[g.fit_ok].sort_values("sigma_mid")
            never = int((~g.fit_ok & g.reason.str.contains("never falls", na=False)).sum())
            if ok.empty:
                lines.append(f"- {model}: no module's curve could be fitted ({len(g)} modules).")
                continue
            lo, hi = ok.iloc[0], ok.iloc[-1]
            medians[model] = float(ok.sigma_mid.median())
            loose = int((ok.rel_err > 0.5).sum())
            lines.append(
                f"- {model}: most sensitive module {lo['index']} (`{lo['name']}`, after {lo.follows}, sigma_mid "
                f"{_sig(lo.sigma_mid)}), least sensitive fitted module {hi['index']} (`{hi['name']}`, after "
                f"{hi.follows}, {_sig(hi.sigma_mid)}): a spread of {hi.sigma_mid / lo.sigma_mid:.3g}x; median "
                f"{_sig(medians[model])} over {len(ok)} fitted of {len(g)} modules"
                + (f"; {never} module(s) never fall inside the grid (even more tolerant)" if never else "")
                + (f"; {loose} fit(s) with a relative error above 50% do not rank reliably" if loose else "") + ".")
        if len(medians) > 1:
            base, ref = next(iter(medians.items()))
            others = ", ".join(f"{m}: {v / ref:.3g}x" for m, v in medians.items() if m != base)
            lines.append(f"- Median module sigma_mid relative to {base}: {others} (above 1: more tolerant).")
        networks = int(a.seeds.max())
        lines.append(f"- Caveat: {_budget(profile, arch, networks, profile.for_arch(arch).walking_test_subset)}; "
                     "one noise draw per sigma and module.")
    if profile.name == "smoke":
        lines.append("\nThe `smoke` profile checks that the notebook runs; its numbers say nothing about CIFAR-10.")
    return _markdown("\n".join(lines))


# --- variance-aware noisy training (notebook 06) -----------------------------------------------------------------

def variance_aware_figure(grid: pd.DataFrame) -> Figure:
    """Accuracy maps (training x inference sigma) of each method of :data:`METHODS` in ``grid``
    (:func:`train_infer_map`), and the map of ``sample`` minus ``fixed`` in points of accuracy."""
    fig = _figure((5 * (len(METHODS) + 1), 4.2), layout="constrained")
    axes = fig.subplots(1, len(METHODS) + 1)
    for ax, m in zip(axes, METHODS):
        plot_train_infer_map(ax, grid[grid.method == m], title=f"{m} training sigma")
    plot_train_infer_map(axes[-1], method_gain(grid, "sample"), diverging=True,
                         title="sample minus fixed (points of accuracy)")
    return fig


def variance_aware_check(df: pd.DataFrame) -> None:
    """Print what notebook 06's checked cell shows, coarse enough to read the same on every machine: whether the
    best clean accuracy is above chance (30%), and per method the accuracy at the largest inference sigma
    (to 10 points; "chance" up to 30%)."""
    def level(acc: float) -> str:
        return "chance" if acc <= 0.3 else f"{round(acc, 1):.0%}"

    top, best = df.sigma.max(), df.clean_accuracy.max()
    print(f"best clean accuracy of the three methods: {'above chance' if best > 0.3 else 'chance'}")
    for m, g in df.groupby("sigma_sampling", sort=False):
        print(f"{m}: at sigma {top:g} {level(g[g.sigma == top].accuracy.mean())}")


def what_variance_aware_shows(grid: pd.DataFrame, fits: pd.DataFrame, profile: Profile, arch: str) -> Markdown:
    """What this run shows about variance-aware training, as Markdown computed from its numbers: per training sigma,
    each random method against ``fixed`` (mean and largest gain over the inference grid above the training sigma,
    and ``sigma_mid``), with the test set's resolution and the profile's budget as caveats."""
    if grid.empty:
        return _markdown("No network finished: nothing to compare.")
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
                         f"{_sig(mids.get((m, t), math.nan))} vs {_sig(mids.get(('fixed', t), math.nan))})")
        if parts:
            lines.append(f"- training sigma {t:.3g}: " + "; ".join(parts) + ".")
    lines.append(f"- Caveat: differences below about {noise:.0f} points are within two binomial standard errors of "
                 f"{n_test:,} test images; {_budget(profile, arch, int(fits.seeds.max()) if len(fits) else 0)}.")
    if profile.name == "smoke":
        lines.append("\nThe `smoke` profile checks that the notebook runs; its numbers say nothing about CIFAR-10.")
    return _markdown("\n".join(lines))


# --- noise kinds (notebook 07) -----------------------------------------------------------------------------------

def kind_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant and noise kind of a :func:`kind_specs` sweep: networks, peak (noise-free) accuracy in %
    (``peak acc. (%)``, one decimal), ``sigma_mid``, ``fit`` (it with its relative standard error in %), failed runs."""
    s = summarize(kind_label(df))
    s["noise kind"] = s.variant.str.rsplit(", ", n=1).str[1]
    s["variant"] = s.variant.str.rsplit(", ", n=1).str[0]
    s["peak acc. (%)"] = (100 * s.peak_acc).round(1)
    return s[["arch", "variant", "noise kind", "seeds", "peak acc. (%)", "sigma_mid", "fit", "failed"]]


def kind_figure(df: pd.DataFrame, arch: str = "lenet5") -> Figure:
    """Accuracy vs sigma of a :func:`kind_specs` sweep, one panel per noise kind, one curve per variant."""
    kinds = list(dict.fromkeys(df.noise_kind))
    c = curves(kind_label(df))
    fig = _figure((5 * len(kinds), 4.2))
    axes = fig.subplots(1, len(kinds), sharey=True, squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        plot_curves(ax, c[c.variant.str.endswith(", " + kind)], title=f"{ARCH_NAMES.get(arch, arch)}, {kind} noise")
    return fig


def what_noise_kinds_show(summary: pd.DataFrame, profile: Profile) -> Markdown:
    """What this run shows about the noise kinds, as Markdown computed from :func:`kind_summary`: per variant the
    kinds from the most to the least tolerated (``sigma_mid``), whether each QAT variant tolerates more of each kind
    than fp32, and the caveats (unfitted curves, the profile's budget)."""
    if summary.empty:
        return _markdown("No run finished: nothing to compare.")
    lines = []
    ok = summary[summary.sigma_mid.notna()]
    for variant, g in ok.groupby("variant", sort=False):
        order = g.sort_values("sigma_mid", ascending=False)
        lines.append(f"- {variant}: tolerated most to least: "
                     + ", ".join(f"{k} ({_sig(m)})" for k, m in zip(order["noise kind"], order.sigma_mid)) + ".")
    fp32 = ok[ok.variant == "fp32"].set_index("noise kind").sigma_mid
    for variant, g in ok[ok.variant != "fp32"].groupby("variant", sort=False):
        ratios = [f"{k} {m / fp32[k]:.3g}x" for k, m in zip(g["noise kind"], g.sigma_mid) if k in fp32]
        if ratios:
            lines.append(f"- {variant} relative to fp32 (sigma_mid ratio; above 1: more robust): {', '.join(ratios)}.")
    unfitted = summary[summary.sigma_mid.isna()]
    if len(unfitted):
        lines.append("- Not fitted: " + ", ".join(f"{v}, {k}" for v, k in zip(unfitted.variant,
                                                                            unfitted["noise kind"])) + ".")
    arch = str(summary.arch.iloc[0])
    lines.append(f"- Caveat: ratios within the fits' relative errors (column `fit`) do not tell the kinds apart; "
                 f"{_budget(profile, arch, int(summary.seeds.max()))}.")
    if profile.name == "smoke":
        lines.append("\nThe `smoke` profile checks that the notebook runs; its numbers say nothing about CIFAR-10.")
    return _markdown("\n".join(lines))
