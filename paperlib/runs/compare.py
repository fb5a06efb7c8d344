"""Does a rerun reproduce a figure? Two sweep tables compared network by network (docs/protocol.md §12).

A figure's CSV (``figures/<profile>/fig2_lenet5_qat.csv`` and the like) has
one row per network, noise level and noise draw, with each network's cache
key. Whoever trains the same specs from their seeds makes networks with the
same keys; on another CPU instruction set, another torch build or a GPU,
the last bits of a training step differ, and after thousands of steps so do
the networks. :func:`compare_sweeps` matches the networks of two such
tables by key and gives, per network and way it was evaluated (noise kind,
site; :data:`CURVE_FIELDS`), both clean accuracies (and their difference in
test images), both ``sigma_mid`` (each curve's own fit,
:func:`paperlib.midpoint.fit_midpoint_calibrated`) and the largest
difference between its two noise curves. :func:`seed_spread` gives what
the networks of one spec that differ only in their seed spread over, within
one table: the yardstick for a difference between two machines.
:func:`reproduction_summary` puts both in a few numbers.

    python -m paperlib.runs.compare figures/quick/fig2_lenet5_qat.csv my-figures/fig2_lenet5_qat.csv
    python -m paperlib.runs.compare figures/quick my-figures        # every sweep CSV both folders hold

Engine layer: it reads sweep tables, not the paper. No matplotlib.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..midpoint import fit_midpoint_calibrated
from .spec import EVALUATION_FIELDS, RunSpec
from .summary import TEST_IMAGES, variant_name

#: Columns a sweep table must have to be compared network by network.
NEEDED: tuple[str, ...] = ("key", "seed", "clean_accuracy", "sigma", "accuracy")
#: Columns that say what made a table's networks (shown beside the comparison when present).
MADE_BY: tuple[str, ...] = ("revision", "code", "device", "torch")
#: A spec's fields: the columns that identify a network, with ``seed``.
SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunSpec))
#: The columns that tell one curve of a network from another (its noise kind, noise site, test subset): a table may
#: evaluate one trained network (one ``key``) several ways, e.g. notebook 07's four noise kinds.
CURVE_FIELDS: tuple[str, ...] = tuple(f for f in EVALUATION_FIELDS if f not in ("sigmas", "repeats"))


def read_sweep_csv(path: str | Path) -> pd.DataFrame:
    """A figure's sweep CSV (its caption and fingerprint lines start with ``#``), checked for :data:`NEEDED`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a figure's sweep CSV, e.g. "
                                f"figures/quick/fig2_lenet5_qat.csv")
    df = pd.read_csv(path, comment="#")
    _check_columns(df, str(path))
    return df


def _check_columns(df: pd.DataFrame, name: str) -> None:
    missing = [c for c in NEEDED if c not in df]
    if missing:
        raise ValueError(
            f"{name} lacks the column(s) {', '.join(missing)}; pass a sweep table with one row per network, sigma "
            f"and noise draw (a figure's CSV such as figures/quick/fig2_lenet5_qat.csv), not a summary table"
        )


def _test_images(g: pd.DataFrame) -> int:
    """The test images a network was scored on: its evaluation subset, else its test subset, else all 10,000."""
    for col in ("eval_test_subset", "test_subset"):
        if col in g:
            v = pd.to_numeric(g[col], errors="coerce").dropna()
            if len(v):
                return int(v.iloc[0])
    return TEST_IMAGES


def _label(r: pd.Series) -> str:
    """What a network is, its seed aside: ``lenet5 8-bit s=1``, ``lenet5 fp32 trained at sigma 0.1``."""
    bits = None if pd.isna(r.get("bits", math.nan)) else r["bits"]
    scale = None if pd.isna(r.get("scale", math.nan)) else r["scale"]
    text = f"{r.get('arch', '')} {variant_name(bits, scale)}".strip()
    sigma_train = r.get("sigma_train", 0.0)
    if pd.notna(sigma_train) and float(sigma_train) > 0:
        text += f" trained at sigma {float(sigma_train):g}"
    kind = r.get("noise_kind", "additive")
    if isinstance(kind, str) and kind != "additive":
        text += f", {kind} noise"
    site = r.get("noise_site", math.nan)
    if pd.notna(site):
        text += f", noise at site {int(site)}"
    return text


