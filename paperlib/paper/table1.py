"""Table I (notebook 02): VGG-11 or ResNet-18 trained without noise, fp32 and 4/8-bit QAT with dynamic or constant
activation scaling (paper §IV-A, Table I; docs/protocol.md §4, §8 findings 1-2).

:func:`specs` are its networks, :func:`published` the paper's rows, :func:`compare` ours beside them,
:func:`figure` the accuracy-vs-sigma curves behind the table, :func:`what_it_shows` the run's own reading.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ..models import ARCH_NAMES
from ..runs import summary as runs_summary
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import variant_name
from . import published as paper
from .plots import new_figure, plot_curves, themed
from .prose import fp32_sentence, pct, report, versus
from .rules import mid
from .specs import clean_specs, qat_variants
from .tables import Markdown, fit_note, fmt_acc, fmt_mid, fmt_paper_mid

#: The paper-layer modules this table's numbers and drawing come from (recorded in its fingerprint).
MODULES: tuple[str, ...] = ("paper/plots", "paper/prose", "paper/rules", "paper/specs", "paper/table1",
                            "paper/tables")
#: The architectures of the paper's Table I.
ARCHS: tuple[str, ...] = ("vgg11", "resnet18")


def specs(profile: Profile, seeds: int = 0, arch: str = "vgg11") -> list[RunSpec]:
    """Every QAT variant of ``arch`` trained without noise, swept over the profile's sigma grid; ``seeds`` 0 = the
    profile's number of networks per variant."""
    return clean_specs(profile, arch, qat_variants(profile, arch), seeds)


def published(arch: str) -> pd.DataFrame:
    """The paper's Table I rows for ``arch`` as printed: variant, peak accuracy (%) and sigma_mid (relative error).

    Raises a ValueError for an architecture that Table I does not cover (only VGG-11 and ResNet-18).
    """
    if arch not in ARCHS:
        raise ValueError(f"Table I covers arch 'vgg11' or 'resnet18', got {arch!r}")
    ref = paper.table_i().query("arch == @arch")
    return pd.DataFrame(
        {
            "variant": [variant_name(b, s) for b, s in zip(ref.bits, ref.scale)],
            "paper peak acc. (%)": [f"{v:.1f}" for v in ref.peak_acc_pct],
            "paper sigma_mid (rel. err.)": [fmt_paper_mid(m, r) for m, r in zip(ref.sigma_mid, ref.rel_err)],
        }
    )


def compare(summary: pd.DataFrame, arch: str) -> pd.DataFrame:
    """Our Table I rows for ``arch`` (clean training) beside the paper's, matched on bits and scale.

    Peak accuracy: noise-free, in % with one decimal (± its standard error ``peak_acc_err``);
    sigma_mid with three significant digits and its relative error;
    ``diverged``: networks whose training diverged (docs/protocol.md §11); ``fit``: "ok", else why there is no
    midpoint.
    Rows of either side without a partner show "–" on the other.
    """
    ours = summary[(summary.arch == arch) & (summary.regime == "clean")].assign(key=lambda d: d.variant)
    ref = (
        paper.table_i()
        .query("arch == @arch")
        .assign(key=lambda d: [variant_name(b, s) for b, s in zip(d.bits, d.scale)])
    )
    merged = ours.merge(ref, on="key", how="outer", suffixes=("", "_paper"), sort=False)
    order = [k for k in [*ours.key, *ref.key] if k]
    merged = merged.set_index("key").loc[list(dict.fromkeys(order))].reset_index()
    return pd.DataFrame(
        {
            "variant": merged["key"],
            "peak acc. (%)": [fmt_acc(a, e) for a, e in zip(merged.peak_acc, merged.peak_acc_err)],
            "sigma_mid (rel. err.)": [fmt_mid(m, r) for m, r in zip(merged.sigma_mid, merged.rel_err)],
            "diverged": merged["diverged"].fillna("–"),
            "fit": [fit_note(ok, f) for ok, f in zip(merged["fit_ok"], merged["fit"])],
            "paper peak acc. (%)": merged["peak_acc_pct"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}"),
            "paper sigma_mid (rel. err.)": [
                fmt_paper_mid(m, r) for m, r in zip(merged.sigma_mid_paper, merged.rel_err_paper)
            ],
        }
    )


@themed
def figure(df: pd.DataFrame, profile: Profile, arch: str) -> Figure:
    """The accuracy-vs-sigma curves behind Table I for ``arch``: one panel per bit width of ``profile``, fp32 in
    each."""
    labelled = runs_summary.label(df)
    bits = list(profile.bits)
    fig = new_figure((5.5 * len(bits), 4.4), layout="constrained")
    for ax, b in zip(fig.subplots(1, len(bits), squeeze=False)[0], bits):
        plot_curves(ax, labelled[labelled.bits.isna() | (labelled.bits == b)],
                    title=f"{ARCH_NAMES.get(arch, arch)}, {b}-bit", scales=list(profile.scales(arch)))
    return fig


def what_it_shows(summary: pd.DataFrame, profile: Profile, arch: str) -> Markdown:
    """What a Table I run of ``arch`` shows, from its own ``summary``: fp32 beside the paper, each of our variants
    that the paper prints beside its row (peak accuracy, sigma_mid), the findings and the budget."""
    lines = [fp32_sentence(summary, arch)]
    ref = paper.table_i().query("arch == @arch")
    ref = ref.assign(variant=[variant_name(b, s) for b, s in zip(ref.bits, ref.scale)]).set_index("variant")
    for r in summary[(summary.arch == arch) & (summary.regime == "clean") & summary.bits.notna()].itertuples():
        if r.variant not in ref.index:
            lines.append(f"{r.variant}: peak accuracy {pct(r)}, sigma_mid {mid(r)} (not in the paper's table).")
            continue
        p = ref.loc[r.variant]
        lines.append(f"{r.variant}: peak accuracy {pct(r)} (paper {p.peak_acc_pct:.1f}%), sigma_mid {mid(r)} "
                     f"(paper {p.sigma_mid:g}"
                     + (f"; {versus(r.sigma_mid, r.sigma_mid_err, p.sigma_mid)})." if r.fit_ok else ")."))
    return report(lines, summary, profile, (arch,))
