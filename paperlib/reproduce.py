"""The paper's experiments as lists of run specs, and their summaries (REFERENCE §7-8).

The notebooks call these: :func:`clean_specs` (Fig. 2, Table I: trained
without noise), :func:`noisy_specs` (Fig. 3: one network per training sigma,
evaluated at that sigma), :func:`curves` and :func:`summarize` (accuracy vs
sigma and the midpoint noise level per variant, error bars from the seeds),
and :func:`findings` (which of the paper's findings a run shows).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import paper
from .experiment import RunSpec
from .midpoint import fit_midpoint
from .models import ARCH_NAMES, ARCHS, build_model
from .noise import noise_modules
from .profiles import Profile
from .stats import model_stats

#: A variant: (bits, scale); (None, None) = fp32, (b, None) = dynamic scaling, (b, s) = constant scale s.
Variant = tuple[int | None, float | None]
#: Columns that identify one curve of a sweep table (after :func:`label`).
CURVE_KEYS: list[str] = ["arch", "variant", "regime"]


def variant_name(bits: int | None, scale: float | None) -> str:
    """``"fp32"``, ``"8-bit dynamic"`` or ``"8-bit s=1"``."""
    if bits is None or (isinstance(bits, float) and math.isnan(bits)):
        return "fp32"
    if scale is None or (isinstance(scale, float) and math.isnan(scale)):
        return f"{int(bits)}-bit dynamic"
    return f"{int(bits)}-bit s={scale:g}"


def qat_variants(profile: Profile, arch: str) -> list[Variant]:
    """fp32, then for each bit width of the profile: dynamic scaling and the arch's constant scales (Fig. 2, Table I)."""
    return [(None, None)] + [(b, s) for b in profile.bits for s in (None, *profile.scales(arch))]


def noisy_variants(profile: Profile) -> list[Variant]:
    """fp32, then for each of the profile's ``noisy_bits``: dynamic scaling and the constant ``noisy_scale`` (Fig. 3)."""
    return [(None, None)] + [(b, s) for b in profile.noisy_bits for s in (None, profile.noisy_scale)]


def _seeds(profile: Profile, arch: str, seeds: int) -> range:
    return range(seeds if seeds > 0 else profile.for_arch(arch).seeds)


def clean_specs(profile: Profile, arch: str, variants: list[Variant], seeds: int = 0) -> list[RunSpec]:
    """Networks trained without noise, swept over the profile's sigma grid; ``seeds`` 0 = the profile's number."""
    return [profile.spec(arch, bits=b, scale=s, seed=k) for b, s in variants for k in _seeds(profile, arch, seeds)]


def noisy_specs(profile: Profile, arch: str, variants: list[Variant], seeds: int = 0) -> list[RunSpec]:
    """Noisy training (REFERENCE §6): one network per training sigma of ``profile.noisy_sigmas()``,
    evaluated at the same sigma only, as in the paper's Fig. 3; ``seeds`` 0 = the profile's number."""
    return [profile.spec(arch, bits=b, scale=s, sigma_train=sig, sigmas=(sig,), seed=k)
            for b, s in variants for sig in profile.noisy_sigmas() for k in _seeds(profile, arch, seeds)]