def networks(df: pd.DataFrame) -> pd.DataFrame:
    """One row per curve of a sweep table: a network (cache key) and how it was evaluated (:data:`CURVE_FIELDS`).

    Columns: ``curve_id`` (the key, and the evaluation settings where the table has them), ``key``, ``label``,
    ``seed``, ``group`` (the spec without its seed), ``clean`` (clean accuracy, fraction), ``test_images``,
    ``sigma_mid`` (NaN where the curve defines none: at chance, say) and ``curve`` (accuracy per sigma, averaged
    over noise draws; a Series).
    """
    _check_columns(df, "the table")
    spec_cols = [c for c in SPEC_FIELDS if c in df and c != "seed"]
    eval_cols = [c for c in CURVE_FIELDS if c in df]
    # positional (a table made by concat may repeat its index), and "nan" for a missing value (pandas' astype(str)
    # keeps it missing)
    ids = ["|".join(str(v) for v in values) for values in zip(*(df[c].tolist() for c in ["key", *eval_cols]))]
    rows = []
    for curve_id, g in df.groupby(ids, sort=False):
        first = g.iloc[0]
        curve = g.groupby("sigma", sort=True)["accuracy"].mean()
        fit = fit_midpoint_calibrated(curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float))
        rows.append({
            "curve_id": curve_id,
            "key": first["key"],
            "label": _label(first),
            "seed": int(first["seed"]),
            "group": tuple(None if pd.isna(first[c]) else first[c] for c in spec_cols),
            "clean": float(first["clean_accuracy"]),
            "test_images": _test_images(g),
            "sigma_mid": fit.sigma_mid if fit.ok else math.nan,
            "curve": curve,
        })
    return pd.DataFrame(rows, columns=["curve_id", "key", "label", "seed", "group", "clean", "test_images",
                                       "sigma_mid", "curve"])


