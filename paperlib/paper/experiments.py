"""The paper's experiments as lists of run specs, and its tables beside ours (docs/protocol.md §4, §7).

:func:`qat_variants` / :func:`noisy_variants` are the variants of Fig. 2 /
Table I and Fig. 3; :func:`clean_specs` (trained without noise) and
:func:`noisy_specs` (one network per training sigma, evaluated at that sigma)
turn them into run specs. :func:`percent_table`, :func:`compare_fig2`,
:func:`compare_table_i`, :func:`compare_fig3` and :func:`compare_table_ii`
print a run's summary (:func:`paperlib.runs.summary.summarize`) with the
paper's precision (accuracy in % with one decimal, ``sigma_mid`` with three
significant digits and its relative error) beside the paper's numbers.
"""
from __future__ import annotations

import math

import pandas as pd

from .. import guards
from ..model_size import model_stats
from ..models import ARCH_NAMES, ARCHS, build_model
from ..noise import noise_modules
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from ..runs.summary import Variant, summary_row, variant_name
from . import published as paper

_row = summary_row


class Markdown(str):
    """Text that a notebook shows as Markdown when it is a cell's last expression (``_repr_markdown_``); a plain
    ``str`` everywhere else (``in``, ``+``, ``print``)."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return str(self)

def qat_variants(profile: Profile, arch: str) -> list[Variant]:
    """fp32, then per bit width of the profile: dynamic scaling and the arch's constant scales (Fig. 2, Table I)."""
    return [(None, None)] + [(b, s) for b in profile.bits for s in (None, *profile.scales(arch))]


def noisy_variants(profile: Profile) -> list[Variant]:
    """fp32, then per bit width of ``noisy_bits``: dynamic scaling and the constant ``noisy_scale`` (Fig. 3)."""
    return [(None, None)] + [(b, s) for b in profile.noisy_bits for s in (None, profile.noisy_scale)]


def _seeds(profile: Profile, arch: str, seeds: int) -> range:
    guards.seeds(seeds)
    return range(seeds if seeds > 0 else profile.for_arch(arch).seeds)


def clean_specs(profile: Profile, arch: str, variants: list[Variant], seeds: int = 0) -> list[RunSpec]:
    """Networks trained without noise, swept over the profile's sigma grid; ``seeds`` 0 = the profile's number."""
    return [profile.spec(arch, bits=b, scale=s, seed=k) for b, s in variants for k in _seeds(profile, arch, seeds)]


def noisy_specs(profile: Profile, arch: str, variants: list[Variant], seeds: int = 0) -> list[RunSpec]:
    """Noisy training (docs/protocol.md §6): one network per training sigma of ``profile.noisy_sigmas()``,
    evaluated at the same sigma only, as in the paper's Fig. 3; ``seeds`` 0 = the profile's number."""
    return [
        profile.spec(arch, bits=b, scale=s, sigma_train=sig, sigmas=(sig,), seed=k)
        for b, s in variants
        for sig in profile.noisy_sigmas()
        for k in _seeds(profile, arch, seeds)
    ]


def fig3_specs(profile: Profile, seeds: int = 0) -> list[RunSpec]:
    """Fig. 3: per architecture of the profile, the :func:`noisy_variants` trained without noise (swept over the
    sigma grid) and with noisy training (:func:`noisy_specs`); ``seeds`` 0 = the profile's number."""
    variants = noisy_variants(profile)
    return [s for a in profile.archs
            for s in clean_specs(profile, a, variants, seeds) + noisy_specs(profile, a, variants, seeds)]


def table_ii_specs(profile: Profile, seeds: int = 0) -> list[RunSpec]:
    """Table II: fp32 of every architecture of the profile, trained without and with noise (the same networks as
    :func:`fig3_specs`'s fp32 ones, read from the cache); ``seeds`` 0 = the profile's number."""
    fp32: list[Variant] = [(None, None)]
    return [s for a in profile.archs
            for s in clean_specs(profile, a, fp32, seeds) + noisy_specs(profile, a, fp32, seeds)]


TABLE_I_ARCHS: tuple[str, ...] = ("vgg11", "resnet18")
"""The architectures of the paper's Table I."""