def label(df: pd.DataFrame) -> pd.DataFrame:
    """A :func:`paperlib.run_sweep` table with ``variant`` and ``regime`` (``clean`` / ``noisy`` training) added."""
    out = df.copy()
    out["variant"] = [variant_name(b, s) for b, s in zip(out["bits"], out["scale"])]
    out["regime"] = np.where(out["sigma_train"] > 0, "noisy", "clean")
    return out


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy vs sigma per curve: mean and standard deviation over seeds.

    Each seed's accuracy is first averaged over its noise draws; with a single
    seed the spread is the standard deviation over noise draws instead. Failed
    and diverged runs (NaN accuracy) are left out and counted in ``failed``.

    Returns:
        One row per arch, variant, regime and sigma: ``bits``, ``scale``,
        ``acc_mean``, ``acc_std``, ``seeds``, ``failed``.
    """
    df = label(df) if "variant" not in df else df
    ok = df.dropna(subset=["accuracy"])
    per_seed = ok.groupby([*CURVE_KEYS, "bits", "scale", "sigma", "seed"], sort=False, dropna=False)["accuracy"]
    seed_mean = per_seed.mean().rename("acc").reset_index()
    draw_std = per_seed.std().rename("draw_std").reset_index()
    g = seed_mean.groupby([*CURVE_KEYS, "bits", "scale", "sigma"], sort=False, dropna=False)
    out = g["acc"].agg(acc_mean="mean", seed_std="std", seeds="count").reset_index()
    single_draw = draw_std.groupby([*CURVE_KEYS, "sigma"], sort=False, dropna=False)["draw_std"].mean().reset_index()
    out = out.merge(single_draw, on=[*CURVE_KEYS, "sigma"], how="left")
    out["acc_std"] = np.where(out["seeds"] > 1, out["seed_std"], out["draw_std"])
    failed = df[df["accuracy"].isna()].groupby(CURVE_KEYS, sort=False)["seed"].nunique().rename("failed")
    out = out.merge(failed, left_on=CURVE_KEYS, right_index=True, how="left").fillna({"failed": 0})
    return out.drop(columns=["seed_std", "draw_std"]).sort_values([*CURVE_KEYS, "sigma"], kind="stable").reset_index(drop=True)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve: peak accuracy and the midpoint noise level (REFERENCE §3).

    ``peak_acc`` is the highest mean accuracy over the grid (``peak_acc_std``
    its spread over seeds there); ``sigma_mid`` and its standard error come
    from :func:`paperlib.fit_midpoint` on the mean curve weighted by its
    spread. A curve whose fit fails (a model at chance, a curve that never
    crosses its midpoint) has ``fit_ok`` False, NaN ``sigma_mid`` and the
    reason; a curve with no finite accuracy at all is ``collapsed``.
    """
    labelled = label(df) if "variant" not in df else df
    by_curve = dict(iter(curves(labelled).groupby(CURVE_KEYS, sort=False)))
    rows = []
    for (arch, variant, regime), g in labelled.groupby(CURVE_KEYS, sort=False):
        cg = by_curve.get((arch, variant, regime), pd.DataFrame())
        base = {"arch": arch, "variant": variant, "regime": regime, "bits": g["bits"].iloc[0],
                "scale": g["scale"].iloc[0], "seeds": g["seed"].nunique(),
                "failed": int(g.loc[g["accuracy"].isna(), "seed"].nunique())}
        if cg.empty:
            rows.append({**base, "peak_acc": math.nan, "peak_acc_std": math.nan, "sigma_mid": math.nan,
                         "sigma_mid_err": math.nan, "rel_err": math.nan,
                         "fit": "collapsed: training diverged (NaN loss)" if g["diverged"].astype(bool).all()
                         else "no curve: every run failed",
                         "fit_ok": False, "collapsed": True})
            continue
        fit = fit_midpoint(cg["sigma"].to_numpy(), cg["acc_mean"].to_numpy(), cg["acc_std"].to_numpy())
        i = int(cg["acc_mean"].to_numpy().argmax())
        rows.append({**base, "peak_acc": float(cg["acc_mean"].iloc[i]), "peak_acc_std": float(cg["acc_std"].iloc[i]),
                     "sigma_mid": fit.sigma_mid, "sigma_mid_err": fit.sigma_mid_err, "rel_err": fit.rel_err,
                     "fit": str(fit), "fit_ok": fit.ok, "collapsed": False})
    return pd.DataFrame(rows)


def _row(summary: pd.DataFrame, arch: str, variant: str, regime: str = "clean") -> pd.Series | None:
    hit = summary[(summary.arch == arch) & (summary.variant == variant) & (summary.regime == regime)]
    return None if hit.empty else hit.iloc[0]


def _usable(row: pd.Series | None) -> bool:
    return row is not None and bool(row["fit_ok"])


def _constant_rows(summary: pd.DataFrame, arch: str, bits: int) -> pd.DataFrame:
    rows = summary[(summary.arch == arch) & (summary.regime == "clean") & (summary.bits == bits) & summary.scale.notna()]
    return rows.sort_values("scale")


def _f1(summary: pd.DataFrame) -> list[tuple[str, bool | None, str]]:
    out = []
    for arch in summary.arch.unique():
        fp32 = _row(summary, arch, "fp32")
        for bits in sorted(summary.loc[summary.arch == arch, "bits"].dropna().unique()):
            dyn = _row(summary, arch, variant_name(bits, None))
            const = _constant_rows(summary, arch, bits)
            const = const[const.fit_ok]
            if not _usable(dyn) or const.empty:
                continue
            what = f"{arch} {int(bits)}-bit"
            beats = const.sigma_mid > dyn.sigma_mid
            out.append((f"{what}: constant scaling raises sigma_mid above dynamic scaling", bool(beats.all()),
                        f"dynamic {dyn.sigma_mid:.3g}; constant " + ", ".join(f"s={s:g}: {m:.3g}" for s, m in zip(const.scale, const.sigma_mid))))
            if _usable(fp32):
                out.append((f"{what}: dynamic scaling is less robust than fp32", bool(dyn.sigma_mid < fp32.sigma_mid),
                            f"dynamic {dyn.sigma_mid:.3g} vs fp32 {fp32.sigma_mid:.3g}"))
    return out


