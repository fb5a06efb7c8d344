"""The paper's experiments as lists of run specs, and their summaries (docs/protocol.md §7-8).

The notebooks call these: :func:`clean_specs` (Fig. 2, Table I: trained
without noise), :func:`noisy_specs` (Fig. 3: one network per training sigma,
evaluated at that sigma), :func:`curves` and :func:`summarize` (accuracy vs
sigma and the midpoint noise level per variant, error bars from the seeds),
and :func:`findings` / :func:`findings_report` (which of the paper's
findings a run shows: holds, does not hold or not resolved, with the numbers
and errors compared; docs/protocol.md §11).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..midpoint import MidpointFit, fit_midpoint_calibrated
from ..model_size import model_stats
from ..models import ARCH_NAMES, ARCHS, build_model
from ..noise import noise_modules
from ..runs.experiment import RunSpec
from ..runs.profile import Profile
from . import published as paper

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
    """fp32, then per bit width of the profile: dynamic scaling and the arch's constant scales (Fig. 2, Table I)."""
    return [(None, None)] + [(b, s) for b in profile.bits for s in (None, *profile.scales(arch))]


def noisy_variants(profile: Profile) -> list[Variant]:
    """fp32, then per bit width of ``noisy_bits``: dynamic scaling and the constant ``noisy_scale`` (Fig. 3)."""
    return [(None, None)] + [(b, s) for b in profile.noisy_bits for s in (None, profile.noisy_scale)]


def _seeds(profile: Profile, arch: str, seeds: int) -> range:
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


