"""Walking noise (notebook 05, beyond the paper; docs/protocol.md §9; Borras et al., arXiv 2212.10430): which layers
are sensitive?

Noise goes into **one** noise module at a time, all others silent, and each module gets its own midpoint noise level.
It is an evaluation of the engine: a spec with ``noise_site=k`` (:class:`~paperlib.runs.spec.RunSpec`) evaluates
its cached network with noise at site ``k`` only, cached with the network's other curves under its own evaluation
key and scheduled by the same sweep runner, so a second run measures nothing.

:func:`specs` are the sweeps the networks are picked from (Fig. 2 / Table I's QAT networks and Fig. 3's fp32
noisy-trained ones, from the cache), :func:`picks` the three networks per architecture, :func:`site_specs` one
evaluation per picked network, seed and noise site, :func:`table` their tidy rows with the modules named,
:func:`fits` one midpoint per module, :func:`figure`, :func:`extremes`, :func:`check` and :func:`what_it_shows`.
"""
from __future__ import annotations

import math
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..models import ARCH_NAMES, build_model
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import summarize, variant_name
from ..walking import fit_layer_curves, noise_site_table
from .plots import legend, log_ticks, new_figure, themed
from .prose import SMOKE_NOTE, caveat
from .specs import clean_specs, noisy_specs, qat_variants
from .tables import Markdown, sig

#: The paper-layer modules (and the toolbox's walking-noise fits) this figure's numbers and drawing come from.
MODULES: tuple[str, ...] = ("paper/plots", "paper/prose", "paper/rules", "paper/specs", "paper/tables",
                            "paper/walking_noise", "walking")
#: Columns of :func:`table`: the network and module, the point, then what made the network (for the caption).
COLUMNS: tuple[str, ...] = ("arch", "model", "seed", "index", "name", "follows", "sigma", "repeat", "accuracy",
                            "bits", "scale", "sigma_train", "epochs", "train_subset", "test_subset", "dataset",
                            "revision", "code", "key", "device", "deterministic", "torch")


def sigmas(profile: Profile, decades_above: float = 1.0) -> tuple[float, ...]:
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


def specs(profile: Profile, seeds: int = 0) -> list[RunSpec]:
    """The sweeps the networks are picked from, per architecture of the profile: every QAT variant trained without
    noise and fp32 with noisy training (the networks of notebooks 01-03, from the cache); ``seeds`` 0 = the
    profile's number of networks per variant."""
    return [s for a in profile.archs
            for s in clean_specs(profile, a, qat_variants(profile, a), seeds) + noisy_specs(profile, a, [(None, None)],
                                                                                            seeds)]


def picks(profile: Profile, candidates: pd.DataFrame) -> dict[str, dict[str, RunSpec]]:
    """The three networks whose layer-wise profile notebook 05 compares, per architecture, chosen from the sweep
    table ``candidates`` of :func:`specs` (seed 0's spec; every seed of the sweep is profiled):

    - ``fp32``: trained without noise;
    - the **most robust constant-scale QAT** variant: the highest ``sigma_mid`` among the constant scales whose fit
      succeeded;
    - ``fp32, noisy training``: the noisy-trained fp32 network whose training sigma is closest (in log) to the
      clean fp32 ``sigma_mid``: trained at the noise level where the clean network breaks down.

    Returns:
        arch -> display name -> spec; variants without a usable fit are left out.
    """
    out = {}
    for arch in profile.archs:
        mine = candidates[candidates.arch == arch]
        chosen = {"fp32": profile.spec(arch)}
        s = summarize(mine[mine.sigma_train == 0])
        const = s[s.scale.notna() & s.fit_ok]
        if len(const):
            best = const.loc[const.sigma_mid.idxmax()]
            chosen[f"{best.variant} (most robust QAT)"] = profile.spec(arch, bits=int(best.bits),
                                                                       scale=float(best.scale))
        fp32 = s[(s.variant == "fp32") & s.fit_ok]
        trained = mine[mine.bits.isna() & (mine.sigma_train > 0)].sigma_train.dropna().unique()
        if len(fp32) and len(trained):
            target = math.log10(float(fp32.sigma_mid.iloc[0]))
            sig_ = float(min(trained, key=lambda t: abs(math.log10(t) - target)))
            chosen[f"fp32, noisy training sigma={sig_:.3g}"] = profile.spec(arch, sigma_train=sig_, sigmas=(sig_,))
        out[arch] = chosen
    return out


