"""Table II (notebook 04): the three architectures side by side, fp32 without and with noisy training (paper §IV,
Table II; docs/protocol.md §4, §8 findings 4-5).

:func:`specs` are its networks (those of Fig. 3's fp32, from the cache), :func:`architecture_stats` the size
columns measured on our models beside the printed ones, :func:`compare` our numbers beside the paper's,
:func:`figure` the midpoints as points with error bars (ours beside the paper's), :func:`what_it_shows` the run's
own reading.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..model_size import model_stats
from ..models import ARCH_NAMES, ARCHS, build_model
from ..noise import noise_modules
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import Variant, summary_row
from . import published as paper
from .plots import legend, log_ticks, new_figure, themed
from .prose import fp32_sentence, report, versus
from .rules import mid
from .specs import clean_specs, noisy_specs
from .tables import Markdown, fit_note, fmt_acc, fmt_mid, fmt_paper_mid

#: The paper-layer modules this table's numbers and drawing come from (recorded in its fingerprint).
MODULES: tuple[str, ...] = ("model_size", "paper/plots", "paper/prose", "paper/rules", "paper/specs", "paper/table2",
                            "paper/tables")


def specs(profile: Profile, seeds: int = 0) -> list[RunSpec]:
    """fp32 of every architecture of the profile, trained without and with noise (the same networks as Fig. 3's
    fp32 ones, read from the cache); ``seeds`` 0 = the profile's number."""
    fp32: list[Variant] = [(None, None)]
    return [s for a in profile.archs
            for s in clean_specs(profile, a, fp32, seeds) + noisy_specs(profile, a, fp32, seeds)]


def architecture_stats(archs: tuple[str, ...] = ARCHS) -> pd.DataFrame:
    """Table II's first columns, measured on our fp32 models beside the printed ones (docs/protocol.md §4).

    Our counts come from :func:`paperlib.model_stats` (multiply-accumulates
    at 32x32, 10-class heads) and :func:`paperlib.noise_modules`; the paper's
    FLOPs/parameters are those of torchvision's 1000-class ImageNet models.
    """
    ref = paper.table_ii().set_index("arch")
    rows = []
    for arch in archs:
        st = model_stats(build_model(arch))
        rows.append(
            {
                "arch": arch,
                "MACs (M)": round(st.macs / 1e6, 2),
                "paper FLOPs (M)": ref.loc[arch, "flops_m"],
                "params (M)": round(st.params / 1e6, 3),
                "paper params (M)": ref.loc[arch, "params_m"],
                "noisy layers": len(noise_modules(build_model(arch))),
                "paper noisy layers": ref.loc[arch, "noisy_layers"],
            }
        )
    return pd.DataFrame(rows)


def compare(summary: pd.DataFrame, archs: tuple[str, ...] = ARCHS, numbers: bool = True) -> pd.DataFrame:
    """Table II: our fp32 peak accuracy and sigma_mid without/with noisy training beside the paper's, per architecture.

    Display columns as in :func:`paperlib.paper.table1.compare` (peak accuracy noise-free, in %
    with one decimal; sigma_mid with three significant digits and its relative
    error; ``diverged`` networks, docs/protocol.md §11), then the numbers for
    :func:`plot_midpoints`: ``sigma_mid``, ``sigma_mid_err``,
    ``rel_err``, ``sigma_mid_noisy``, ``sigma_mid_noisy_err``, ``rel_err_noisy``,
    ``paper_sigma_mid``, ``paper_sigma_mid_noisy`` (absolute sigma); ``numbers=False`` leaves those out
    (the table as a notebook shows it).
    """
    ref = paper.table_ii().set_index("arch")
    rows = []
    for arch in archs:
        clean, noisy = summary_row(summary, arch, "fp32"), summary_row(summary, arch, "fp32", "noisy")
        get = lambda r, c: math.nan if r is None else r[c]  # noqa: E731
        rows.append(
            {
                "arch": arch,
                "model": ARCH_NAMES[arch],
                "peak acc. (%)": fmt_acc(get(clean, "peak_acc"), get(clean, "peak_acc_err")),
                "paper peak acc. (%)": f"{ref.loc[arch, 'peak_acc_pct']:.1f}",
                "sigma_mid (rel. err.)": fmt_mid(get(clean, "sigma_mid"), get(clean, "rel_err")),
                "paper sigma_mid": fmt_paper_mid(ref.loc[arch, "sigma_mid"]),
                "sigma_mid, noisy training (rel. err.)": fmt_mid(get(noisy, "sigma_mid"), get(noisy, "rel_err")),
                "paper sigma_mid, noisy training": fmt_paper_mid(ref.loc[arch, "sigma_mid_noisy"]),
                "diverged": "–" if clean is None else clean["diverged"],
                "diverged, noisy training": "–" if noisy is None else noisy["diverged"],
                "fit": "–" if clean is None else fit_note(clean["fit_ok"], clean["fit"]),
                "fit, noisy training": "–" if noisy is None else fit_note(noisy["fit_ok"], noisy["fit"]),
                "sigma_mid": get(clean, "sigma_mid"),
                "sigma_mid_err": get(clean, "sigma_mid_err"),
                "rel_err": get(clean, "rel_err"),
                "sigma_mid_noisy": get(noisy, "sigma_mid"),
                "sigma_mid_noisy_err": get(noisy, "sigma_mid_err"),
                "rel_err_noisy": get(noisy, "rel_err"),
                "paper_sigma_mid": ref.loc[arch, "sigma_mid"],
                "paper_sigma_mid_noisy": ref.loc[arch, "sigma_mid_noisy"],
            }
        )
    table = pd.DataFrame(rows)
    numeric = ["sigma_mid", "sigma_mid_err", "rel_err", "sigma_mid_noisy", "sigma_mid_noisy_err", "rel_err_noisy",
               "paper_sigma_mid", "paper_sigma_mid_noisy"]
    return table if numbers else table.drop(columns=["arch", *numeric])


