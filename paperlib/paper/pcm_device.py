"""Notebook 08 (beyond the paper): the paper's hardening methods on a PCM device model, from the zoo.

The zoo's LeNet-5 networks (:mod:`paperlib.zoo`: fp32, 8-bit dynamic, 8-bit with each constant scale, and
noisy-trained fp32 and 8-bit networks) are programmed onto phase-change memory as IBM aihwkit models it
(:mod:`paperlib.pcm`, docs/protocol.md "PCM device noise") and read from 1 s to a year after programming, with and
without global drift compensation, and at one day with the device noise scaled. Their ranking on the device is put
beside their ranking under the paper's Gaussian noise (``sigma_mid`` of the committed figures, in the manifest).
Nothing is trained.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from .. import zoo
from ..data import load_cifar10
from ..device import resolve_device
from ..evaluate import noise_sweep, summarize_sweep
from ..midpoint import fit_midpoint_calibrated
from ..pcm import pcm_sweep
from ..runs import progress
from ..runs.spec import SUBSET_SEED
from ..runs.summary import variant_name
from .plots import legend, new_figure, themed
from .session import Session

#: Times after programming (s): 1 s, 1 min, 1 h, 1 day, 30 days, 1 year.
TIMES: tuple[float, ...] = (1.0, 60.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0)
TIME_LABELS = {1.0: "1 s", 60.0: "1 min", 3600.0: "1 h", 86400.0: "1 day", 30 * 86400.0: "30 days",
               365 * 86400.0: "1 year"}
#: Scale factors on all three device noises (programming, read, drift), read at :data:`SCALE_TIME`.
NOISE_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
SCALE_TIME = 86400.0
#: The figure's own code beyond the usual figure modules (check-figures checks them too).
MODULES = ("pcm", "zoo/__init__", "paper/pcm_device", "paper/plots")
ARCH = "lenet5"


def method(bits, scale, sigma_train) -> str:
    """The hardening method of a network: its QAT variant, and its training sigma when noisy-trained."""
    name = variant_name(None if pd.isna(bits) else bits, None if pd.isna(scale) else scale)
    return f"{name}, noisy-trained σ={sigma_train:.3g}" if sigma_train > 0 else name


def collection(session: Session, zoo_profile: str = "") -> str:
    """The zoo collection to use: ``zoo_profile``, else the session's profile when the zoo has its networks,
    else ``quick``."""
    if zoo_profile:
        if not zoo.names(zoo_profile, ARCH):
            raise ValueError(f"the zoo has no LeNet-5 networks of {zoo_profile!r}; it has those of "
                             f"{sorted({zoo.info(n).profile for n in zoo.names()})}")
        return zoo_profile
    return session.profile.name if zoo.names(session.profile.name, ARCH) else "quick"


def _say(line: str) -> None:
    """A progress line: to the terminal of the main job when it runs the notebook (:mod:`paperlib.runs.progress`),
    else printed into the notebook."""
    if os.environ.get(progress.ENV):
        progress.report(f"   {line}")
    else:
        print(line, flush=True)


def networks(name: str) -> pd.DataFrame:
    """The zoo's fp32 and 8-bit LeNet-5 networks of collection ``name`` (noisy-trained ones at every training sigma),
    one row each: its name, method, spec columns, recorded clean accuracy, revision and code."""
    rows = []
    for n in zoo.names(name, ARCH):
        e = zoo.info(n)
        if e.spec.bits not in (None, 8) or e.spec.sigma_theta != 0 or e.spec.train_noise_kind != "additive":
            continue
        spec = {k: v for k, v in e.spec.to_dict().items() if k != "sigmas"}  # the figures' grid: not used here
        rows.append({"name": n, **spec, "clean_accuracy_recorded": e.clean_accuracy, "revision": e.revision,
                     "code": e.code})
    nets = pd.DataFrame(rows)
    if nets.empty:
        raise ValueError(f"the zoo has no fp32 or 8-bit LeNet-5 networks of {name!r}")
    nets["method"] = [method(b, s, t) for b, s, t in zip(nets.bits, nets.scale, nets.sigma_train)]
    return nets


def select(nets: pd.DataFrame, sigma_train: float = 0.0) -> pd.DataFrame:
    """``nets`` (with a ``sigma_mid`` column, :func:`gaussian`) keeping, of the noisy-trained networks, one
    training sigma per QAT variant: ``sigma_train`` when > 0, else the one whose networks have the highest mean
    Gaussian ``sigma_mid``."""
    noisy = nets[nets.sigma_train > 0]
    keep = nets.sigma_train == 0
    for _variant, g in noisy.groupby([noisy.bits.fillna(0), noisy.scale.fillna(0)]):
        if sigma_train > 0:
            chosen = g.sigma_train[np.isclose(g.sigma_train, sigma_train, rtol=1e-6)]
            if chosen.empty:
                raise ValueError(f"no noisy-trained network of training sigma {sigma_train:g} in the zoo; it has "
                                 f"{sorted(g.sigma_train.unique())}")
            pick = chosen.iloc[0]
        else:
            pick = g.groupby("sigma_train").sigma_mid.mean().fillna(-1.0).idxmax()
        keep |= nets.index.isin(g.index[g.sigma_train == pick])
    return nets[keep].reset_index(drop=True)


def gaussian(session: Session, nets: pd.DataFrame, draws: int, x, y) -> pd.DataFrame:
    """``nets`` with each network's ``sigma_mid`` and ``sigma_mid_err`` under the paper's Gaussian noise, measured
    here on the same test images (the profile's sigma grid, ``draws`` noise draws per sigma, the calibrated fit of
    docs/protocol.md §11; NaN where the fit fails)."""
    out = nets.copy()
    mids, errs = [], []
    for i, net in enumerate(nets.itertuples(index=False), 1):
        model = zoo.load(net.name, resolve_device(session.device))
        curve = summarize_sweep(noise_sweep(model, x, y, session.profile.sigmas(), repeats=draws, progress=False))
        fit = fit_midpoint_calibrated(curve.sigma.to_numpy(), curve.acc_mean.to_numpy())
        mids.append(fit.sigma_mid if fit.ok else np.nan)
        errs.append(fit.sigma_mid_err if fit.ok else np.nan)
        _say(f"Gaussian noise: network {i}/{len(nets)} {net.name}: sigma_mid {mids[-1]:.3g}")
    out["sigma_mid"], out["sigma_mid_err"] = mids, errs
    return out


def _images(session: Session, nets: pd.DataFrame):
    """The test images: the networks' own (their spec's subset of the data set they were trained on) when the
    session's data is that data set, else the profile's test subset of the session's data (stated in the note)."""
    data = load_cifar10(session.data_root)
    digests = set(nets.data_digest.dropna())
    if digests == {data.content_digest()}:
        x, y = zoo.eval_images(nets.name.iloc[0], data=data)
        return x, y, f"evaluated on the networks' own {len(y):,} test images of {data.source}"
    print(f"Note: the data found ({data.source}) is not the data set the zoo's networks were trained on; they are "
          f"evaluated on it anyway.")
    sub = data.subset(test=session.profile.test_subset, seed=SUBSET_SEED)
    return sub.x_test, sub.y_test, (f"evaluated on {len(sub.y_test):,} test images of {data.source}, not the "
                                    f"data set they were trained on")


