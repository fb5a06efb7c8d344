"""Shared plotting of the paper layer: one theme, the accuracy-vs-sigma curves, and the files a figure is saved to.

Every figure of a notebook is drawn inside :func:`themed` (seaborn's ``ticks`` style at ``paper`` context, set here
and nowhere else) on a :func:`new_figure`. :func:`plot_curves` draws accuracy against sigma from a tidy sweep
table with seaborn: the mean over networks with a band of their spread (one network: of its noise draws).
Colours follow the paper's Fig. 2: fp32 black, dynamic scaling orange, constant scales along viridis by scale;
noisy training dashed (Fig. 3). Each ``plot_*`` function takes a matplotlib ``ax`` and returns it;
:func:`savefig` writes PNG, PDF and CSV with the provenance caption.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..atomic import write_atomic
from ..runs import summary as runs_summary

#: The one theme of every figure: seaborn's ``ticks`` style with a light grid, ``paper`` context.
THEME: dict = {**sns.axes_style("ticks"), **sns.plotting_context("paper", font_scale=1.15),
               "axes.grid": True, "grid.color": "0.92", "grid.linewidth": 0.6, "legend.frameon": False}


def themed(function):
    """Decorator: draw ``function``'s figure in :data:`THEME` (matplotlib reads most settings when an artist is
    made, so the whole figure is made inside)."""
    return plt.rc_context(THEME)(function)


def new_figure(figsize: tuple[float, float], **kwargs) -> Figure:
    """A figure that pyplot does not keep: made through pyplot (so that a notebook's inline backend shows it as an
    image), then let go, so that a notebook shows it once, as its cell's last expression."""
    fig = plt.figure(figsize=figsize, **kwargs)
    plt.close(fig)
    return fig


def legend(ax: plt.Axes, handles: list | None = None, **kwargs) -> None:
    """A legend, or a note that there is nothing to show (e.g. every fit failed in a smoke run)."""
    if handles is None:
        handles = ax.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, **kwargs)
    else:
        ax.text(0.5, 0.5, "no usable curve", transform=ax.transAxes, ha="center", color="0.5")