def label(df: pd.DataFrame) -> pd.DataFrame:
    """A :func:`paperlib.run_sweep` table with ``variant`` and ``regime`` (``clean`` / ``noisy`` training) added."""
    out = df.copy()
    out["variant"] = [variant_name(b, s) for b, s in zip(out["bits"], out["scale"])]
    out["regime"] = np.where(out["sigma_train"] > 0, "noisy", "clean")
    return out


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy vs sigma per curve: the mean over networks, its spread and its standard error (docs/protocol.md §11).

    Each network (a seed; with noisy training, one per training sigma and
    seed) is first averaged over its noise draws. ``acc_std`` is the spread
    over networks (with one network: over its noise draws), for display;
    ``acc_sem`` the standard error of the mean (``acc_std / sqrt(seeds)``, with
    one network ``/ sqrt(draws)``; NaN with one network and one draw).
    ``acc_seeds`` keeps each network's value: :func:`fit_curve` fits the curve
    from them. A diverged network (scored at chance by :func:`paperlib.run`)
    is a network like any other: it enters the means and is counted in
    ``diverged``. Failed runs (NaN accuracy: the run raised) are left out and
    counted in ``failed``.

    Returns:
        One row per arch, variant, regime and sigma, sorted by them: ``bits``,
        ``scale``, ``acc_mean``, ``acc_std``, ``acc_sem`` (fractions),
        ``seeds`` (networks at this sigma), ``draws`` (noise draws per network,
        the fewest), ``failed`` (seeds of the curve whose run failed),
        ``diverged`` (networks at this sigma that diverged) and ``acc_seeds``
        (a tuple: each network's accuracy, the same networks in the same seed
        order on every row of a curve, NaN where a network lacks this sigma).
    """
    df = label(df) if "variant" not in df else df
    keys = [*CURVE_KEYS, "bits", "scale", "sigma"]
    ok = df.dropna(subset=["accuracy"])
    ok = ok.assign(diverged=ok["diverged"].fillna(False).astype(bool) if "diverged" in ok else False)
    per_seed = (
        ok.groupby([*keys, "seed"], sort=False, dropna=False)
        .agg(
            acc=("accuracy", "mean"),
            draw_std=("accuracy", "std"),
            draws=("accuracy", "count"),
            diverged=("diverged", "any"),
        )
        .reset_index()
    )
    out = (
        per_seed.groupby(keys, sort=False, dropna=False)
        .agg(
            acc_mean=("acc", "mean"),
            seed_std=("acc", "std"),
            seeds=("acc", "count"),
            draw_std=("draw_std", "mean"),
            draws=("draws", "min"),
            diverged=("diverged", "sum"),
        )
        .reset_index()
    )
    many = out["seeds"] > 1
    out["acc_std"] = np.where(many, out["seed_std"], out["draw_std"])
    out["acc_sem"] = out["acc_std"] / np.sqrt(np.where(many, out["seeds"], out["draws"]))
    vectors = []
    for curve, g in per_seed.groupby(CURVE_KEYS, sort=False):
        wide = g.pivot(index="sigma", columns="seed", values="acc").sort_index(axis=1)  # sigma x seed
        vectors.append(
            pd.DataFrame(
                {
                    **dict(zip(CURVE_KEYS, curve)),
                    "sigma": wide.index.to_numpy(),
                    "acc_seeds": [tuple(map(float, r)) for r in wide.to_numpy()],
                }
            )
        )
    if vectors:
        out = out.merge(pd.concat(vectors, ignore_index=True), on=[*CURVE_KEYS, "sigma"], how="left")
    else:
        out["acc_seeds"] = pd.Series(dtype=object)
    failed = df[df["accuracy"].isna()].groupby(CURVE_KEYS, sort=False)["seed"].nunique().rename("failed")
    out = out.merge(failed, left_on=CURVE_KEYS, right_index=True, how="left").fillna({"failed": 0})
    out = out.astype({"failed": int, "diverged": int, "seeds": int, "draws": int})
    columns = [*keys, "acc_mean", "acc_std", "acc_sem", "seeds", "draws", "failed", "diverged", "acc_seeds"]
    return out[columns].sort_values([*CURVE_KEYS, "sigma"], kind="stable").reset_index(drop=True)


def fit_curve(rows: pd.DataFrame, a_min: float = 0.1) -> MidpointFit:
    """The midpoint noise level of one curve, with a calibrated error (docs/protocol.md §3, §11).

    :func:`paperlib.midpoint.fit_midpoint_calibrated` on the curve's
    per-network accuracies (``acc_seeds``): the mean curve is fitted, and
    the error of ``sigma_mid`` comes from the spread of the networks (N - 1
    degrees of freedom; ``ci95`` uses the Student-t quantile), or with one
    network from the fit residuals (then it speaks for that network only).

    Args:
        rows: one curve's rows of :func:`curves` (one arch, variant and regime), any order.
        a_min: the accuracy the curve falls to (chance: 0.1 on CIFAR-10).

    Returns:
        A :class:`paperlib.MidpointFit`; not ok, with the reason, when the curve defines no midpoint.
    """
    missing = {"sigma", "acc_seeds"} - set(rows.columns)
    if missing:
        raise ValueError(f"rows lack the column(s) {', '.join(sorted(missing))}; pass one curve's rows of curves()")
    curve_ids = rows[[k for k in CURVE_KEYS if k in rows]].drop_duplicates()
    if len(curve_ids) > 1:
        raise ValueError(f"rows hold {len(curve_ids)} curves; pass the rows of one arch, variant and regime")
    if rows.empty:
        raise ValueError("rows is empty; pass one curve's rows of curves()")
    rows = rows.sort_values("sigma")
    acc = [tuple(v) if isinstance(v, (tuple, list, np.ndarray)) else () for v in rows["acc_seeds"]]
    if len({len(v) for v in acc}) != 1 or not acc[0]:
        raise ValueError(
            "acc_seeds must hold one value per network, equally many on every row of the curve; "
            "pass the rows of curves() unchanged"
        )
    return fit_midpoint_calibrated(rows["sigma"].to_numpy(dtype=float), np.array(acc, dtype=float).T, a_min=a_min)


#: Chance accuracy on CIFAR-10 (ten balanced classes): where a collapsed model sits (docs/protocol.md §3).
CHANCE: float = 0.1
#: A peak accuracy within this of chance is a model at chance (as in :func:`paperlib.fit_midpoint`'s ``min_span``).
CHANCE_SPAN: float = 0.05
#: Images of the full CIFAR-10 test set: the test set of a run whose ``test_subset`` is None.
TEST_IMAGES: int = 10_000
#: What a curve whose networks all diverged is (docs/protocol.md §11).
COLLAPSED_DIVERGED: str = "collapsed: diverged (NaN loss)"


def _network_table(g: pd.DataFrame) -> pd.DataFrame:
    """One row per network of one curve's sweep rows (a network: a training sigma and a seed).

    Columns ``clean`` (its noise-free test accuracy, NaN when unknown),
    ``diverged`` (training loss became NaN/inf), ``failed`` (the run raised:
    no noisy accuracy) and ``test_images`` (size of the test set it was scored on).
    """
    defaults = {"clean_accuracy": math.nan, "diverged": False, "test_subset": math.nan, "sigma_train": 0.0, "seed": 0}
    g = g.assign(**{k: v for k, v in defaults.items() if k not in g})
    g = g.assign(
        diverged=g["diverged"].fillna(False).astype(bool),
        test_subset=pd.to_numeric(g["test_subset"], errors="coerce").fillna(TEST_IMAGES),
    )
    nets = g.groupby(["sigma_train", "seed"], sort=False, dropna=False).agg(
        clean=("clean_accuracy", "first"),
        diverged=("diverged", "any"),
        test_images=("test_subset", "first"),
        scored=("accuracy", lambda a: bool(a.notna().any())),
    )
    nets["failed"] = ~nets.diverged & ~nets.scored
    return nets.reset_index()


def _peak(nets: pd.DataFrame) -> tuple[float, float, float]:
    """Peak accuracy of a curve's networks: (mean, spread over seeds, standard error); see :func:`summarize`."""
    known = nets.dropna(subset=["clean"])
    if known.empty:
        return math.nan, math.nan, math.nan
    per_sigma = known.groupby("sigma_train", sort=True)["clean"].agg(["mean", "std", "count"])
    best = per_sigma["mean"].idxmax()
    mean, std, n = (float(v) for v in per_sigma.loc[best, ["mean", "std", "count"]])
    images = float(known.loc[known.sigma_train == best, "test_images"].iloc[0])
    p = (mean * images + 1) / (images + 2)  # Laplace's rule: a perfect score still has an error
    test_se = math.sqrt(p * (1 - p) / images / n)
    seed_se = std / math.sqrt(n) if n > 1 and math.isfinite(std) else 0.0
    return mean, (std if n > 1 else math.nan), max(seed_se, test_se)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve: peak accuracy, the midpoint noise level (docs/protocol.md §3) and diverged networks (§11).

    Peak accuracy is, as in the paper, the **noise-free** test accuracy: each
    network's ``clean_accuracy`` (sigma 0), averaged over its seeds;
    ``peak_acc_std`` is the spread over seeds (NaN with one network) and
    ``peak_acc_err`` the standard error of the mean: the larger of the spread
    over seeds / sqrt(n) and the test set's binomial error
    sqrt(p (1 - p) / test images / n), p = (correct + 1) / (test images + 2)
    (so one network, or a perfect score, still has an error bar).
    A noisy-trained curve has one network per training sigma; its peak is that
    of its best training sigma. ``best_grid_acc`` is the highest mean accuracy
    on the noisy grid, which starts at sigma > 0 and so lies below the peak
    for steep curves. Tables without ``clean_accuracy`` get NaN peaks.

    A diverged network (NaN loss) is scored at chance by :func:`paperlib.run`
    and enters the means and the fit, as in the authors' code; ``diverged``
    says how many of the curve's networks diverged ("1 of 2"). A curve whose
    networks all diverged is not fitted: ``fit`` says ``"collapsed: diverged
    (NaN loss)"``. ``sigma_mid`` and its standard error come from the fit of
    the curve's rows of :func:`curves`; a failed fit has ``fit_ok`` False, NaN
    ``sigma_mid`` and the reason in ``fit``. ``collapsed``: a model at chance
    (every network diverged, a peak within 0.05 of chance, or no curve at all).

    Returns:
        One row per arch, variant and regime: ``bits``, ``scale``, ``seeds``,
        ``networks`` (trained, diverged ones included), ``n_diverged``,
        ``diverged`` (str), ``failed`` (networks whose run raised),
        ``peak_acc``, ``peak_acc_std``, ``peak_acc_err``, ``best_grid_acc``
        (fractions), ``sigma_mid``, ``sigma_mid_err``, ``rel_err``, ``fit``,
        ``fit_ok``, ``collapsed``.
    """
    labelled = label(df) if "variant" not in df else df
    by_curve = dict(iter(curves(labelled).groupby(CURVE_KEYS, sort=False)))
    rows = []
    for (arch, variant, regime), g in labelled.groupby(CURVE_KEYS, sort=False):
        cg = by_curve.get((arch, variant, regime), pd.DataFrame())
        nets = _network_table(g)
        trained = nets[~nets.failed]
        k, n = int(trained.diverged.sum()), len(trained)
        peak, peak_std, peak_err = _peak(trained)
        best_grid = float(cg["acc_mean"].max()) if not cg.empty else math.nan
        base = {
            "arch": arch,
            "variant": variant,
            "regime": regime,
            "bits": g["bits"].iloc[0],
            "scale": g["scale"].iloc[0],
            "seeds": int(nets.seed.nunique()),
            "networks": n,
            "n_diverged": k,
            "diverged": f"{k} of {n}",
            "failed": int(nets.failed.sum()),
            "peak_acc": peak,
            "peak_acc_std": peak_std,
            "peak_acc_err": peak_err,
            "best_grid_acc": best_grid,
        }
        if cg.empty or (n and k == n):
            reason = COLLAPSED_DIVERGED if n and k == n else "no curve: every run failed"
            rows.append(
                {
                    **base,
                    "sigma_mid": math.nan,
                    "sigma_mid_err": math.nan,
                    "rel_err": math.nan,
                    "fit": reason,
                    "fit_ok": False,
                    "collapsed": True,
                }
            )
            continue
        fit = fit_curve(cg)
        level = peak if math.isfinite(peak) else best_grid
        rows.append(
            {
                **base,
                "sigma_mid": fit.sigma_mid,
                "sigma_mid_err": fit.sigma_mid_err,
                "rel_err": fit.rel_err,
                "fit": str(fit),
                "fit_ok": fit.ok,
                "collapsed": bool(level - CHANCE < CHANCE_SPAN),
            }
        )
    return pd.DataFrame(rows)


def _row(summary: pd.DataFrame, arch: str, variant: str, regime: str = "clean") -> pd.Series | None:
    hit = summary[(summary.arch == arch) & (summary.variant == variant) & (summary.regime == regime)]
    return None if hit.empty else hit.iloc[0]


def _usable(row: pd.Series | None) -> bool:
    return row is not None and bool(row["fit_ok"])


def _constant_rows(summary: pd.DataFrame, arch: str, bits: int) -> pd.DataFrame:
    rows = summary[
        (summary.arch == arch) & (summary.regime == "clean") & (summary.bits == bits) & summary.scale.notna()
    ]
    return rows.sort_values("scale")


#: Verdicts of :func:`findings`.
HOLDS, FAILS, UNRESOLVED = "holds", "does not hold", "not resolved"
#: Two numbers differ when their difference exceeds this many combined standard errors (docs/protocol.md §11).
SIGNIFICANCE: float = 2.0
#: A variant works when its peak keeps at least this fraction of fp32's accuracy above chance (findings 1-2).
WORKING_FRACTION: float = 0.5
_SIGN = {1: ">", -1: "<", 0: "≈"}
_RULE = f"'>'/'<': differs by more than {SIGNIFICANCE:g} combined standard errors, '≈': within them"
Finding = tuple[str, str, str]


def _cmp(a: float, a_err: float, b: float, b_err: float) -> int:
    """+1 when ``a`` exceeds ``b`` by more than SIGNIFICANCE combined standard errors, -1 when ``b`` exceeds ``a`` so,
    else 0 (also when an error is unknown)."""
    se = math.hypot(a_err, b_err)
    if not (math.isfinite(se) and math.isfinite(a) and math.isfinite(b)):
        return 0
    return 1 if a - b > SIGNIFICANCE * se else -1 if b - a > SIGNIFICANCE * se else 0


def _acc(r) -> str:
    """Peak accuracy in % with its standard error."""
    return "–" if pd.isna(r.peak_acc) else f"{100 * r.peak_acc:.1f} ± {100 * r.peak_acc_err:.1f}%"


def _mid(r) -> str:
    """sigma_mid with its standard error."""
    return f"{r.sigma_mid:.3g} ± {r.sigma_mid_err:.2g}" if r.fit_ok else str(r.fit)


def _floor(fp32) -> float:
    """The lowest peak accuracy of a working variant: half of fp32's accuracy above chance kept."""
    return CHANCE + WORKING_FRACTION * (fp32.peak_acc - CHANCE)


