"""Noise kinds (notebook 07, beyond the paper; docs/protocol.md §2, §9): additive, multiplicative, combined, and
noise on the weights.

LeNet-5's networks of Fig. 2 (trained without noise, from the cache) evaluated under each noise kind:
:func:`specs`, :func:`label`, :func:`summary`, :func:`figure` and :func:`what_it_shows`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..models import ARCH_NAMES
from ..noise import NOISE_KINDS
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import Variant, summarize, variant_name
from .plots import new_figure, plot_curves, themed
from .prose import SMOKE_NOTE, caveat
from .specs import clean_specs
from .tables import Markdown, sig

#: The paper-layer modules this figure's numbers and drawing come from (recorded in its fingerprint).
MODULES: tuple[str, ...] = ("paper/noise_kinds", "paper/plots", "paper/prose", "paper/rules", "paper/specs",
                            "paper/tables")


def sigmas(profile: Profile) -> tuple[float, ...]:
    """Sigma grid of the noise-kind comparison: half-decade steps from ``sigma_min / 10`` to ``sigma_max``.

    A decade lower than the activation grid: weights are small (LeNet-5's are mostly below 0.1 in magnitude), so
    absolute weight noise bites earlier.
    """
    lo, hi = profile.sigma_min / 10, profile.sigma_max
    n = int(round(2 * (math.log10(hi) - math.log10(lo)))) + 1
    return tuple(float(v) for v in np.logspace(math.log10(lo), math.log10(hi), n))


def variants(profile: Profile) -> list[Variant]:
    """The networks of the noise-kind comparison: fp32, and the profile's widest bit width with dynamic scaling and
    with the constant scale of noisy training (``profile.noisy_scale``)."""
    return [(None, None), (profile.bits[-1], None), (profile.bits[-1], profile.noisy_scale)]


def specs(profile: Profile, seeds: int = 0, arch: str = "lenet5", kinds: tuple[str, ...] = NOISE_KINDS
          ) -> list[RunSpec]:
    """The clean-trained :func:`variants` evaluated under each of ``kinds`` on :func:`sigmas`; evaluation only: the
    trained networks are Fig. 2's (:func:`~paperlib.paper.specs.clean_specs`), from the cache. ``seeds``: 0 means
    the profile's number."""
    grid = sigmas(profile)
    return [RunSpec.from_dict({**s.to_dict(), "noise_kind": kind, "sigmas": grid})
            for s in clean_specs(profile, arch, variants(profile), seeds) for kind in kinds]


def label(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``variant`` set to "<variant>, <noise kind>", for :func:`~paperlib.runs.summary.summarize`
    per kind."""
    out = df.copy()
    out["variant"] = [f"{variant_name(b, s)}, {k}" for b, s, k in zip(out.bits, out.scale, out.noise_kind)]
    out["regime"] = "clean"
    return out


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant and noise kind of a :func:`kind_specs` sweep: networks, peak (noise-free) accuracy in %
    (``peak acc. (%)``, one decimal), ``sigma_mid``, ``fit`` (it with its relative standard error in %), failed runs."""
    s = summarize(label(df))
    s["noise kind"] = s.variant.str.rsplit(", ", n=1).str[1]
    s["variant"] = s.variant.str.rsplit(", ", n=1).str[0]
    s["peak acc. (%)"] = (100 * s.peak_acc).round(1)
    return s[["arch", "variant", "noise kind", "seeds", "peak acc. (%)", "sigma_mid", "fit", "failed"]]


@themed
def figure(df: pd.DataFrame, arch: str = "lenet5") -> Figure:
    """Accuracy vs sigma of a :func:`specs` sweep, one panel per noise kind, one curve per variant."""
    kinds = list(dict.fromkeys(df.noise_kind))
    labelled = label(df)
    fig = new_figure((5 * len(kinds), 4.4), layout="constrained")
    axes = fig.subplots(1, len(kinds), sharey=True, squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        plot_curves(ax, labelled[labelled.noise_kind == kind], title=f"{ARCH_NAMES.get(arch, arch)}, {kind} noise")
    return fig


def what_it_shows(summary: pd.DataFrame, profile: Profile) -> Markdown:
    """What this run shows about the noise kinds, as Markdown computed from :func:`summary`: per variant the
    kinds from the most to the least tolerated (``sigma_mid``), whether each QAT variant tolerates more of each kind
    than fp32, and the caveats (unfitted curves, the profile's budget)."""
    if summary.empty:
        return Markdown("No run finished: nothing to compare.")
    lines = []
    ok = summary[summary.sigma_mid.notna()]
    for variant, g in ok.groupby("variant", sort=False):
        order = g.sort_values("sigma_mid", ascending=False)
        lines.append(f"- {variant}: tolerated most to least: "
                     + ", ".join(f"{k} ({sig(m)})" for k, m in zip(order["noise kind"], order.sigma_mid)) + ".")
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
                 f"{caveat(profile, arch, int(summary.seeds.max()))}.")
    if profile.name == "smoke":
        lines.append(SMOKE_NOTE)
    return Markdown("\n".join(lines))