def published_table_i(arch: str) -> pd.DataFrame:
    """The paper's Table I rows for ``arch`` as printed: variant, peak accuracy (%) and sigma_mid (relative error).

    Raises a ValueError for an architecture that Table I does not cover (only VGG-11 and ResNet-18).
    """
    if arch not in TABLE_I_ARCHS:
        raise ValueError(f"Table I covers arch 'vgg11' or 'resnet18', got {arch!r}")
    ref = paper.table_i().query("arch == @arch")
    return pd.DataFrame(
        {
            "variant": [variant_name(b, s) for b, s in zip(ref.bits, ref.scale)],
            "paper peak acc. (%)": [f"{v:.1f}" for v in ref.peak_acc_pct],
            "paper sigma_mid (rel. err.)": [_fmt_paper_mid(m, r) for m, r in zip(ref.sigma_mid, ref.rel_err)],
        }
    )


def _fmt_acc(acc: float, spread: float) -> str:
    """Accuracy in % with one decimal, as the paper prints it, and its error ("± x"; the value alone when the error
    is unknown). The tables pass the standard error ``peak_acc_err`` (docs/protocol.md §11)."""
    if pd.isna(acc):
        return "–"
    return f"{100 * acc:.1f}" + ("" if pd.isna(spread) else f" ± {100 * spread:.1f}")


def _sig3(x: float) -> str:
    """Three significant digits, trailing zeros kept (0.2 -> "0.200")."""
    text = f"{x:#.3g}"
    return text.rstrip(".") if "e" not in text else text


def _fmt_mid(mid: float, rel: float) -> str:
    """sigma_mid with three significant digits and its relative standard error in %, like the paper's "0.154 (0.5%)"."""
    return "–" if pd.isna(mid) else f"{_sig3(mid)} ({100 * rel:.1f}%)"


def _fmt_paper_mid(mid: float, rel: float = math.nan) -> str:
    """A printed sigma_mid of the paper, as printed."""
    if pd.isna(mid):
        return "–"
    return f"{mid:g}" + ("" if pd.isna(rel) else f" ({100 * rel:.1f}%)")


def _fmt_pct(value: float, err: float) -> str:
    """A fraction in % with one decimal and its error ("70.0 ± 0.4"; the value alone when the error is unknown)."""
    if pd.isna(value):
        return "–"
    return f"{100 * value:.1f}" + ("" if pd.isna(err) else f" ± {100 * err:.1f}")


def noise_module_counts(arch: str, variants: list[Variant]) -> pd.DataFrame:
    """How many noise modules (docs/protocol.md §2) ``arch`` has in each of ``variants``: one row per variant."""
    return pd.DataFrame(
        {
            "variant": [variant_name(b, s) for b, s in variants],
            "noise modules": [len(noise_modules(build_model(arch, b, s))) for b, s in variants],
        }
    )


def percent_table(summary: pd.DataFrame) -> pd.DataFrame | Markdown:
    """``summary`` (:func:`paperlib.runs.summary.summarize`) as the paper prints it: one row per curve.

    Columns ``arch``, ``variant``, ``regime``, ``seeds``, ``peak acc. (%)``
    (noise-free, one decimal, ± its standard error ``peak_acc_err``),
    ``sigma_mid (rel. err.)`` (three significant digits and the relative
    standard error in %), ``diverged`` (networks, "0 of 2") and ``fit`` ("ok",
    else why there is no midpoint). A summary without rows gives one sentence
    saying so instead of an empty table.
    """
    if summary.empty:
        return Markdown("This run has no curve to show: the sweep returned no result.")
    return pd.DataFrame(
        {
            "arch": summary["arch"].to_numpy(),
            "variant": summary["variant"].to_numpy(),
            "regime": summary["regime"].to_numpy(),
            "seeds": summary["seeds"].to_numpy(),
            "peak acc. (%)": [_fmt_pct(a, e) for a, e in zip(summary.peak_acc, summary.peak_acc_err)],
            "sigma_mid (rel. err.)": [_fmt_mid(m, r) for m, r in zip(summary.sigma_mid, summary.rel_err)],
            "diverged": summary["diverged"].to_numpy(),
            "fit": ["ok" if ok else str(f) for ok, f in zip(summary.fit_ok, summary.fit)],
        }
    )


def compare_fig2(summary: pd.DataFrame, arch: str = "lenet5") -> pd.DataFrame | Markdown:
    """:func:`percent_table` of ``arch``'s curves trained without noise, beside the numbers the paper gives for
    Fig. 2 (:func:`paperlib.paper.published.fig2c_points`: fp32 75% and 0.286; 8-bit s=8 70% and sigma_mid up by
    over 200%, i.e. above 3 x 0.286); "–" where the paper gives no number."""
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