def log_ticks(axis) -> None:
    """Readable ticks on a log ``axis`` (``ax.xaxis``): plain numbers ("0.2", "1", "10"), at 1-2-5 steps over a
    short range (1-2-3-5 within two decades) and at decades over a long one, no labels on minor ticks (they overlap
    on narrow ranges)."""
    lo, hi = sorted(abs(v) for v in axis.get_view_interval())
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 3.0
    subs = ((1.0,) if decades > 2.5 else (1.0, 2.0, 5.0) if decades > 1.5 else (1.0, 2.0, 3.0, 5.0) if decades > 0.6
            else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def variant_color(bits: float | None, scale: float | None, scales: list[float] | None = None):
    """fp32 black, dynamic orange, constant scale ``s``: a viridis shade by the rank of ``s`` among ``scales``."""
    if bits is None or pd.isna(bits):
        return "black"
    if scale is None or pd.isna(scale):
        return "tab:orange"
    ranks = sorted(scales or [scale])
    pos = ranks.index(scale) / (len(ranks) - 1) if scale in ranks and len(ranks) > 1 else 0.5
    return mpl.colormaps["viridis"](0.1 + 0.8 * pos)


def _curve_order(item: tuple[tuple[str, str], pd.DataFrame]) -> tuple:
    """Legend order of a ``((variant, regime), rows)`` group: clean before noisy training, then fp32, dynamic
    scaling and the constant scales from small to large (not the variants' names in alphabetical order, which
    put s=16 before s=4), lower bit widths first."""
    (_, regime), g = item
    bits, scale = g.bits.iloc[0], g.scale.iloc[0]
    kind = 0 if pd.isna(bits) else 1 if pd.isna(scale) else 2
    return (regime == "noisy", 0 if pd.isna(bits) else bits, kind, 0 if pd.isna(scale) else scale)


def _diverged_note(g: pd.DataFrame, regime: str) -> str:
    """The legend note ' (diverged k/n)' for one curve's rows of :func:`paperlib.runs.summary.curves`, else "".

    Trained without noise, the same networks make every point (k, n: the most at any point); noisy-trained curves
    have other networks at each sigma (summed).
    """
    k, n = pd.to_numeric(g["diverged"], errors="coerce").fillna(0), g["seeds"].fillna(0)
    k, n = (int(k.sum()), int(n.sum())) if regime == "noisy" else (int(k.max()), int(n.max()))
    return f" (diverged {k}/{n})" if k else ""


def curve_points(df: pd.DataFrame) -> pd.DataFrame:
    """The points seaborn averages for each curve of the sweep table ``df`` (labelled or not): per curve and sigma,
    one accuracy per network (its mean over noise draws) where the point has several networks, else one per noise
    draw of its one network; the mean is :func:`paperlib.runs.summary.curves`'s ``acc_mean`` either way, the band
    its ``acc_std``. Failed runs (NaN accuracy) are left out. Columns: the curve keys, ``sigma``, ``accuracy (%)``.
    """
    rows = df if "variant" in df else runs_summary.label(df)
    rows = rows.dropna(subset=["accuracy"])
    keys = [*runs_summary.CURVE_KEYS, "sigma"]
    nets = rows.groupby(keys, sort=False)["seed"].transform("nunique")  # a curve's networks at one sigma: its seeds
    several = rows[nets > 1].groupby([*keys, "seed"], sort=False)["accuracy"].mean().reset_index()
    points = pd.concat([several, rows[nets <= 1][[*keys, "accuracy"]]], ignore_index=True)
    return points.assign(**{"accuracy (%)": 100 * points.accuracy}).drop(columns="accuracy")


def plot_curves(ax: plt.Axes, df: pd.DataFrame, *, fit: bool = False, title: str | None = None,
                scales: list[float] | None = None) -> plt.Axes:
    """Accuracy (%) vs sigma (log axis) from the sweep table ``df``: one curve per variant and regime, drawn by
    seaborn as the mean over networks with a band of their spread (:func:`curve_points`).

    ``fit`` overlays the fitted logistic (Eq. 1) of each curve whose fit succeeds, dotted (the fit of
    :func:`paperlib.runs.summary.summarize`: the drawn curve is the reported one). Noisy-trained curves are dashed.
    ``scales``: every constant scale of the study, so that a scale keeps its colour across panels (default: those
    in ``df``). Curves with diverged networks (scored at chance, docs/protocol.md §11) are flagged in the legend:
    "8-bit s=10 (diverged 1/2)".
    """
    scales = sorted(scales if scales is not None else df.scale.dropna().unique().tolist())
    curves = runs_summary.curves(df)
    points = curve_points(df)
    ax.set_xscale("log")
    handles = []
    for (variant, regime), g in sorted(curves.groupby(["variant", "regime"], sort=False), key=_curve_order):
        color = variant_color(g.bits.iloc[0], g.scale.iloc[0], scales)
        style, marker = ("--", "s") if regime == "noisy" else ("-", "o")
        mine = points[(points.variant == variant) & (points.regime == regime)]
        sns.lineplot(data=mine, x="sigma", y="accuracy (%)", errorbar="sd", color=color, linestyle=style,
                     marker=marker, markersize=4, markeredgewidth=0, linewidth=1.2, ax=ax, legend=False)
        name = f"{variant}, noisy training" if regime == "noisy" else variant
        note = _diverged_note(g, regime)
        handles.append(Line2D([], [], color=color, ls=style, marker=marker, ms=4, label=name + note))
        if fit:
            m = runs_summary.fit_curve(g)
            if m.ok:
                xs = np.logspace(math.log10(g.sigma.min()), math.log10(g.sigma.max()), 200)
                ax.plot(xs, 100 * m.curve(xs), color=color, ls=":", lw=0.8)
    log_ticks(ax.xaxis)
    ax.set_xlabel(r"noise level $\sigma$ (absolute)")
    ax.set_ylabel("test accuracy (%)")
    ax.axhline(10, color="0.6", lw=0.8, ls=":")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title)
    legend(ax, handles, fontsize="x-small", ncol=2)
    return ax


def savefig(
    fig: plt.Figure,
    name: str,
    caption: str,
    table: pd.DataFrame | None = None,
    figures_dir: str | Path = "figures",
    notes: tuple[str, ...] = (),
) -> list[Path]:
    """Write ``<figures_dir>/<name>.png`` and ``.pdf`` with ``caption`` under the plot, and ``table`` as ``.csv``.

    The CSV's first line is the caption as a ``#`` comment, then each of ``notes`` as one (read it with
    ``pd.read_csv(path, comment="#")``). Each file is written whole, then renamed.
    """
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(60, int(fig.get_figwidth() * 14))
    fig.text(0.01, -0.01, "\n".join(textwrap.wrap(caption, width)), fontsize=7, va="top", ha="left", color="0.3")
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        meta = {"CreationDate": None} if ext == "pdf" else {}  # no timestamp: a regenerated figure diffs if changed
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
