"""Fig. 3 (notebook 03): noisy training, with and without quantization (paper §IV-B; docs/protocol.md §6, §8
finding 4).

Per architecture of the profile, the variants of :func:`~paperlib.paper.specs.noisy_variants` trained without
noise (swept over the sigma grid) and with noisy training (one network per training sigma, evaluated at it).
:func:`specs` are its networks, :func:`figure` the figure, :func:`compare` the gains beside the paper's,
:func:`what_it_shows` the run's own reading.
"""
from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from ..models import ARCH_NAMES
from ..runs import summary as runs_summary
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import summary_row
from . import published as paper
from .plots import new_figure, plot_curves, themed
from .prose import report
from .rules import mid, usable
from .specs import clean_specs, noisy_specs, noisy_variants
from .tables import Markdown, fmt_mid

#: The paper-layer modules this figure's numbers and drawing come from (recorded in its fingerprint).
MODULES: tuple[str, ...] = ("paper/fig3", "paper/plots", "paper/prose", "paper/rules", "paper/specs", "paper/tables")


def specs(profile: Profile, seeds: int = 0) -> list[RunSpec]:
    """Per architecture of the profile, the :func:`~paperlib.paper.specs.noisy_variants` trained without noise
    (swept over the sigma grid) and with noisy training; ``seeds`` 0 = the profile's number."""
    variants = noisy_variants(profile)
    return [s for a in profile.archs
            for s in clean_specs(profile, a, variants, seeds) + noisy_specs(profile, a, variants, seeds)]


@themed
def figure(df: pd.DataFrame, profile: Profile) -> Figure:
    """Fig. 3 from the sweep table ``df``: one panel per architecture of ``profile``, trained without noise (solid)
    and with noisy training (dashed)."""
    labelled, archs = runs_summary.label(df), profile.archs
    fig = new_figure((6 * len(archs), 4.6), layout="constrained")
    for ax, a, letter in zip(fig.subplots(1, len(archs), squeeze=False)[0], archs, "abcdefgh"):
        plot_curves(ax, labelled[labelled.arch == a], title=f"({letter}) {ARCH_NAMES.get(a, a)}")
    return fig


def compare(summary: pd.DataFrame) -> pd.DataFrame | Markdown:
    """Per architecture and variant: ``sigma_mid`` trained without and with noise and their ratio (the gain of noisy
    training, ± its relative standard error), beside the paper's fp32 numbers (Table II: LeNet-5 0.286 -> 2.59,
    VGG-11 0.154 -> 2.957, ResNet-18 0.494 -> 3.023; gains 9.1x, 19x, 6.1x). "–" where a side has no midpoint."""
    if summary.empty:
        return Markdown("This run has no curve to show: the sweep returned no result.")
    ref = paper.table_ii().set_index("arch")
    rows = []
    for (arch, variant), _ in summary.groupby(["arch", "variant"], sort=False):
        clean, noisy = summary_row(summary, arch, variant), summary_row(summary, arch, variant, "noisy")
        mid = lambda r: fmt_mid(r["sigma_mid"], r["rel_err"]) if r is not None else "–"  # noqa: E731
        gain = "–"
        if clean is not None and noisy is not None and clean["fit_ok"] and noisy["fit_ok"]:
            ratio = noisy["sigma_mid"] / clean["sigma_mid"]
            gain = f"{ratio:.2g}x ± {100 * math.hypot(clean['rel_err'], noisy['rel_err']):.0f}%"
        fp32 = variant == "fp32" and arch in ref.index
        rows.append(
            {
                "arch": arch,
                "variant": variant,
                "sigma_mid, no noisy training": mid(clean),
                "sigma_mid, noisy training": mid(noisy),
                "gain": gain,
                "paper sigma_mid": f"{ref.loc[arch, 'sigma_mid']:g}" if fp32 else "–",
                "paper, noisy training": f"{ref.loc[arch, 'sigma_mid_noisy']:g}" if fp32 else "–",
                "paper gain": f"{ref.loc[arch, 'sigma_mid_noisy'] / ref.loc[arch, 'sigma_mid']:.2g}x" if fp32 else "–",
            }
        )
    return pd.DataFrame(rows)



def what_it_shows(summary: pd.DataFrame, profile: Profile) -> Markdown:
    """What a Fig. 3 run shows, from its own ``summary``: per architecture, fp32's sigma_mid without and with noisy
    training and its gain beside the paper's (LeNet-5 9.1x, VGG-11 19x, ResNet-18 6.1x), the spread of the
    quantized variants' sigma_mid with noisy training around fp32's, the findings and the budget."""
    ref = paper.table_ii().set_index("arch")
    archs = tuple(a for a in summary.arch.unique() if a in ref.index)
    lines = []
    for arch in archs:
        clean, noisy = summary_row(summary, arch, "fp32"), summary_row(summary, arch, "fp32", "noisy")
        printed = ref.loc[arch, "sigma_mid_noisy"] / ref.loc[arch, "sigma_mid"]
        if usable(clean) and usable(noisy):
            gain = noisy.sigma_mid / clean.sigma_mid
            lines.append(f"{ARCH_NAMES[arch]} fp32: noisy training moves sigma_mid from {mid(clean)} to "
                         f"{mid(noisy)}, a gain of {gain:.2g}x ± {100 * math.hypot(clean.rel_err, noisy.rel_err):.0f}%"
                         f" (paper: {ref.loc[arch, 'sigma_mid']:g} -> {ref.loc[arch, 'sigma_mid_noisy']:g}, "
                         f"{printed:.2g}x).")
        else:
            say = lambda r: "not run" if r is None else mid(r)  # noqa: E731
            lines.append(f"{ARCH_NAMES[arch]} fp32: no gain to compute (without noisy training {say(clean)}; "
                         f"with {say(noisy)}; paper {printed:.2g}x).")
        quant = summary[(summary.arch == arch) & (summary.regime == "noisy") & summary.bits.notna()]
        if usable(noisy) and not quant.empty:
            each = [f"{r.variant} {r.sigma_mid / noisy.sigma_mid:.2f}x fp32's" if r.fit_ok
                    else f"{r.variant} has no midpoint" for r in quant.itertuples()]
            lines.append(f"{ARCH_NAMES[arch]}, noisy training: " + "; ".join(each)
                         + " (the paper: the curves overlap).")
    return report(lines, summary, profile, archs)