def _works(r, floor: float) -> bool:
    return r is not None and bool(r.fit_ok) and not bool(r.collapsed) and bool(r.peak_acc >= floor)


def _fp32_floor(summary: pd.DataFrame, arch: str) -> tuple[float, str] | None:
    fp32 = _row(summary, arch, "fp32")
    if fp32 is None or pd.isna(fp32.peak_acc):
        return None
    if fp32.collapsed:  # no reference: nothing can be called working
        return math.inf, f"fp32 is at chance (peak {_acc(fp32)}; {fp32.fit}): no reference for a working variant"
    floor = _floor(fp32)
    return floor, (
        f"working = peak accuracy >= {100 * floor:.1f}% (half of fp32's {100 * fp32.peak_acc:.1f}% above chance kept)"
    )


def _left_out(const: pd.DataFrame, floor: float) -> str:
    bad = [r for r in const.itertuples() if not _works(r, floor)]
    if not bad:
        return ""
    return "; not working, left out: " + ", ".join(
        f"s={r.scale:g} ({'collapsed' if r.collapsed else _acc(r)}{', diverged ' + r.diverged if r.n_diverged else ''})"
        for r in bad
    )


def _f1(summary: pd.DataFrame) -> list[Finding]:
    """Finding 1. Only working variants (:data:`WORKING_FRACTION` of fp32's accuracy above chance; with fp32 itself
    at chance there is no reference, and both statements are not resolved) are compared.
    (a) constant > dynamic: holds when every working constant scale's sigma_mid is significantly above dynamic
    scaling's, does not hold when one is significantly below, else not resolved. (b) dynamic < fp32: holds when
    dynamic's sigma_mid is significantly below fp32's, does not hold when significantly above, else not resolved."""
    out = []
    for arch in summary.arch.unique():
        fp32, limit = _row(summary, arch, "fp32"), _fp32_floor(summary, arch)
        if limit is None:
            continue
        floor, rule = limit
        for bits in sorted(summary.loc[summary.arch == arch, "bits"].dropna().unique()):
            dyn, const = _row(summary, arch, variant_name(bits, None)), _constant_rows(summary, arch, bits)
            if dyn is None:
                continue
            what = f"{arch} {int(bits)}-bit"
            if math.isinf(floor):
                out += [
                    (f"{what}: {s}", UNRESOLVED, rule)
                    for s in (["constant scaling raises sigma_mid above dynamic scaling"] if len(const) else [])
                    + ["dynamic scaling is less robust than fp32"]
                ]
                continue
            dyn_note = "" if _works(dyn, floor) else f"dynamic scaling does not work (peak {_acc(dyn)}, {dyn.fit}); "
            if len(const):
                statement = f"{what}: constant scaling raises sigma_mid above dynamic scaling"
                work = [r for r in const.itertuples() if _works(r, floor)]
                if dyn_note or not work:
                    out.append(
                        (
                            statement,
                            UNRESOLVED,
                            dyn_note + ("" if work else "no working constant scale; ") + rule + _left_out(const, floor),
                        )
                    )
                else:
                    signs = [_cmp(r.sigma_mid, r.sigma_mid_err, dyn.sigma_mid, dyn.sigma_mid_err) for r in work]
                    verdict = FAILS if -1 in signs else HOLDS if all(s == 1 for s in signs) else UNRESOLVED
                    out.append(
                        (
                            statement,
                            verdict,
                            f"sigma_mid: dynamic {_mid(dyn)}; "
                            + ", ".join(f"s={r.scale:g} {_mid(r)} ({_SIGN[s]})" for r, s in zip(work, signs))
                            + f"; {_RULE}; {rule}{_left_out(const, floor)}",
                        )
                    )
            statement = f"{what}: dynamic scaling is less robust than fp32"
            if dyn_note or not _usable(fp32):
                out.append((statement, UNRESOLVED, dyn_note + f"fp32 {_mid(fp32)}; {rule}"))
            else:
                s = _cmp(dyn.sigma_mid, dyn.sigma_mid_err, fp32.sigma_mid, fp32.sigma_mid_err)
                out.append(
                    (
                        statement,
                        HOLDS if s == -1 else FAILS if s == 1 else UNRESOLVED,
                        f"sigma_mid: dynamic {_mid(dyn)} {_SIGN[s]} fp32 {_mid(fp32)}; {_RULE}",
                    )
                )
    return out