def experiment(session: Session, nets: pd.DataFrame, draws: int, sigma_train: float = 0.0
               ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The Gaussian ``sigma_mid`` of every network of ``nets`` (:func:`gaussian`), then the networks :func:`select`
    keeps on ``draws`` independent PCM devices each: accuracy at :data:`TIMES` with and without global drift
    compensation, and at :data:`SCALE_TIME` with the device noise scaled by :data:`NOISE_SCALES` (compensated).

    Returns the tidy frame (one row per network, time, scale, compensation and device draw, with the network's
    spec columns and ``sigma_mid``; ``repeat`` = the device draw), the networks kept (with their ``sigma_mid``),
    and the caption note. Prints one progress line per network and measurement.
    """
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise ValueError(f"draws must be a whole number >= 1 (device and noise draws per network), got {draws!r}")
    x, y, where = _images(session, nets)
    kept = select(gaussian(session, nets, draws, x, y), sigma_train)
    out, start = [], time.monotonic()
    for i, net in enumerate(kept.itertuples(index=False), 1):
        model = zoo.load(net.name, resolve_device(session.device))
        seeds = range(draws)
        over_time = pcm_sweep(model, x, y, TIMES, seeds=seeds, compensation=(True, False))
        scaled = pcm_sweep(model, x, y, (SCALE_TIME,), noise_scales=NOISE_SCALES, seeds=seeds, compensation=(True,))
        over_time["panel"], scaled["panel"] = "time", "scale"
        sweep = pd.concat([over_time, scaled], ignore_index=True).rename(columns={"seed": "device_draw"})
        for col, value in net._asdict().items():
            sweep[col] = value
        out.append(sweep)
        left = (time.monotonic() - start) / i * (len(kept) - i)
        year = over_time[(over_time.t_inference == TIMES[-1]) & over_time.compensation].accuracy.mean()
        _say(f"PCM device: network {i}/{len(kept)} {net.name}: clean {sweep.clean_accuracy.iloc[0]:.1%}, 1 year "
             f"compensated {year:.1%} (about {progress.duration(left)} left)")
    df = pd.concat(out, ignore_index=True)
    df["repeat"] = df.device_draw
    note = (f"PCM model of aihwkit's PCMLikeNoiseModel (ours, docs/protocol.md §13), {draws} device draw(s) per "
            f"network, Gaussian sigma_mid measured here over {len(session.profile.sigmas())} sigmas; {where}")
    return df, kept, note


def halfway(x: np.ndarray, acc: np.ndarray, clean: float, chance: float = 0.1) -> float:
    """Where ``acc`` (on the increasing grid ``x``) first falls below halfway from ``clean`` to ``chance``,
    interpolated linearly in ``log x`` between the two grid points around it; NaN when it never does on the grid
    (more robust than the grid shows) and ``x[0]`` when it already has at the first point."""
    level = (clean + chance) / 2
    below = np.flatnonzero(acc < level)
    if not len(below):
        return float("nan")
    i = below[0]
    if i == 0:
        return float(x[0])
    lx = np.log(x[i - 1 : i + 1])
    return float(np.exp(np.interp(level, [acc[i], acc[i - 1]], [lx[1], lx[0]])))


def robustness(df: pd.DataFrame) -> pd.DataFrame:
    """Per network (device draws averaged first): clean accuracy, Gaussian ``sigma_mid``, and two device
    counterparts of ``sigma_mid``, each where the accuracy falls halfway from clean to chance (:func:`halfway`):
    ``scale_mid``, the factor on the PCM noise at one day (compensated), and ``drift_half_time`` (s), the time
    after programming without compensation. Also the accuracy one year after programming, compensated."""
    rows = []
    for (m, name), g in df.groupby(["method", "name"], sort=False):
        clean = float(g.clean_accuracy.iloc[0])
        sc = g[g.panel == "scale"].groupby("noise_scale").accuracy.mean()
        un = g[(g.panel == "time") & ~g.compensation].groupby("t_inference").accuracy.mean()
        year = g[(g.panel == "time") & g.compensation & (g.t_inference == TIMES[-1])].accuracy.mean()
        rows.append({"method": m, "name": name, "clean": clean, "sigma_mid": g.sigma_mid.iloc[0],
                     "scale_mid": halfway(sc.index.to_numpy(), sc.to_numpy(), clean),
                     "drift_half_time": halfway(un.index.to_numpy(), un.to_numpy(), clean),
                     "pcm_1year": year})
    return pd.DataFrame(rows)


def ranking(df: pd.DataFrame) -> pd.DataFrame:
    """Per method: networks, and the mean over its networks (spread: their standard deviation) of clean accuracy,
    Gaussian ``sigma_mid``, ``scale_mid``, ``drift_half_time`` and 1-year accuracy (:func:`robustness`), with the
    method's rank under each robustness measure (1 = most robust; a network that never fell halfway on the grid
    counts as the grid's end, and the table says ``>``)."""
    nets = robustness(df)
    top = {"scale_mid": max(NOISE_SCALES), "drift_half_time": TIMES[-1]}
    filled = nets.assign(**{c: nets[c].fillna(v) for c, v in top.items()})
    table = filled.groupby("method", sort=False).agg(
        networks=("name", "size"), clean=("clean", "mean"), sigma_mid=("sigma_mid", "mean"),
        sigma_mid_spread=("sigma_mid", "std"), scale_mid=("scale_mid", "mean"), scale_mid_spread=("scale_mid", "std"),
        drift_half_time_s=("drift_half_time", "mean"), pcm_1year=("pcm_1year", "mean"))
    beyond = nets.groupby("method", sort=False)[list(top)].apply(lambda g: g.isna().any())
    table["scale_mid_beyond_grid"] = beyond.scale_mid
    table["drift_beyond_grid"] = beyond.drift_half_time
    for col, rank in (("sigma_mid", "rank_gaussian"), ("scale_mid", "rank_pcm_scale"),
                      ("drift_half_time_s", "rank_pcm_drift")):
        table[rank] = table[col].rank(ascending=False, method="min").astype("Int64")
    return table.reset_index()


def method_order(df: pd.DataFrame) -> list[str]:
    """The methods of ``df`` in the figure's order: fp32, 8-bit dynamic, the constant scales by size, then the
    noisy-trained ones in the same order (by training sigma within a variant)."""
    meta = df.drop_duplicates("method").set_index("method")

    def key(m):
        r = meta.loc[m]
        fp32, dynamic = pd.isna(r.bits), pd.isna(r.scale)
        return (r.sigma_train > 0, not fp32, not dynamic, 0.0 if fp32 or dynamic else r.scale, r.sigma_train, m)
    return sorted(meta.index, key=key)


def method_palette(df: pd.DataFrame) -> dict[str, tuple]:
    """A colour per method that stays readable with a dozen of them: fp32 black, 8-bit dynamic orange, the
    clean constant scales a light-to-dark blue ramp by size, the noisy-trained methods green, purple, vermillion,
    pink... (seaborn's colorblind palette)."""
    order = method_order(df)
    noisy = set(df.loc[df.sigma_train > 0, "method"])
    meta = df.drop_duplicates("method").set_index("method")
    constant = [m for m in order if m not in noisy and not pd.isna(meta.loc[m].bits) and not pd.isna(meta.loc[m].scale)]
    cb = sns.color_palette("colorblind")
    extra = [cb[i] for i in (2, 4, 3, 6, 5, 9, 8)]
    colours = dict(zip(constant, sns.color_palette("Blues", len(constant) + 2)[2:]))
    others = iter(extra * (1 + len(order) // len(extra)))
    for m in order:
        if m in colours:
            continue
        if m in noisy:
            colours[m] = next(others)
        elif pd.isna(meta.loc[m].bits):
            colours[m] = (0.0, 0.0, 0.0)
        else:
            colours[m] = cb[1]
    return {m: colours[m] for m in order}


@themed
def figure(df: pd.DataFrame) -> Figure:
    """(a) accuracy (%) against time after programming, compensated (solid) and not (dashed); (b) accuracy at one
    day against the device-noise scale (compensated). Drawn by seaborn: the mean over networks and device draws,
    band: their spread. One legend, right of the panels, in :func:`method_order` with :func:`method_palette`."""
    fig = new_figure((12.5, 4.6), layout="constrained")
    ax_t, ax_s = fig.subplots(1, 2)
    palette = method_palette(df)
    methods = list(palette)
    rows = df.assign(**{"accuracy (%)": 100 * df.accuracy,
                        "drift compensation": df.compensation.map({True: "compensated", False: "uncompensated"})})
    ax_t.set_xscale("log")
    sns.lineplot(data=rows[rows.panel == "time"], x="t_inference", y="accuracy (%)", hue="method", hue_order=methods,
                 palette=palette, style="drift compensation", style_order=["compensated", "uncompensated"],
                 errorbar="sd", marker="o", markersize=4, markeredgewidth=0, ax=ax_t)
    ax_t.set_xticks(list(TIME_LABELS), list(TIME_LABELS.values()))
    ax_t.minorticks_off()
    ax_t.set_xlabel("time after programming")
    ax_t.set_title("(a) drift: compensated (solid), uncompensated (dashed)")
    handles, labels = ax_t.get_legend_handles_labels()
    if ax_t.get_legend() is not None:
        ax_t.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize="x-small")
    else:
        legend(ax_t)
    sns.lineplot(data=rows[rows.panel == "scale"], x="noise_scale", y="accuracy (%)", hue="method",
                 hue_order=methods, palette=palette, errorbar="sd", marker="o", markersize=4, markeredgewidth=0,
                 ax=ax_s, legend=False)
    ax_s.set_xlabel("scale on the PCM noise (programming, read, drift)")
    ax_s.set_title(f"(b) at {TIME_LABELS[SCALE_TIME]}, compensated")
    for ax in (ax_t, ax_s):
        ax.axhline(10, color="0.6", lw=0.8, ls=":")
        ax.set_ylim(0, 100)
    return fig


def check(df: pd.DataFrame) -> None:
    """Per method, its accuracy at 1 s and at 1 year (compensated) and at 1 year uncompensated, coarse enough to
    read the same on every machine (10 points; "≤30%" up to 30%): the line nbval checks."""
    def level(acc: float) -> str:
        return "≤30%" if acc <= 0.3 else f"{round(acc, 1):.0%}"

    t = df[df.panel == "time"]
    for m, g in t.groupby("method", sort=False):
        at = {(w, c): g[(g.t_inference == w) & (g.compensation == c)].accuracy.mean()
              for w in (TIMES[0], TIMES[-1]) for c in (True, False)}
        print(f"{m}: at 1 s {level(at[TIMES[0], True])}, at 1 year {level(at[TIMES[-1], True])} compensated, "
              f"{level(at[TIMES[-1], False])} uncompensated")


def rank_agreement(table: pd.DataFrame) -> dict[str, float]:
    """Spearman's rho between the Gaussian ranking and each device ranking of :func:`ranking`'s table (the Pearson
    correlation of their ranks, ties at their mean rank): 1, the same order; 0, unrelated; -1, reversed. NaN with
    fewer than 3 methods."""
    if len(table) < 3:
        return {"scale": float("nan"), "drift": float("nan")}
    gauss = table.sigma_mid.rank()
    return {k: float(np.corrcoef(gauss, table[col].rank())[0, 1])
            for k, col in (("scale", "scale_mid"), ("drift", "drift_half_time_s"))}


def _order(table: pd.DataFrame, col: str) -> str:
    return " > ".join(table.sort_values(col, ascending=False, kind="stable").method)


def what_it_shows(table: pd.DataFrame, df: pd.DataFrame, collection_name: str) -> str:
    """A few sentences computed from this run's ranking table and frame."""
    n_nets = int(table.networks.sum())
    t = df[df.panel == "time"]

    def mean_at(when, comp):
        return t[(t.t_inference == when) & (t.compensation == comp)].accuracy.mean()

    def best(col):
        row = table.sort_values(col, ascending=False, kind="stable").iloc[0]
        return row.method, row[col], row

    g_best, g_val, _ = best("sigma_mid")
    s_best, s_val, s_row = best("scale_mid")
    d_best, d_val, d_row = best("drift_half_time_s")
    s_text = f"{'at least ' if s_row.scale_mid_beyond_grid else ''}{s_val:.3g}x the device's noise"
    d_text = ("at least one of its networks still above halfway to chance after a year" if d_row.drift_beyond_grid
              else f"halfway to chance after {d_val / 86400:.3g} days")
    lines = [
        f"{len(table)} methods, {n_nets} LeNet-5 networks of the zoo's {collection_name!r} collection "
        f"({', '.join(f'{k}: {v}' for k, v in table.set_index('method').networks.items())}).",
        f"Most robust under the paper's Gaussian noise: {g_best} (sigma_mid {g_val:.3g}). Against the PCM noise "
        f"scaled at one day (compensated): {s_best} (falls halfway to chance at {s_text}). "
        f"Against uncompensated drift: {d_best} ({d_text}).",
        "Gaussian ranking: " + _order(table, "sigma_mid") + ".",
        "PCM noise scale ranking: " + _order(table, "scale_mid") + ".",
        "Uncompensated drift ranking: " + _order(table, "drift_half_time_s") + ".",
        f"Averaged over all networks, accuracy is {mean_at(TIMES[0], True):.1%} at 1 s and "
        f"{mean_at(TIMES[-1], True):.1%} at 1 year with global drift compensation, "
        f"{mean_at(TIMES[-1], False):.1%} at 1 year without it.",
    ]
    if "fp32" in set(table.method):
        ref = table.set_index("method").loc["fp32"]
        ratios = [f"{r.method} {r.sigma_mid / ref.sigma_mid:.2g}x / {r.scale_mid / ref.scale_mid:.2g}x / "
                  f"{r.drift_half_time_s / ref.drift_half_time_s:.2g}x"
                  for r in table.itertuples() if r.method != "fp32"]
        lines.append("Relative to fp32 (Gaussian sigma_mid / PCM scale_mid / uncompensated drift half time; a "
                     "network beyond the grid counted at its end): " + "; ".join(ratios) + ".")
        others = table[table.method != "fp32"]
        g, s = (others.sigma_mid / ref.sigma_mid).dropna(), (others.scale_mid / ref.scale_mid).dropna()
        parts = ([f"Gaussian sigma_mid {g.min():.2g}x to {g.max():.2g}x"] if len(g) else []) + \
            ([f"a PCM noise scale at one day {s.min():.2g}x to {s.max():.2g}x"] if len(s) else [])
        if parts:
            lines.append(f"Over fp32, the {len(others)} other methods reach " + "; ".join(parts) + ".")
    rho = rank_agreement(table)
    if np.isfinite(rho["scale"]):
        lines.append(f"Agreement of each device ranking with the Gaussian one (Spearman's rho over {len(table)} "
                     f"methods; 1: the same order): PCM noise scale {rho['scale']:.2f}, uncompensated drift "
                     f"{rho['drift']:.2f}.")
    lo, hi = table.loc[table.clean.idxmin()], table.loc[table.clean.idxmax()]
    lines.append(f"Clean accuracy from {lo.clean:.1%} ({lo.method}) to {hi.clean:.1%} ({hi.method}); every measure "
                 f"here counts from a network's own clean accuracy to chance, so a robust network may still be the "
                 f"less accurate one at every noise level.")
    spread = table[["sigma_mid_spread", "scale_mid_spread"]].max().max()
    if table.networks.min() < 3 or not np.isfinite(spread):
        lines.append(f"Caveat: {table.networks.min()} network(s) per method; between seeds one network's sigma_mid "
                     f"moves by about 20%, so neighbouring places in these rankings are not decided at this budget.")
    return "\n".join(lines)