def compare_sweeps(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The networks of sweep table ``a`` and ``b`` with the same cache key, side by side, a row per curve (a network
    evaluated two ways, e.g. under two noise kinds, has two rows).

    Columns: ``key``, ``label``, ``seed``, ``clean_a``, ``clean_b`` (fractions), ``clean_images`` (``|a - b|`` in
    test images), ``sigma_mid_a``, ``sigma_mid_b``, ``sigma_mid_ratio`` (``b / a``; NaN where either has no
    midpoint), ``curve_max_diff`` (the largest ``|a - b|`` of the mean accuracy at a sigma both have, a
    fraction) and ``identical`` (clean accuracy and every shared curve point equal to the last bit). Sorted with
    the largest ``sigma_mid`` differences first. Raises ``ValueError`` when the tables share no network.
    """
    return _side_by_side(networks(a), networks(b))


def _side_by_side(na: pd.DataFrame, nb: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare_sweeps` on two tables' :func:`networks` (each fitted once by the caller)."""
    both = na.merge(nb, on=["curve_id", "key"], suffixes=("_a", "_b"))
    if both.empty:
        raise ValueError(
            "the two tables share no network (no cache key in both): they come from other specs (another profile, "
            "figure, data set) or results of other code; compare the same figure's CSV of the same profile"
        )
    out = pd.DataFrame({
        "key": both["key"],
        "label": both["label_a"],
        "seed": both["seed_a"],
        "clean_a": both["clean_a"],
        "clean_b": both["clean_b"],
        "clean_images": np.rint((both.clean_a - both.clean_b).abs() * both.test_images_a),  # NaN: a run that failed
        "sigma_mid_a": both["sigma_mid_a"],
        "sigma_mid_b": both["sigma_mid_b"],
    })
    out["sigma_mid_ratio"] = out.sigma_mid_b / out.sigma_mid_a
    diffs, same = [], []
    for ca, cb, xa, xb in zip(both.curve_a, both.curve_b, both.clean_a, both.clean_b):
        d = (ca - cb).dropna().abs()
        diffs.append(float(d.max()) if len(d) else math.nan)
        same.append(bool(xa == xb and len(d) and (d == 0).all()))
    out["curve_max_diff"] = diffs
    out["identical"] = same
    order = (-np.abs(np.log(out.sigma_mid_ratio))).fillna(0.0).argsort(kind="stable")
    return out.iloc[order].reset_index(drop=True)


def seed_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Within one sweep table, per spec with several seeds: how far its networks lie apart.

    Columns: ``label``, ``seeds``, ``clean_range_images`` (largest minus smallest clean accuracy, test images),
    ``sigma_mid_ratio`` (largest over smallest ``sigma_mid`` among those networks that have one; NaN with fewer
    than two).
    """
    return _spread(networks(df))


def _spread(nets: pd.DataFrame) -> pd.DataFrame:
    """:func:`seed_spread` on a table's :func:`networks`."""
    rows = []
    for _, g in nets.groupby("group", sort=False):
        if len(g) < 2:
            continue
        mids = g.sigma_mid.dropna()
        rows.append({
            "label": g.label.iloc[0],
            "seeds": len(g),
            "clean_range_images": round((g.clean.max() - g.clean.min()) * g.test_images.iloc[0]),
            "sigma_mid_ratio": float(mids.max() / mids.min()) if len(mids) >= 2 else math.nan,
        })
    return pd.DataFrame(rows, columns=["label", "seeds", "clean_range_images", "sigma_mid_ratio"])


def _fold(ratio: pd.Series) -> pd.Series:
    """A ratio folded above 1 (0.9 and 1/0.9 are the same distance)."""
    r = ratio.dropna()
    return np.exp(np.abs(np.log(r)))


def reproduction_summary(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """The comparison of sweep tables ``a`` and ``b`` in a few numbers (fractions and ratios; counts of networks).

    ``shared``, ``only_a``, ``only_b``: networks in both / in one; ``curves``: their curves (more than ``shared``
    where a network was evaluated several ways); ``identical``: curves equal to the last bit, clean accuracy too;
    ``clean_images_median`` / ``_max``: the clean accuracies' difference in test images, per curve;
    ``sigma_mid_compared``: curves with a midpoint in both; ``sigma_mid_ratio_median`` / ``_max``: the ratio of
    their midpoints, folded above 1; ``seed_sigma_mid_ratio_median`` and ``seed_clean_range_images_median``: the
    same between the seeds of one spec within ``a`` (:func:`seed_spread`; NaN when ``a`` has one seed per spec).
    """
    return _reproduction(a, b)[0]


def _reproduction(a: pd.DataFrame, b: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """:func:`reproduction_summary` and :func:`compare_sweeps` of ``a`` and ``b``, every curve fitted once."""
    na = networks(a)
    cmp = _side_by_side(na, networks(b))
    keys_a, keys_b = set(a["key"]), set(b["key"])
    folded = _fold(cmp.sigma_mid_ratio)
    spread = _spread(na)
    seed_ratio = spread.sigma_mid_ratio.dropna()
    return {
        "shared": int(cmp.key.nunique()),
        "curves": len(cmp),
        "only_a": len(keys_a - keys_b),
        "only_b": len(keys_b - keys_a),
        "identical": int(cmp.identical.sum()),
        "clean_images_median": float(cmp.clean_images.median()),  # NaN (failed runs) left out, as below
        "clean_images_max": float(cmp.clean_images.max()),
        "sigma_mid_compared": len(folded),
        "sigma_mid_ratio_median": float(folded.median()) if len(folded) else math.nan,
        "sigma_mid_ratio_max": float(folded.max()) if len(folded) else math.nan,
        "seed_sigma_mid_ratio_median": float(seed_ratio.median()) if len(seed_ratio) else math.nan,
        "seed_clean_range_images_median": (float(spread.clean_range_images.median()) if len(spread)
                                           else math.nan),
    }, cmp


def _made_by(df: pd.DataFrame) -> str:
    parts = []
    for col in MADE_BY:
        if col in df:
            values = sorted({str(v) for v in df[col].dropna()})
            if values:
                parts.append(f"{col} {', '.join(values)}")
    return "; ".join(parts) or "not recorded"


def describe(s: dict) -> str:
    """:func:`reproduction_summary`'s numbers as sentences."""
    lines = [
        f"{s['shared']} networks in both tables ({s['only_a']} only in the first, {s['only_b']} only in the second)"
        + (f", {s['curves']} curves of them (networks evaluated several ways)" if s["curves"] != s["shared"] else "")
        + f"; {s['identical']} of {'the curves' if s['curves'] != s['shared'] else 'them'} identical to the last bit.",
        f"Clean accuracy: {s['clean_images_median']:g} test images apart in the median, {s['clean_images_max']:g} at "
        f"most.",
    ]
    if s["sigma_mid_compared"]:
        lines.append(
            f"sigma_mid ({s['sigma_mid_compared']} {'networks' if s['curves'] == s['shared'] else 'curves'} with a "
            f"midpoint in both): "
            f"{s['sigma_mid_ratio_median']:.3f}x apart in the median, {s['sigma_mid_ratio_max']:.3f}x at most."
        )
    if math.isfinite(s["seed_sigma_mid_ratio_median"]):
        lines.append(
            f"For scale, between the seeds of one spec in the first table: sigma_mid "
            f"{s['seed_sigma_mid_ratio_median']:.3f}x apart and clean accuracy "
            f"{s['seed_clean_range_images_median']:g} test images, in the median."
        )
    return "\n".join(lines)


def compare_folders(a: str | Path, b: str | Path) -> list[tuple[str, dict]]:
    """Every sweep CSV that folders ``a`` and ``b`` (two renders of one profile's figures) both hold, compared:
    ``(file name, reproduction_summary)`` per file in name order. CSVs that are not sweep tables (summaries, tables)
    and sweep tables that share no network are left out. Raises ``ValueError`` when no file could be compared."""
    a, b = Path(a), Path(b)
    out = []
    for path in sorted(a.glob("*.csv")):
        other = b / path.name
        if not other.is_file():
            continue
        try:
            out.append((path.name, reproduction_summary(read_sweep_csv(path), read_sweep_csv(other))))
        except ValueError:  # not a sweep table, or no network in both
            continue
    if not out:
        raise ValueError(f"{a} and {b} hold no sweep CSV of the same name with networks in both; pass two renders of "
                         f"one profile's figures (e.g. figures/quick and your figures/quick)")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m paperlib.runs.compare A B [--all]``: two sweep CSVs (the summary, then the networks that differ
    most) or two figure folders (the summary of every sweep CSV both hold)."""
    parser = argparse.ArgumentParser(
        prog="python -m paperlib.runs.compare",
        description="Compare two renders of one figure's sweep CSV network by network (same cache keys), or of "
                    "every sweep CSV of two figure folders: does a rerun on another machine reproduce the first?",
    )
    parser.add_argument("a", help="the first sweep CSV or figure folder (e.g. the committed figures/quick)")
    parser.add_argument("b", help="the second (the same figure or folder from your rerun)")
    parser.add_argument("--all", action="store_true", help="list every shared network, not the ten that differ most")
    args = parser.parse_args(argv)
    try:
        if Path(args.a).is_dir() and Path(args.b).is_dir():
            for name, summary in compare_folders(args.a, args.b):
                print(f"== {name}")
                print(describe(summary))
            return 0
        a, b = read_sweep_csv(args.a), read_sweep_csv(args.b)
        summary, table = _reproduction(a, b)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"first:  {args.a} ({_made_by(a)})")
    print(f"second: {args.b} ({_made_by(b)})")
    print(describe(summary))
    shown = table if args.all else table.head(10)
    print()
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.float_format", "{:.4g}".format):
        print(shown.drop(columns=["key"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