def _f2(summary: pd.DataFrame) -> list[Finding]:
    """Finding 2, between the smallest and the largest working constant scale (as in finding 1): holds when the
    peak accuracy falls AND sigma_mid rises, each by more than SIGNIFICANCE combined standard errors; does not hold
    when either significantly moves the other way; else not resolved. Collapsed larger scales are listed."""
    out = []
    for arch in summary.arch.unique():
        limit = _fp32_floor(summary, arch)
        if limit is None:
            continue
        floor, rule = limit
        for bits in sorted(summary.loc[summary.arch == arch, "bits"].dropna().unique()):
            const = _constant_rows(summary, arch, bits)
            if len(const) < 2:
                continue
            statement = f"{arch} {int(bits)}-bit: a larger constant scale trades peak accuracy for robustness"
            work = [r for r in const.itertuples() if _works(r, floor)]
            if math.isinf(floor) or len(work) < 2:
                out.append(
                    (
                        statement,
                        UNRESOLVED,
                        rule
                        if math.isinf(floor)
                        else f"fewer than two working constant scales; {rule}{_left_out(const, floor)}",
                    )
                )
                continue
            lo, hi = work[0], work[-1]
            acc = _cmp(lo.peak_acc, lo.peak_acc_err, hi.peak_acc, hi.peak_acc_err)  # +1: accuracy falls
            mid = _cmp(hi.sigma_mid, hi.sigma_mid_err, lo.sigma_mid, lo.sigma_mid_err)  # +1: robustness rises
            verdict = HOLDS if acc == 1 and mid == 1 else FAILS if -1 in (acc, mid) else UNRESOLVED
            out.append(
                (
                    statement,
                    verdict,
                    f"s={lo.scale:g} -> s={hi.scale:g}: peak accuracy {_acc(lo)} {_SIGN[acc]} {_acc(hi)}, "
                    f"sigma_mid {_mid(lo)} {_SIGN[-mid]} {_mid(hi)}; {_RULE}; {rule}{_left_out(const, floor)}",
                )
            )
    return out