def compare_fig3(summary: pd.DataFrame) -> pd.DataFrame | Markdown:
    """Per architecture and variant: ``sigma_mid`` trained without and with noise and their ratio (the gain of noisy
    training, ± its relative standard error), beside the paper's fp32 numbers (Table II: LeNet-5 0.286 -> 2.59,
    VGG-11 0.154 -> 2.957, ResNet-18 0.494 -> 3.023; gains 9.1x, 19x, 6.1x). "–" where a side has no midpoint."""
    if summary.empty:
        return Markdown("This run has no curve to show: the sweep returned no result.")
    ref = paper.table_ii().set_index("arch")
    rows = []
    for (arch, variant), _ in summary.groupby(["arch", "variant"], sort=False):
        clean, noisy = _row(summary, arch, variant), _row(summary, arch, variant, "noisy")
        mid = lambda r: _fmt_mid(r["sigma_mid"], r["rel_err"]) if r is not None else "–"  # noqa: E731
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


def _fit_note(ok: object, fit: object) -> str:
    """A table's ``fit`` cell: "ok" for a fitted curve (its numbers are in the sigma_mid column), else why there is
    no midpoint; "–" for a row of the paper's that we did not run."""
    if pd.isna(fit):
        return "–"
    return "ok" if ok is True or (not pd.isna(ok) and bool(ok)) else str(fit)


def compare_table_i(summary: pd.DataFrame, arch: str) -> pd.DataFrame:
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
            "peak acc. (%)": [_fmt_acc(a, e) for a, e in zip(merged.peak_acc, merged.peak_acc_err)],
            "sigma_mid (rel. err.)": [_fmt_mid(m, r) for m, r in zip(merged.sigma_mid, merged.rel_err)],
            "diverged": merged["diverged"].fillna("–"),
            "fit": [_fit_note(ok, f) for ok, f in zip(merged["fit_ok"], merged["fit"])],
            "paper peak acc. (%)": merged["peak_acc_pct"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}"),
            "paper sigma_mid (rel. err.)": [
                _fmt_paper_mid(m, r) for m, r in zip(merged.sigma_mid_paper, merged.rel_err_paper)
            ],
        }
    )


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


def compare_table_ii(summary: pd.DataFrame, archs: tuple[str, ...] = ARCHS, numbers: bool = True) -> pd.DataFrame:
    """Table II: our fp32 peak accuracy and sigma_mid without/with noisy training beside the paper's, per architecture.

    Display columns as in :func:`compare_table_i` (peak accuracy noise-free, in %
    with one decimal; sigma_mid with three significant digits and its relative
    error; ``diverged`` networks, docs/protocol.md §11), then the numbers for
    :func:`paperlib.plotting.plot_midpoints`: ``sigma_mid``, ``sigma_mid_err``,
    ``rel_err``, ``sigma_mid_noisy``, ``sigma_mid_noisy_err``, ``rel_err_noisy``,
    ``paper_sigma_mid``, ``paper_sigma_mid_noisy`` (absolute sigma); ``numbers=False`` leaves those out
    (the table as a notebook shows it).
    """
    ref = paper.table_ii().set_index("arch")
    rows = []
    for arch in archs:
        clean, noisy = _row(summary, arch, "fp32"), _row(summary, arch, "fp32", "noisy")
        get = lambda r, c: math.nan if r is None else r[c]  # noqa: E731
        rows.append(
            {
                "arch": arch,
                "model": ARCH_NAMES[arch],
                "peak acc. (%)": _fmt_acc(get(clean, "peak_acc"), get(clean, "peak_acc_err")),
                "paper peak acc. (%)": f"{ref.loc[arch, 'peak_acc_pct']:.1f}",
                "sigma_mid (rel. err.)": _fmt_mid(get(clean, "sigma_mid"), get(clean, "rel_err")),
                "paper sigma_mid": _fmt_paper_mid(ref.loc[arch, "sigma_mid"]),
                "sigma_mid, noisy training (rel. err.)": _fmt_mid(get(noisy, "sigma_mid"), get(noisy, "rel_err")),
                "paper sigma_mid, noisy training": _fmt_paper_mid(ref.loc[arch, "sigma_mid_noisy"]),
                "diverged": "–" if clean is None else clean["diverged"],
                "diverged, noisy training": "–" if noisy is None else noisy["diverged"],
                "fit": "–" if clean is None else _fit_note(clean["fit_ok"], clean["fit"]),
                "fit, noisy training": "–" if noisy is None else _fit_note(noisy["fit_ok"], noisy["fit"]),
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
    """``table`` (one row per ``arch``, e.g. :func:`compare_table_ii`) with :func:`architecture_stats` joined on."""
    return table.merge(architecture_stats(tuple(table["arch"])), on="arch")