def site_specs(profile: Profile, candidates: pd.DataFrame) -> list[RunSpec]:
    """One evaluation per picked network (:func:`picks`), seed of ``candidates`` and noise site: the network's
    spec with noise at that site only (``noise_site``), on :func:`sigmas` with one noise draw per sigma, on the
    profile's ``walking_test_subset`` test images (``eval_test_subset``). Networks whose training diverged in
    ``candidates`` are left out (they have no weights to profile)."""
    out = []
    for arch, chosen in picks(profile, candidates).items():
        n_sites = len(noise_site_table(build_model(arch)))
        grid, images = sigmas(profile), profile.for_arch(arch).walking_test_subset
        mine = candidates[candidates.arch == arch]
        for spec in chosen.values():
            same = mine[(mine.bits.fillna(0) == (spec.bits or 0)) & (mine.sigma_train == spec.sigma_train)
                        & (mine.scale.fillna(-1) == (spec.scale if spec.scale is not None else -1))]
            for seed in sorted(same.seed.unique()):
                if bool(same[same.seed == seed].diverged.fillna(False).any()):
                    continue
                out += [replace(spec, seed=int(seed), sigmas=grid, repeats=1, noise_site=k, eval_test_subset=images)
                        for k in range(n_sites)]
    return out


def model_name(bits, scale, sigma_train) -> str:
    """The display name :func:`picks` gives a network: "fp32", "<variant> (most robust QAT)" or
    "fp32, noisy training sigma=<s>"."""
    if sigma_train > 0:
        return f"fp32, noisy training sigma={sigma_train:.3g}"
    name = variant_name(bits, scale)
    return name if name == "fp32" else f"{name} (most robust QAT)"


def table(df: pd.DataFrame) -> pd.DataFrame:
    """The sweep table of :func:`site_specs` as one row per (arch, model, seed, noise module, sigma), columns
    :data:`COLUMNS`: ``index`` the noise site, ``name`` / ``follows`` its module and what it follows
    (:func:`paperlib.walking.noise_site_table`), ``test_subset`` the test images the noise was evaluated on."""
    if df.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    sites = {a: noise_site_table(build_model(a)).set_index("index") for a in df.arch.unique()}
    out = df.dropna(subset=["accuracy"]).copy()
    out["model"] = [model_name(b, s, t) for b, s, t in zip(out.bits, out.scale, out.sigma_train)]
    out["index"] = out.noise_site.astype(int)
    out["name"] = [sites[a].loc[i, "name"] for a, i in zip(out.arch, out["index"])]
    out["follows"] = [sites[a].loc[i, "follows"] for a, i in zip(out.arch, out["index"])]
    out["test_subset"] = out.eval_test_subset.where(out.eval_test_subset.notna(), out.test_subset)
    return out[[c for c in COLUMNS if c in out]].reset_index(drop=True)


def fits(walking: pd.DataFrame) -> pd.DataFrame:
    """One midpoint fit per (arch, model, noise module) of a :func:`table`.

    The curve of a module is the mean over its networks (seeds) and draws at each sigma
    (:func:`paperlib.fit_layer_curves`); ``sigma_mid_err`` comes from the fit residuals.

    Returns:
        Columns ``arch``, ``model``, ``seeds`` (networks), then those of :func:`paperlib.layer_sensitivity`
        with the peak accuracy in % (``peak acc. (%)``, one decimal) instead of the fraction.
    """
    rows = []
    for (arch, model), g in walking.groupby(["arch", "model"], sort=False):
        one = fit_layer_curves(g[["index", "name", "follows", "sigma", "repeat", "accuracy"]])
        one.insert(0, "seeds", g.seed.nunique())
        one.insert(0, "model", model)
        one.insert(0, "arch", arch)
        one["peak acc. (%)"] = (100 * one.pop("peak_accuracy")).round(1)
        rows.append(one)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def print_noise_sites(archs: tuple[str, ...] = ("lenet5", "resnet18")) -> None:
    """Print the noise modules of each of ``archs`` in forward order, "index:what it follows" (deterministic: the
    indices of :func:`site_specs` and :func:`fits`)."""
    for arch in archs:
        sites = noise_site_table(build_model(arch))
        print(f"{ARCH_NAMES[arch]}: {len(sites)} sites;",
              " ".join(f"{i}:{f}" for i, f in zip(sites["index"], sites["follows"])))


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