def _f3(summary: pd.DataFrame) -> list[Finding]:
    """Finding 3, on Fig. 2 (c)'s trade-off: the (peak accuracy, sigma_mid) points of LeNet-5's 4-bit and 8-bit
    variants (dynamic and constant scaling; fitted, not collapsed). A 4-bit point is *covered* when some 8-bit point
    is at least as good in both, within SIGNIFICANCE combined standard errors, and *beaten* when that 8-bit point is
    also significantly better in one. Holds when every 4-bit point is covered and one is beaten; does not hold when
    a 4-bit point is not covered (4-bit reaches a trade-off 8-bit does not); else not resolved."""
    pts = summary[(summary.arch == "lenet5") & (summary.regime == "clean") & summary.fit_ok & ~summary.collapsed]
    p8, p4 = list(pts[pts.bits == 8].itertuples()), list(pts[pts.bits == 4].itertuples())
    if not p8 or not p4:
        return []
    status, notes = [], []
    for r4 in p4:
        best, by = "not covered", None
        for r8 in p8:
            a = _cmp(r8.peak_acc, r8.peak_acc_err, r4.peak_acc, r4.peak_acc_err)
            m = _cmp(r8.sigma_mid, r8.sigma_mid_err, r4.sigma_mid, r4.sigma_mid_err)
            if a >= 0 and m >= 0:
                kind = "beaten" if 1 in (a, m) else "covered"
                if best != "beaten":
                    best, by = kind, r8
        status.append(best)
        notes.append(
            f"{r4.variant} ({_acc(r4)}, {_mid(r4)}): {best}"
            + (f" by {by.variant} ({_acc(by)}, {_mid(by)})" if by is not None else "")
        )
    verdict = FAILS if "not covered" in status else HOLDS if "beaten" in status else UNRESOLVED
    return [
        (
            "lenet5: 8-bit beats 4-bit on both accuracy and robustness (Fig. 2 (c) trade-off)",
            verdict,
            "; ".join(notes) + f"; covered = an 8-bit point at least as good in peak accuracy and sigma_mid "
            f"within {SIGNIFICANCE:g} combined standard errors, beaten = and significantly better in one",
        )
    ]


