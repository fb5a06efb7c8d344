"""Plots of the paper's figures. Each ``plot_*`` function takes a matplotlib ``ax`` and returns it; :func:`fig2`,
:func:`table1_figure`, :func:`fig3` and :func:`table2_figure` compose them into a notebook's figure (a
:class:`matplotlib.figure.Figure` outside pyplot: a notebook shows it once, as its cell's last expression);
:func:`savefig` writes files.

Colours follow the paper's Fig. 2: fp32 black, dynamic scaling orange,
constant scales along a colour map by scale; noisy training dashed (Fig. 3).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..atomic import write_atomic
from ..midpoint import fit_midpoint
from ..models import ARCH_NAMES
from ..runs import summary as runs_summary
from ..runs.profile import Profile


def _legend(ax: plt.Axes, **kwargs) -> None:
    """A legend, or a note that there is nothing to show (e.g. every fit failed in a smoke run)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
    else:
        ax.text(0.5, 0.5, "no usable curve", transform=ax.transAxes, ha="center", color="0.5")


def _diverged_note(g: pd.DataFrame, regime: str) -> str:
    """The legend note ' (diverged k/n)' for one curve's rows of :func:`paperlib.runs.summary.curves`, else "".

    Trained without noise, the same networks make every point (k, n: the most
    at any point); noisy-trained curves have other networks at each sigma (summed).
    """
    if "diverged" not in g or "seeds" not in g:
        return ""
    k, n = pd.to_numeric(g["diverged"], errors="coerce").fillna(0), g["seeds"].fillna(0)
    k, n = (int(k.sum()), int(n.sum())) if regime == "noisy" else (int(k.max()), int(n.max()))
    return f" (diverged {k}/{n})" if k else ""


def _fit(g: pd.DataFrame):
    """The fit :func:`paperlib.runs.summary.summarize` makes of one curve's rows: the drawn curve is the reported
    one."""
    if "acc_seeds" in g:
        return runs_summary.fit_curve(g)
    return fit_midpoint(g.sigma.to_numpy(), g.acc_mean.to_numpy(), g.acc_std.to_numpy())  # rows of older tables


def variant_color(bits: float | None, scale: float | None, scales: list[float] | None = None):
    """fp32 black, dynamic orange, constant scale ``s``: a viridis shade by the rank of ``s`` among ``scales``."""
    if bits is None or pd.isna(bits):
        return "black"
    if scale is None or pd.isna(scale):
        return "tab:orange"
    ranks = sorted(scales or [scale])
    pos = ranks.index(scale) / (len(ranks) - 1) if scale in ranks and len(ranks) > 1 else 0.5
    return mpl.colormaps["viridis"](0.1 + 0.8 * pos)


def plot_curves(ax: plt.Axes, curves: pd.DataFrame, *, fit: bool = False, title: str | None = None,
                scales: list[float] | None = None) -> plt.Axes:
    """Accuracy vs sigma, one curve per variant and regime (rows of :func:`paperlib.runs.summary.curves`).

    Points are the mean over seeds with their spread as error bars (log sigma
    axis, accuracy in %), joined by lines; ``fit`` overlays the fitted logistic
    (Eq. 1) of each curve whose fit succeeds, thin. Noisy-trained curves are dashed.
    ``scales``: every constant scale of the study, so that a scale keeps its
    colour across panels (default: the scales in ``curves``). Where the rows
    carry ``diverged`` (networks of the point whose training diverged, scored at
    chance, docs/protocol.md §11) the legend flags them: "8-bit s=10 (diverged 1/2)".
    """
    scales = sorted(scales if scales is not None else curves.scale.dropna().unique().tolist())
    for (variant, regime), g in curves.groupby(["variant", "regime"], sort=False):
        color = variant_color(g.bits.iloc[0], g.scale.iloc[0], scales)
        style = "--" if regime == "noisy" else "-"
        name = f"{variant}, noisy training" if regime == "noisy" else variant
        ax.errorbar(g.sigma, 100 * g.acc_mean, yerr=100 * g.acc_std.fillna(0), color=color, ls=style, lw=1.2,
                    marker="o" if regime == "clean" else "s", ms=3, capsize=2, label=name + _diverged_note(g, regime))
        if fit:
            m = _fit(g)
            if m.ok:
                xs = np.logspace(math.log10(g.sigma.min()), math.log10(g.sigma.max()), 200)
                ax.plot(xs, 100 * m.curve(xs), color=color, ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(r"noise level $\sigma$ (absolute)")
    ax.set_ylabel("test accuracy (%)")
    ax.axhline(10, color="0.6", lw=0.8, ls=":")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title)
    _legend(ax, fontsize="x-small", ncol=2)
    return ax