def plot_layer_sensitivity(ax: plt.Axes, fits: pd.DataFrame, *, title: str | None = None) -> plt.Axes:
    """Walking noise: ``sigma_mid`` per noise module along the depth of a network, one line per model, drawn by
    seaborn from the tidy ``fits`` (:func:`fits` or rows of :func:`paperlib.layer_sensitivity` with a ``model``
    column), with the fits' standard errors as error bars.

    Modules whose accuracy never falls inside the grid are drawn as triangles at the top; ticks name what each
    module follows; modules on a ResNet downsampling shortcut are shaded, residual blocks separated by dotted lines.
    """
    first = fits[fits.model == fits.model.iloc[0]].sort_values("index")
    for i, name in zip(first["index"], first["name"]):
        if "downsample" in name:
            ax.axvspan(i - 0.5, i + 0.5, color="0.9", zorder=0)
    blocks = first["name"].str.extract(r"^(layer\d+\.\d+)\.")[0]
    for i, (prev, cur) in enumerate(zip(blocks.shift(), blocks)):
        if isinstance(cur, str) and cur != prev:
            ax.axvline(first["index"].iloc[i] - 0.5, color="0.7", ls=":", lw=0.8)
    models = list(dict.fromkeys(fits.model))
    palette = dict(zip(models, sns.color_palette("colorblind", len(models))))
    if (fits.sigma_mid > 0).any():
        ax.set_yscale("log")
    fitted = fits[fits.fit_ok]
    if len(fitted):  # seaborn warns on a frame without rows (no module fitted, e.g. at smoke)
        sns.lineplot(data=fitted, x="index", y="sigma_mid", hue="model", hue_order=models, palette=palette,
                     marker="o", markersize=4, markeredgewidth=0, errorbar=None, ax=ax, legend="brief")
    for model, g in fitted.groupby("model", sort=False):  # the fits' standard errors, in each line's colour
        ax.errorbar(g["index"], g.sigma_mid, yerr=g.sigma_mid_err, ls="none", capsize=2, lw=0.8, color=palette[model])
    top = np.nanmax(fits.sigma_mid) * 3 if fits.sigma_mid.notna().any() else 1.0
    beyond = fits[~fits.fit_ok & fits.reason.str.contains("never falls", na=False)]
    ax.scatter(beyond["index"], np.full(len(beyond), top), marker="^", color=[palette[m] for m in beyond.model])
    if (fits.sigma_mid > 0).any():
        log_ticks(ax.yaxis)
    ax.set_xticks(first["index"], first["follows"], rotation=90, fontsize="x-small")
    ax.set_xlabel("noise module (what it follows), input to output; shaded: downsampling shortcut; ^: beyond the grid")
    ax.set_ylabel(r"$\sigma_{mid}$ of this module alone")
    if title:
        ax.set_title(title)
    legend(ax, fontsize="x-small", title=None)
    return ax


@themed
def figure(fits: pd.DataFrame) -> Figure:
    """``sigma_mid`` per noise module along the depth, one panel per architecture of ``fits`` (:func:`fits`), one
    line per model (:func:`plot_layer_sensitivity`)."""
    archs = list(fits.arch.unique())
    fig = new_figure((11, 4.4 * max(1, len(archs))), layout="constrained")
    axes = fig.subplots(max(1, len(archs)), 1, squeeze=False)[:, 0]
    for ax, arch in zip(axes, archs):
        plot_layer_sensitivity(ax, fits[fits.arch == arch], title=ARCH_NAMES.get(arch, arch))
    return fig


def check(walking: pd.DataFrame) -> None:
    """Print per network kind what notebook 05's checked cell shows, coarse enough to read the same on every machine:
    sites, sigmas and networks profiled, and whether the peak accuracy with noise at any one site is above chance
    (30%)."""
    for (arch, model), g in walking.groupby(["arch", "model"], sort=False):
        peak = g.groupby(["index", "sigma"]).accuracy.mean().groupby("index").max()
        where = "above chance" if peak.min() > 0.3 else "at chance"
        print(f"{ARCH_NAMES.get(arch, arch)} {model}: {g['index'].nunique()} sites x {g.sigma.nunique()} sigmas x "
              f"{g.seed.nunique()} network(s); peak accuracy with noise at any one site {where}")


def what_it_shows(fits: pd.DataFrame, profile: Profile) -> Markdown:
    """What this run's walking-noise fits (:func:`fits`) show, as Markdown computed from their numbers:
    per network its most and least sensitive modules, how the networks compare at their median module, and the
    caveats (fits too uncertain to rank, the profile's budget)."""
    if fits.empty:
        return Markdown("No network could be profiled (every picked network diverged or none was picked).")
    lines = []
    for arch, a in fits.groupby("arch", sort=False):
        lines += [""] if lines else []  # a paragraph per architecture
        lines += [f"**{ARCH_NAMES.get(arch, arch)}**", ""]
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
                f"{sig(lo.sigma_mid)}), least sensitive fitted module {hi['index']} (`{hi['name']}`, after "
                f"{hi.follows}, {sig(hi.sigma_mid)}): a spread of {hi.sigma_mid / lo.sigma_mid:.3g}x; median "
                f"{sig(medians[model])} over {len(ok)} fitted of {len(g)} modules"
                + (f"; {never} module(s) never fall inside the grid (even more tolerant)" if never else "")
                + (f"; {loose} fit(s) with a relative error above 50% do not rank reliably" if loose else "") + ".")
        if len(medians) > 1:
            base, ref = next(iter(medians.items()))
            others = ", ".join(f"{m}: {v / ref:.3g}x" for m, v in medians.items() if m != base)
            lines.append(f"- Median module sigma_mid relative to {base}: {others} (above 1: more tolerant).")
        networks = int(a.seeds.max())
        lines.append(f"- Caveat: {caveat(profile, arch, networks, profile.for_arch(arch).walking_test_subset)}; "
                     "one noise draw per sigma and module.")
    if profile.name == "smoke":
        lines.append(SMOKE_NOTE)
    return Markdown("\n".join(lines))