def _f4(summary: pd.DataFrame, gain: float = 5.0, tolerance: float = 0.25) -> list[Finding]:
    """Finding 4. (a) fp32's sigma_mid with noisy training over without: holds when the ratio exceeds ``gain``
    by more than SIGNIFICANCE standard errors (in log), does not hold when it falls short so, else not resolved.
    (b) with noisy training, each quantized variant's sigma_mid *matches* fp32's when their ratio is within
    ``tolerance`` (25%) and SIGNIFICANCE standard errors of the log ratio are within it too (errors small enough to
    tell), *differs* when the ratio lies beyond the tolerance by more than SIGNIFICANCE standard errors; holds
    when all match, does not hold when one differs, else not resolved."""
    out, band = [], math.log1p(tolerance)
    for arch in summary.arch.unique():
        clean, noisy = _row(summary, arch, "fp32"), _row(summary, arch, "fp32", "noisy")
        if clean is not None and noisy is not None:
            statement = f"{arch}: noisy training raises sigma_mid by about an order of magnitude (here: >= {gain:g}x)"
            if _usable(clean) and _usable(noisy):
                ratio, se = noisy.sigma_mid / clean.sigma_mid, math.hypot(clean.rel_err, noisy.rel_err)
                d = math.log(ratio / gain)
                verdict = HOLDS if d > SIGNIFICANCE * se else FAILS if -d > SIGNIFICANCE * se else UNRESOLVED
                out.append(
                    (
                        statement,
                        verdict,
                        f"fp32 sigma_mid {_mid(clean)} -> {_mid(noisy)} with noisy training: "
                        f"{ratio:.2g}x ± {100 * se:.0f}% (needs >= {gain:g}x by {SIGNIFICANCE:g} standard errors)",
                    )
                )
            else:
                out.append((statement, UNRESOLVED, f"fp32 without noisy training {_mid(clean)}; with {_mid(noisy)}"))
        quant = summary[(summary.arch == arch) & (summary.regime == "noisy") & summary.bits.notna()]
        if noisy is None or quant.empty:
            continue
        statement = (
            f"{arch}: with noisy training, quantized and fp32 models are equally robust "
            f"(sigma_mid within {tolerance:.0%})"
        )
        if not _usable(noisy):
            out.append((statement, UNRESOLVED, f"fp32 with noisy training: {_mid(noisy)}"))
            continue
        kinds, notes = [], []
        for q in quant.itertuples():
            if not q.fit_ok:
                kinds.append("not resolved")
                notes.append(f"{q.variant} {_mid(q)}")
                continue
            d, se = math.log(q.sigma_mid / noisy.sigma_mid), math.hypot(q.rel_err, noisy.rel_err)
            kind = (
                "differs"
                if abs(d) - SIGNIFICANCE * se > band
                else "matches"
                if abs(d) <= band and SIGNIFICANCE * se <= band
                else "not resolved"
            )
            kinds.append(kind)
            notes.append(f"{q.variant} {_mid(q)}: {math.exp(d):.2f}x ± {100 * se:.0f}%, {kind}")
        verdict = FAILS if "differs" in kinds else HOLDS if all(k == "matches" for k in kinds) else UNRESOLVED
        out.append(
            (
                statement,
                verdict,
                f"fp32 {_mid(noisy)}; "
                + "; ".join(notes)
                + f"; matches = ratio within {tolerance:.0%} and {SIGNIFICANCE:g} standard errors within it too, "
                f"differs = beyond {tolerance:.0%} by more than {SIGNIFICANCE:g} standard errors",
            )
        )
    return out


