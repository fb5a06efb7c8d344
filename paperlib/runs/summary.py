"""Generic aggregation of sweep tables: curves per variant, midpoint fits and per-curve summaries.

Engine layer (docs/protocol.md §3, §11): it knows sweep tables (the output
of :func:`paperlib.runs.sweep.run_sweep`), not the paper. :func:`label` names
each row's curve, :func:`curves` averages accuracy vs sigma per curve (error
bars from the seeds), :func:`fit_curve` fits one curve's midpoint noise
level, :func:`summarize` gives per curve its peak accuracy, ``sigma_mid`` and
diverged networks, and :func:`summary_row` picks one row of a summary.
No matplotlib, no :mod:`paperlib.paper`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..midpoint import MidpointFit, fit_midpoint_calibrated

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



def summary_row(summary: pd.DataFrame, arch: str, variant: str, regime: str = "clean") -> pd.Series | None:
    """The row of :func:`summarize`'s ``summary`` for one curve (``variant`` as :func:`variant_name` spells it,
    ``regime`` ``"clean"`` or ``"noisy"``), or None when the run has no such curve."""
    hit = summary[(summary.arch == arch) & (summary.variant == variant) & (summary.regime == regime)]
    return None if hit.empty else hit.iloc[0]