def plot_peak_vs_midpoint(ax: plt.Axes, summary: pd.DataFrame, *, title: str | None = None) -> plt.Axes:
    """Fig. 2 (c): peak accuracy (%) vs sigma_mid, one point per scaling choice, one series per bit width.

    Peak accuracy is the noise-free test accuracy (docs/protocol.md §11).
    Error bars: spread of the peak accuracy over seeds and the fit's standard
    error of sigma_mid. The fp32 baseline is a black star; points are labelled
    with their constant scale (``dyn`` for dynamic scaling). Variants with
    diverged networks get "(diverged k/n)" on their point, and a legend line
    each; variants without a midpoint (e.g. collapsed) are listed in the legend.
    """
    clean = summary[summary.regime == "clean"]
    ok = clean[clean.fit_ok]
    div = lambda r: f" (diverged {r.n_diverged}/{r.networks})" if r.get("n_diverged", 0) else ""  # noqa: E731
    for bits, g in ok[ok.bits.notna()].groupby("bits"):
        g = g.assign(order=g.scale.fillna(0)).sort_values("order")
        line = ax.errorbar(g.sigma_mid, 100 * g.peak_acc, xerr=g.sigma_mid_err, yerr=100 * g.peak_acc_std.fillna(0),
                           marker="o", capsize=2, label=f"{int(bits)}-bit")
        for _, r in g.iterrows():
            ax.annotate(("dyn" if pd.isna(r.scale) else f"{r.scale:g}") + div(r), (r.sigma_mid, 100 * r.peak_acc),
                        fontsize="x-small", xytext=(3, 3), textcoords="offset points", color=line[0].get_color())
    fp32 = ok[ok.bits.isna()]
    if len(fp32):
        ax.errorbar(
            fp32.sigma_mid,
            100 * fp32.peak_acc,
            xerr=fp32.sigma_mid_err,
            yerr=100 * fp32.peak_acc_std.fillna(0),
            marker="*",
            ms=10,
            color="black",
            ls="none",
            label="fp32" + div(fp32.iloc[0]),
        )
    for _, r in clean.iterrows():
        if not r.fit_ok:
            why = (
                r.fit
                if r.fit == runs_summary.COLLAPSED_DIVERGED
                else "collapsed (at chance)"
                if r.collapsed
                else "no midpoint"
            )
            ax.plot([], [], ls="none", label=f"{r.variant}{div(r)}: {why}")
        elif div(r) and pd.notna(r.bits):
            ax.plot([], [], ls="none", label=f"{r.variant}{div(r)}")
    ax.set_xscale("log")
    ax.set_xlabel(r"midpoint noise level $\sigma_{mid}$")
    ax.set_ylabel("peak (noise-free) accuracy (%)")
    if title:
        ax.set_title(title)
    _legend(ax, fontsize="x-small")
    return ax


def plot_midpoints(ax: plt.Axes, table: pd.DataFrame, *, title: str | None = None) -> plt.Axes:
    """Table II as bars: sigma_mid per architecture without and with noisy training, ours and the paper's (log axis).

    ``table`` is :func:`paperlib.paper.experiments.compare_table_ii`'s output; our bars
    carry the fits' standard errors, and an architecture with diverged networks
    is flagged under its name ("diverged 1 of 2", docs/protocol.md §11).
    """
    x = np.arange(len(table))
    bars = [
        ("sigma_mid", "ours, trained without noise", "tab:blue", None),
        ("sigma_mid_noisy", "ours, noisy training", "tab:red", None),
        ("paper_sigma_mid", "paper, without", "tab:blue", "//"),
        ("paper_sigma_mid_noisy", "paper, noisy training", "tab:red", "//"),
    ]
    for i, (col, name, color, hatch) in enumerate(bars):
        err = table.get(f"{col}_err")
        ax.bar(
            x + (i - 1.5) * 0.2,
            table[col],
            0.2,
            yerr=None if err is None else err.fillna(0),
            capsize=2,
            label=name,
            color=color if hatch is None else "white",
            edgecolor=color,
            hatch=hatch,
        )
    names = list(table["model"])
    for col, what in (("diverged", "diverged"), ("diverged, noisy training", "diverged, noisy training")):
        if col in table:
            names = [n if str(d).startswith(("0 of", "–")) else f"{n}\n({what} {d})" for n, d in zip(names, table[col])]
    ax.set_xticks(x, names)
    ax.set_yscale("log")
    ax.set_ylabel(r"midpoint noise level $\sigma_{mid}$")
    if title:
        ax.set_title(title)
    _legend(ax, fontsize="x-small")
    return ax


