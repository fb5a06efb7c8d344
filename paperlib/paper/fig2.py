"""Fig. 2 (notebook 01): LeNet-5 trained without noise, fp32 and 4/8-bit QAT with dynamic or constant activation
scaling, evaluated with Gaussian noise after every layer (paper §IV-A; docs/protocol.md §4, §8 findings 1-3).

:func:`specs` are its networks, :func:`figure` the figure ((a), (b) accuracy vs sigma per bit width, (c) peak
accuracy vs ``sigma_mid``), :func:`compare` our rows beside the numbers the paper gives, :func:`what_it_shows`
the run's own reading.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ..models import ARCH_NAMES
from ..runs import summary as runs_summary
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import summary_row, variant_name
from . import published as paper
from .plots import legend, log_ticks, new_figure, plot_curves, themed
from .prose import fp32_sentence, pct, report
from .rules import mid, usable, working_constants
from .specs import clean_specs, qat_variants
from .tables import Markdown, percent_table

#: The paper-layer modules this figure's numbers and drawing come from (recorded in its fingerprint).
MODULES: tuple[str, ...] = ("paper/fig2", "paper/plots", "paper/prose", "paper/rules", "paper/specs", "paper/tables")


def specs(profile: Profile, seeds: int = 0, arch: str = "lenet5") -> list[RunSpec]:
    """Every QAT variant of ``arch`` (:func:`~paperlib.paper.specs.qat_variants`) trained without noise, swept over
    the profile's sigma grid; ``seeds`` 0 = the profile's number of networks per variant."""
    return clean_specs(profile, arch, qat_variants(profile, arch), seeds)


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
    for i, (bits, g) in enumerate(ok[ok.bits.notna()].groupby("bits")):
        g = g.assign(order=g.scale.fillna(0)).sort_values("order")
        line = ax.errorbar(g.sigma_mid, 100 * g.peak_acc, xerr=g.sigma_mid_err, yerr=100 * g.peak_acc_std.fillna(0),
                           marker="o", capsize=2, label=f"{int(bits)}-bit")
        above = i % 2 == 0  # one bit width's labels above its points, the next one's below: close points stay legible
        for _, r in g.iterrows():
            ax.annotate(("dyn" if pd.isna(r.scale) else f"{r.scale:g}") + div(r), (r.sigma_mid, 100 * r.peak_acc),
                        fontsize="x-small", xytext=(3, 3 if above else -3), textcoords="offset points",
                        va="bottom" if above else "top", color=line[0].get_color())
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
    log_ticks(ax.xaxis)
    legend(ax, fontsize="x-small")
    return ax




@themed
def figure(df: pd.DataFrame, profile: Profile, arch: str = "lenet5") -> Figure:
    """Fig. 2 from the sweep table ``df``: one panel of accuracy vs sigma per bit width of ``profile`` (fp32 in
    each), then peak accuracy vs sigma_mid; constant scales keep their colour across panels
    (``profile.scales(arch)``)."""
    labelled, summary = runs_summary.label(df), runs_summary.summarize(df)
    bits = list(profile.bits)
    fig = new_figure((5.2 * (len(bits) + 1), 4.4), layout="constrained")
    axes = fig.subplots(1, len(bits) + 1, squeeze=False)[0]
    for ax, b, letter in zip(axes, bits, "abcdefgh"):
        plot_curves(ax, labelled[labelled.bits.isna() | (labelled.bits == b)],
                    title=f"({letter}) {ARCH_NAMES.get(arch, arch)}, {b}-bit", scales=list(profile.scales(arch)))
    plot_peak_vs_midpoint(axes[-1], summary, title=f"({'abcdefgh'[len(bits)]}) peak accuracy vs midpoint noise level")
    return fig


def compare(summary: pd.DataFrame, arch: str = "lenet5") -> pd.DataFrame | Markdown:
    """:func:`~paperlib.paper.tables.percent_table` of ``arch``'s curves trained without noise, beside the numbers
    the paper gives for Fig. 2 (:func:`paperlib.paper.published.fig2c_points`: fp32 75% and 0.286; 8-bit s=8 70% and
    sigma_mid up by over 200%, i.e. above 3 x 0.286); "–" where the paper gives no number."""
    ours = summary[(summary.arch == arch) & (summary.regime == "clean")]
    table = percent_table(ours)
    if isinstance(table, Markdown):
        return Markdown(f"This run has no {ARCH_NAMES.get(arch, arch)} curve trained without noise to show.")
    ref = paper.fig2c_points()
    printed = {
        variant_name(r.bits, r.scale): (
            f"{r.peak_acc_pct:.1f}",
            f"{r.sigma_mid:g}" if pd.notna(r.sigma_mid) else f"> {3 * paper.table_ii().sigma_mid.iloc[0]:.3g} (+200%)",
        )
        for r in ref.itertuples()
    }
    table = table.drop(columns=["arch", "regime"])
    table["paper peak acc. (%)"] = [printed.get(v, ("–", "–"))[0] for v in table.variant]
    table["paper sigma_mid"] = [printed.get(v, ("–", "–"))[1] for v in table.variant]
    return table


def what_it_shows(summary: pd.DataFrame, profile: Profile, arch: str = "lenet5") -> Markdown:
    """What a Fig. 2 run shows, from its own ``summary``: fp32's peak accuracy and sigma_mid beside the paper's
    (75%, 0.286), the most robust working constant scale beside the paper's 8-bit s = 8 (75% -> 70%, sigma_mid up
    by over 200%), which findings hold and what the profile's budget means."""
    lines = [fp32_sentence(summary, arch)]
    fp32, working = summary_row(summary, arch, "fp32"), working_constants(summary, arch)
    best = None if working.empty else next(working.sort_values("sigma_mid", ascending=False).itertuples())
    if best is None:
        lines.append("No constant scale gives a working curve with a midpoint in this run (working: as in the "
                     "findings below).")
    else:
        text = f"The most robust constant scale, {best.variant}, keeps a peak accuracy of {pct(best)}"
        if fp32 is not None and usable(fp32):
            rise = best.sigma_mid / fp32.sigma_mid - 1
            text += f" and raises sigma_mid to {mid(best)}, {rise:+.0%} over fp32"
        else:
            text += f" with sigma_mid {mid(best)}"
        lines.append(text + " (paper, 8-bit s=8: accuracy 75% -> 70%, sigma_mid up by over 200%).")
    headline = summary_row(summary, arch, variant_name(8, 8.0))
    if arch == "lenet5" and headline is not None and fp32 is not None and usable(fp32) and usable(headline):
        gap, gap_err = 100 * (fp32.peak_acc - headline.peak_acc), 100 * math.hypot(fp32.peak_acc_err,
                                                                                   headline.peak_acc_err)
        ratio, ratio_err = headline.sigma_mid / fp32.sigma_mid, 100 * math.hypot(fp32.rel_err, headline.rel_err)
        lines.append(f"The paper's headline network, 8-bit s=8: {gap:.1f} ± {gap_err:.1f} points of accuracy below "
                     f"fp32 (paper: 5) for a sigma_mid {ratio:.2g}x fp32's ± {ratio_err:.0f}% (paper: over 3x).")
    return report(lines, summary, profile, (arch,))