def _f2(summary: pd.DataFrame) -> list[tuple[str, bool | None, str]]:
    out = []
    for arch in summary.arch.unique():
        for bits in sorted(summary.loc[summary.arch == arch, "bits"].dropna().unique()):
            const = _constant_rows(summary, arch, bits)
            working = const[const.fit_ok]
            if len(working) < 2:
                continue
            lo, hi = working.iloc[0], working.iloc[-1]
            holds = bool(hi.peak_acc <= lo.peak_acc and hi.sigma_mid >= lo.sigma_mid)
            collapsed = const[~const.fit_ok & (const.scale > hi.scale)]
            note = f"; collapsed at s={', '.join(f'{s:g}' for s in collapsed.scale)}" if len(collapsed) else ""
            out.append((f"{arch} {int(bits)}-bit: a larger constant scale trades peak accuracy for robustness", holds,
                        f"s={lo.scale:g}: {100 * lo.peak_acc:.1f}%, {lo.sigma_mid:.3g} -> s={hi.scale:g}: "
                        f"{100 * hi.peak_acc:.1f}%, {hi.sigma_mid:.3g}{note}"))
    return out


def _f3(summary: pd.DataFrame) -> list[tuple[str, bool | None, str]]:
    lenet = summary[(summary.arch == "lenet5") & (summary.regime == "clean") & summary.bits.isin([4, 8])]
    pairs = []
    for scale, g in lenet.groupby(lenet.scale.fillna(-1.0)):
        by_bits = {int(b): r for b, r in zip(g.bits, g.itertuples())}
        if 4 in by_bits and 8 in by_bits and by_bits[4].fit_ok and by_bits[8].fit_ok:
            pairs.append((variant_name(8, None if scale < 0 else scale).replace("8-bit ", ""), by_bits[8], by_bits[4]))
    if not pairs:
        return []
    acc = sum(p8.peak_acc > p4.peak_acc for _, p8, p4 in pairs)
    mid = sum(p8.sigma_mid > p4.sigma_mid for _, p8, p4 in pairs)
    return [("lenet5: 8-bit beats 4-bit on both accuracy and robustness", bool(2 * acc > len(pairs) and 2 * mid > len(pairs)),
             f"8-bit higher peak accuracy in {acc} of {len(pairs)} scalings, higher sigma_mid in {mid} of {len(pairs)}")]


def _f4(summary: pd.DataFrame, gain: float = 5.0, spread: float = 0.25) -> list[tuple[str, bool | None, str]]:
    out = []
    for arch in summary.arch.unique():
        clean, noisy = _row(summary, arch, "fp32"), _row(summary, arch, "fp32", "noisy")
        if _usable(clean) and _usable(noisy):
            ratio = noisy.sigma_mid / clean.sigma_mid
            out.append((f"{arch}: noisy training raises sigma_mid by about an order of magnitude (here: >= {gain:g}x)",
                        bool(ratio >= gain), f"fp32 {clean.sigma_mid:.3g} -> {noisy.sigma_mid:.3g} ({ratio:.1f}x)"))
        quant = summary[(summary.arch == arch) & (summary.regime == "noisy") & summary.bits.notna() & summary.fit_ok]
        if _usable(noisy) and len(quant):
            dev = (quant.sigma_mid / noisy.sigma_mid - 1).abs()
            out.append((f"{arch}: with noisy training, quantized and fp32 models are equally robust (within {spread:.0%})",
                        bool((dev <= spread).all()),
                        f"fp32 {noisy.sigma_mid:.3g}; " + ", ".join(f"{v}: {m:.3g}" for v, m in zip(quant.variant, quant.sigma_mid))))
    return out


def _f5(summary: pd.DataFrame) -> list[tuple[str, bool | None, str]]:
    mids = {a: _row(summary, a, "fp32") for a in ("lenet5", "vgg11", "resnet18")}
    mids = {a: r.sigma_mid for a, r in mids.items() if _usable(r)}
    out = []
    if "vgg11" in mids and "lenet5" in mids:
        out.append(("deeper plain VGG-11 is less robust than LeNet-5", bool(mids["vgg11"] < mids["lenet5"]),
                    f"fp32 sigma_mid: VGG-11 {mids['vgg11']:.3g}, LeNet-5 {mids['lenet5']:.3g}"))
    if "vgg11" in mids and "resnet18" in mids:
        out.append(("skip connections help: ResNet-18 is more robust than VGG-11", bool(mids["resnet18"] > mids["vgg11"]),
                    f"fp32 sigma_mid: ResNet-18 {mids['resnet18']:.3g}, VGG-11 {mids['vgg11']:.3g}"))
    return out