def plot_layer_sensitivity(ax: plt.Axes, table: pd.DataFrame, *, title: str | None = None) -> plt.Axes:
    """Walking noise: ``sigma_mid`` per noise module along the depth of a network, one line per model.

    ``table``: rows of :func:`paperlib.layer_sensitivity` with a ``model``
    column. Modules whose accuracy never falls inside the grid are drawn as
    triangles at the top; ticks name what each module follows; modules on a
    ResNet downsampling shortcut are shaded, residual blocks separated by dotted lines.
    """
    first = table[table.model == table.model.iloc[0]].sort_values("index")
    for i, name in zip(first["index"], first["name"]):
        if "downsample" in name:
            ax.axvspan(i - 0.5, i + 0.5, color="0.9", zorder=0)
    blocks = first["name"].str.extract(r"^(layer\d+\.\d+)\.")[0]
    for i, (prev, cur) in enumerate(zip(blocks.shift(), blocks)):
        if isinstance(cur, str) and cur != prev:
            ax.axvline(first["index"].iloc[i] - 0.5, color="0.7", ls=":", lw=0.8)
    top = np.nanmax(table.sigma_mid) * 3 if table.sigma_mid.notna().any() else 1.0
    for model, g in table.groupby("model", sort=False):
        g = g.sort_values("index")
        line = ax.errorbar(g["index"], g.sigma_mid, yerr=g.sigma_mid_err, marker="o", ms=3, capsize=2, label=model)
        beyond = g[~g.fit_ok & g.reason.str.contains("never falls", na=False)]
        ax.scatter(beyond["index"], np.full(len(beyond), top), marker="^", color=line[0].get_color())
    if (table.sigma_mid > 0).any():
        ax.set_yscale("log")
    ax.set_xticks(first["index"], first["follows"], rotation=90, fontsize="x-small")
    ax.set_xlabel("noise module (what it follows), input to output; shaded: downsampling shortcut; ^: beyond the grid")
    ax.set_ylabel(r"$\sigma_{mid}$ of this module alone")
    if title:
        ax.set_title(title)
    _legend(ax, fontsize="x-small")
    return ax