def with_architecture_stats(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (one row per ``arch``, e.g. :func:`compare`) with :func:`architecture_stats` joined on."""
    return table.merge(architecture_stats(tuple(table["arch"])), on="arch")


def plot_midpoints(ax: plt.Axes, table: pd.DataFrame, *, title: str | None = None) -> plt.Axes:
    """Table II as points: sigma_mid per architecture without (blue) and with noisy training (red), ours (filled,
    with the fits' standard errors) beside the paper's (open), on a log axis.

    ``table`` is :func:`compare`'s output; an architecture with diverged networks is flagged under its name
    ("diverged 1 of 2", docs/protocol.md §11). Points, not bars: a bar's length on a log axis depends on where the
    axis starts. Where our curve has no midpoint (no fit, e.g. collapsed) "no fit" stands in the point's place,
    "not run" where the profile has no such run.
    """
    x = np.arange(len(table))
    series = [
        ("sigma_mid", "ours, trained without noise", "tab:blue", True, -0.15),
        ("paper_sigma_mid", "paper, trained without noise", "tab:blue", False, -0.05),
        ("sigma_mid_noisy", "ours, noisy training", "tab:red", True, 0.05),
        ("paper_sigma_mid_noisy", "paper, noisy training", "tab:red", False, 0.15),
    ]
    for col, name, color, ours, dx in series:
        err = table.get(f"{col}_err")
        ax.errorbar(x + dx, table[col], yerr=None if err is None else err.fillna(0), ls="none", capsize=3,
                    marker="o" if ours else "D", ms=6, color=color, mfc=color if ours else "white", mew=1.2,
                    label=name)
        fits = table.get("fit, noisy training" if col.endswith("noisy") else "fit", pd.Series(["?"] * len(table)))
        for xi, value, fit in zip(x + dx, table[col], fits):
            if ours and not np.isfinite(float(value)):  # no midpoint: said where its point would be
                ax.text(xi, 0.02, "not run" if fit == "–" else "no fit", transform=ax.get_xaxis_transform(),
                        rotation=90, ha="center", va="bottom", fontsize="x-small", color=color)
    names = list(table["model"])
    for col, what in (("diverged", "diverged"), ("diverged, noisy training", "diverged, noisy training")):
        if col in table:
            names = [n if str(d).startswith(("0 of", "–")) else f"{n}\n({what} {d})" for n, d in zip(names, table[col])]
    ax.set_xticks(x, names)
    ax.set_xlim(-0.6, len(table) - 0.4)
    ax.set_yscale("log")
    if np.isfinite(table[[c for c, *_ in series]].to_numpy(dtype=float)).any():
        log_ticks(ax.yaxis)
    ax.set_ylabel(r"midpoint noise level $\sigma_{mid}$")
    if title:
        ax.set_title(title)
    legend(ax, fontsize="x-small")
    return ax


@themed
def figure(table: pd.DataFrame) -> Figure:
    """Table II as points (:func:`plot_midpoints`); ``table``: :func:`compare`'s output."""
    fig = new_figure((7, 4.4), layout="constrained")
    plot_midpoints(fig.subplots(), table, title="midpoint noise level, fp32: without and with noisy training")
    return fig


def what_it_shows(summary: pd.DataFrame, profile: Profile) -> Markdown:
    """What a Table II run shows, from its own ``summary``: per architecture, fp32's peak accuracy and sigma_mid
    without and with noisy training beside the paper's, the findings (4-5) and the budget."""
    ref = paper.table_ii().set_index("arch")
    archs = tuple(a for a in summary.arch.unique() if a in ref.index)
    lines = []
    for arch in archs:
        lines.append(fp32_sentence(summary, arch))
        noisy = summary_row(summary, arch, "fp32", "noisy")
        if noisy is not None:
            printed = ref.loc[arch, "sigma_mid_noisy"]
            lines.append(f"{ARCH_NAMES[arch]} fp32 with noisy training: sigma_mid {mid(noisy)} (paper: {printed:g}"
                         + (f"; {versus(noisy.sigma_mid, noisy.sigma_mid_err, printed)})." if noisy.fit_ok else ")."))
    return report(lines, summary, profile, archs)