def _f5(summary: pd.DataFrame) -> list[Finding]:
    """Finding 5, on fp32 trained without noise: VGG-11's sigma_mid below LeNet-5's, ResNet-18's above VGG-11's;
    each holds when significant (SIGNIFICANCE combined standard errors), does not hold when significantly the other
    way, else not resolved. Needs both architectures' curves."""
    rows = {a: _row(summary, a, "fp32") for a in ("lenet5", "vgg11", "resnet18")}
    out = []
    for low, high, statement in (
        ("vgg11", "lenet5", "deeper plain VGG-11 is less robust than LeNet-5"),
        ("vgg11", "resnet18", "skip connections help: ResNet-18 is more robust than VGG-11"),
    ):
        a, b = rows[high], rows[low]
        if a is None or b is None:
            continue
        names = f"fp32 sigma_mid: {ARCH_NAMES[high]} {_mid(a)}"
        if not (_usable(a) and _usable(b)):
            out.append((statement, UNRESOLVED, f"{names}, {ARCH_NAMES[low]} {_mid(b)}"))
            continue
        s = _cmp(a.sigma_mid, a.sigma_mid_err, b.sigma_mid, b.sigma_mid_err)
        out.append(
            (
                statement,
                HOLDS if s == 1 else FAILS if s == -1 else UNRESOLVED,
                f"{names} {_SIGN[s]} {ARCH_NAMES[low]} {_mid(b)}; {_RULE}",
            )
        )
    return out