def plot_train_infer_map(
    ax: plt.Axes, grid: pd.DataFrame, *, diverging: bool = False, title: str | None = None
) -> plt.Axes:
    """Accuracy (%) per training sigma (rows) and inference sigma (columns), annotated.

    ``grid``: columns ``sigma_train``, ``sigma``, ``acc_mean`` (e.g. one method of
    :func:`paperlib.paper.beyond.train_infer_map`, or :func:`paperlib.paper.beyond.method_gain`);
    ``diverging`` centres a red-blue map on 0 (differences).
    """
    wide = grid.pivot_table(index="sigma_train", columns="sigma", values="acc_mean") * 100
    if diverging:
        lim = max(1.0, float(np.nanmax(np.abs(wide.to_numpy()))) if wide.size else 1.0)
        im = ax.imshow(wide.to_numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto", origin="lower")
    else:
        im = ax.imshow(wide.to_numpy(), cmap="viridis", vmin=0, vmax=100, aspect="auto", origin="lower")
    for (r, c), v in np.ndenumerate(wide.to_numpy()):
        if np.isfinite(v):
            ax.text(
                c,
                r,
                f"{v:.0f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if not diverging and v < 50 else "black",
            )
    ax.set_xticks(range(wide.shape[1]), [f"{v:.2g}" for v in wide.columns], rotation=90, fontsize="x-small")
    ax.set_yticks(range(wide.shape[0]), [f"{v:.2g}" for v in wide.index], fontsize="x-small")
    ax.set_xlabel(r"inference $\sigma$")
    ax.set_ylabel(r"training $\sigma$")
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title)
    return ax


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure that pyplot does not keep: made through pyplot (so that a notebook's inline backend is set up and
    shows figures as images), then let go, so that a notebook shows it once, as its cell's last expression, and
    never again at the end of the cell."""
    fig = plt.figure(figsize=figsize)
    plt.close(fig)
    return fig


def fig2(df: pd.DataFrame, profile: Profile, arch: str = "lenet5") -> Figure:
    """Fig. 2 from the sweep table ``df``: one panel of accuracy vs sigma per bit width of ``profile`` (fp32 in
    each), then peak accuracy vs sigma_mid; constant scales keep their colour across
    panels (``profile.scales(arch)``)."""
    curves, summary = runs_summary.curves(df), runs_summary.summarize(df)
    bits = list(profile.bits)
    fig = _new_figure((5.2 * (len(bits) + 1), 4.2))
    axes = fig.subplots(1, len(bits) + 1, squeeze=False)[0]
    for ax, b, letter in zip(axes, bits, "abcdefgh"):
        plot_curves(ax, curves[curves.bits.isna() | (curves.bits == b)],
                    title=f"({letter}) {ARCH_NAMES.get(arch, arch)}, {b}-bit", scales=list(profile.scales(arch)))
    plot_peak_vs_midpoint(axes[-1], summary, title=f"({'abcdefgh'[len(bits)]}) peak accuracy vs midpoint noise level")
    return fig


def table1_figure(df: pd.DataFrame, profile: Profile, arch: str) -> Figure:
    """The accuracy-vs-sigma curves behind Table I for ``arch``: one panel per bit width of ``profile``, fp32 in
    each."""
    curves = runs_summary.curves(df)
    bits = list(profile.bits)
    fig = _new_figure((5.5 * len(bits), 4.2))
    for ax, b in zip(fig.subplots(1, len(bits), squeeze=False)[0], bits):
        plot_curves(ax, curves[curves.bits.isna() | (curves.bits == b)], title=f"{ARCH_NAMES.get(arch, arch)}, {b}-bit",
                    scales=list(profile.scales(arch)))
    return fig


def fig3(df: pd.DataFrame, archs: tuple[str, ...]) -> Figure:
    """Fig. 3 from the sweep table ``df``: one panel per architecture of ``archs``, trained without noise (solid)
    and with noisy training (dashed)."""
    curves = runs_summary.curves(df)
    fig = _new_figure((6 * len(archs), 4.5))
    for ax, a, letter in zip(fig.subplots(1, len(archs), squeeze=False)[0], archs, "abcdefgh"):
        plot_curves(ax, curves[curves.arch == a], title=f"({letter}) {ARCH_NAMES.get(a, a)}")
    return fig


def table2_figure(table: pd.DataFrame) -> Figure:
    """Table II as bars (:func:`plot_midpoints`); ``table``: :func:`paperlib.paper.experiments.compare_table_ii`."""
    fig = _new_figure((7, 4.2))
    plot_midpoints(fig.subplots(), table, title="midpoint noise level, fp32: without and with noisy training")
    return fig


def savefig(
    fig: plt.Figure,
    name: str,
    caption: str,
    table: pd.DataFrame | None = None,
    figures_dir: str | Path = "figures",
    notes: tuple[str, ...] = (),
) -> list[Path]:
    """Write ``<figures_dir>/<name>.png`` and ``.pdf`` with ``caption`` under the plot, and ``table`` as ``.csv``.

    The CSV's first line is the caption as a ``#`` comment, then each of
    ``notes`` as one (read it with ``pd.read_csv(path, comment="#")``). Each
    file is written whole, then renamed.
    """
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(60, int(fig.get_figwidth() * 14))
    fig.text(0.01, -0.01, "\n".join(textwrap.wrap(caption, width)), fontsize=7, va="top", ha="left", color="0.3")
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        meta = (
            {"CreationDate": None} if ext == "pdf" else {}
        )  # no timestamp: a regenerated figure diffs only if it changed
        write_atomic(
            path, lambda f, ext=ext, meta=meta: fig.savefig(f, format=ext, dpi=150, bbox_inches="tight", metadata=meta)
        )
        paths.append(path)
    if table is not None:
        paths.append(save_table(table, out / f"{name}.csv", caption, notes))
    return paths


def save_table(table: pd.DataFrame, path: str | Path, caption: str, notes: tuple[str, ...] = ()) -> Path:
    """Write ``table`` as CSV with ``caption`` as a first ``#`` comment line and each of ``notes`` as one more
    (``pd.read_csv(path, comment="#")`` reads the table)."""
    path = Path(path)
    head = "".join(f"# {line.removeprefix('# ')}\n" for line in (caption, *notes))
    write_atomic(path, lambda f: f.write(f"{head}{table.to_csv(index=False)}".encode()))
    return path