def findings(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's findings (REFERENCE §8) that ``summary`` (from :func:`summarize`) can test, each checked.

    Returns:
        One row per testable statement: ``finding`` (1-5, as numbered in
        REFERENCE §8), ``statement``, ``holds`` (bool) and ``evidence`` (the
        numbers compared). Statements whose curves are missing or failed
        their fit are left out, not guessed.
    """
    rows = [(n, s, h, e) for n, check in enumerate((_f1, _f2, _f3, _f4, _f5), start=1) for s, h, e in check(summary)]
    return pd.DataFrame(rows, columns=["finding", "statement", "holds", "evidence"])


def _fmt_acc(acc: float, spread: float) -> str:
    """Accuracy in % with its spread ("± x" only where there is one: several seeds or draws)."""
    if pd.isna(acc):
        return "–"
    return f"{100 * acc:.1f}" + ("" if pd.isna(spread) else f" ± {100 * spread:.1f}")


def _fmt_mid(mid: float, rel: float) -> str:
    return "–" if pd.isna(mid) else f"{mid:.3g} ({100 * rel:.1f}%)"


def compare_table_i(summary: pd.DataFrame, arch: str) -> pd.DataFrame:
    """Our Table I rows for ``arch`` (clean training) beside the paper's, matched on bits and scale.

    Accuracies in %; rows of either side without a partner show "–" on the other.
    """
    ours = summary[(summary.arch == arch) & (summary.regime == "clean")].assign(key=lambda d: d.variant)
    ref = paper.table_i().query("arch == @arch").assign(key=lambda d: [variant_name(b, s) for b, s in zip(d.bits, d.scale)])
    merged = ours.merge(ref, on="key", how="outer", suffixes=("", "_paper"), sort=False)
    order = [k for k in [*ours.key, *ref.key] if k]
    merged = merged.set_index("key").loc[list(dict.fromkeys(order))].reset_index()
    return pd.DataFrame({
        "variant": merged["key"],
        "peak acc. (%)": [_fmt_acc(a, e) for a, e in zip(merged.peak_acc, merged.peak_acc_std)],
        "sigma_mid (rel. err.)": [_fmt_mid(m, r) for m, r in zip(merged.sigma_mid, merged.rel_err)],
        "fit": merged["fit"].fillna("–"),
        "paper peak acc. (%)": merged["peak_acc_pct"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}"),
        "paper sigma_mid (rel. err.)": [_fmt_mid(m, r) for m, r in zip(merged.sigma_mid_paper, merged.rel_err_paper)],
    })


def architecture_stats(archs: tuple[str, ...] = ARCHS) -> pd.DataFrame:
    """Table II's first columns, measured on our fp32 models beside the printed ones (REFERENCE §4).

    Our counts come from :func:`paperlib.model_stats` (multiply-accumulates
    at 32x32, 10-class heads) and :func:`paperlib.noise_modules`; the paper's
    FLOPs/parameters are those of torchvision's 1000-class ImageNet models.
    """
    ref = paper.table_ii().set_index("arch")
    rows = []
    for arch in archs:
        st = model_stats(build_model(arch))
        rows.append({"arch": arch, "MACs (M)": round(st.macs / 1e6, 2), "paper FLOPs (M)": ref.loc[arch, "flops_m"],
                     "params (M)": round(st.params / 1e6, 3), "paper params (M)": ref.loc[arch, "params_m"],
                     "noisy layers": len(noise_modules(build_model(arch))), "paper noisy layers": ref.loc[arch, "noisy_layers"]})
    return pd.DataFrame(rows)


def compare_table_ii(summary: pd.DataFrame, archs: tuple[str, ...] = ARCHS) -> pd.DataFrame:
    """Table II: our fp32 peak accuracy and sigma_mid without/with noisy training beside the paper's, per architecture."""
    ref = paper.table_ii().set_index("arch")
    rows = []
    for arch in archs:
        clean, noisy = _row(summary, arch, "fp32"), _row(summary, arch, "fp32", "noisy")
        get = lambda r, c: math.nan if r is None else r[c]  # noqa: E731
        rows.append({"arch": arch, "model": ARCH_NAMES[arch],
                     "peak_acc": get(clean, "peak_acc"), "paper_peak_acc_pct": ref.loc[arch, "peak_acc_pct"],
                     "sigma_mid": get(clean, "sigma_mid"), "rel_err": get(clean, "rel_err"),
                     "paper_sigma_mid": ref.loc[arch, "sigma_mid"],
                     "sigma_mid_noisy": get(noisy, "sigma_mid"), "rel_err_noisy": get(noisy, "rel_err"),
                     "paper_sigma_mid_noisy": ref.loc[arch, "sigma_mid_noisy"],
                     "fit": get(clean, "fit"), "fit_noisy": get(noisy, "fit")})
    return pd.DataFrame(rows)