def findings(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's findings (docs/protocol.md §8) that ``summary`` (from :func:`summarize`) can test, each checked.

    Each statement gets a verdict, ``"holds"``, ``"does not hold"`` or ``"not
    resolved"``, by the decision rule of its check (``_f1`` ... ``_f5``,
    docs/protocol.md §11): differences count only beyond
    :data:`SIGNIFICANCE` combined standard errors (``sigma_mid_err`` of the
    fits, ``peak_acc_err`` of the peaks), so a run too noisy to tell says
    "not resolved". Statements whose curves are missing are left out.

    Returns:
        One row per testable statement: ``finding`` (1-5), ``statement``,
        ``verdict`` and ``evidence`` (the numbers compared, their standard
        errors and the rule).
    """
    rows = [(n, s, v, e) for n, check in enumerate((_f1, _f2, _f3, _f4, _f5), start=1) for s, v, e in check(summary)]
    return pd.DataFrame(rows, columns=["finding", "statement", "verdict", "evidence"])


def findings_report(summary: pd.DataFrame) -> str:
    """:func:`findings` as Markdown: a table of verdicts with their evidence, or one sentence when none is testable.

    For notebooks: ``display(Markdown(rp.findings_report(summary)))``.
    """
    f = findings(summary)
    if f.empty:
        return (
            "None of the paper's findings (docs/protocol.md §8) can be tested with this run: "
            "the curves they compare are not in it."
        )
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        f"Verdicts count a difference only beyond {SIGNIFICANCE:g} combined standard errors (docs/protocol.md §11).",
        "",
        "| finding | statement | verdict | evidence |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.finding} | {cell(r.statement)} | **{r.verdict}** | {cell(r.evidence)} |" for r in f.itertuples()]
    return "\n".join(lines)


def _fmt_acc(acc: float, spread: float) -> str:
    """Accuracy in % with one decimal, as the paper prints it, and its spread over seeds ("± x" only with several)."""
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


def compare_table_i(summary: pd.DataFrame, arch: str) -> pd.DataFrame:
    """Our Table I rows for ``arch`` (clean training) beside the paper's, matched on bits and scale.

    Peak accuracy: noise-free, in % with one decimal (± spread over seeds);
    sigma_mid with three significant digits and its relative error;
    ``diverged``: networks whose training diverged (docs/protocol.md §11).
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
            "peak acc. (%)": [_fmt_acc(a, e) for a, e in zip(merged.peak_acc, merged.peak_acc_std)],
            "sigma_mid (rel. err.)": [_fmt_mid(m, r) for m, r in zip(merged.sigma_mid, merged.rel_err)],
            "diverged": merged["diverged"].fillna("–"),
            "fit": merged["fit"].fillna("–"),
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


def compare_table_ii(summary: pd.DataFrame, archs: tuple[str, ...] = ARCHS) -> pd.DataFrame:
    """Table II: our fp32 peak accuracy and sigma_mid without/with noisy training beside the paper's, per architecture.

    Display columns as in :func:`compare_table_i` (peak accuracy noise-free, in %
    with one decimal; sigma_mid with three significant digits and its relative
    error; ``diverged`` networks, docs/protocol.md §11), then the numbers for
    :func:`paperlib.plotting.plot_midpoints`: ``sigma_mid``, ``sigma_mid_err``,
    ``rel_err``, ``sigma_mid_noisy``, ``sigma_mid_noisy_err``, ``rel_err_noisy``,
    ``paper_sigma_mid``, ``paper_sigma_mid_noisy`` (absolute sigma).
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
                "peak acc. (%)": _fmt_acc(get(clean, "peak_acc"), get(clean, "peak_acc_std")),
                "paper peak acc. (%)": f"{ref.loc[arch, 'peak_acc_pct']:.1f}",
                "sigma_mid (rel. err.)": _fmt_mid(get(clean, "sigma_mid"), get(clean, "rel_err")),
                "paper sigma_mid": _fmt_paper_mid(ref.loc[arch, "sigma_mid"]),
                "sigma_mid, noisy training (rel. err.)": _fmt_mid(get(noisy, "sigma_mid"), get(noisy, "rel_err")),
                "paper sigma_mid, noisy training": _fmt_paper_mid(ref.loc[arch, "sigma_mid_noisy"]),
                "diverged": "–" if clean is None else clean["diverged"],
                "diverged, noisy training": "–" if noisy is None else noisy["diverged"],
                "fit": "–" if clean is None else clean["fit"],
                "fit, noisy training": "–" if noisy is None else noisy["fit"],
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
    return pd.DataFrame(rows)
