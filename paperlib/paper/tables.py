"""Shared formatting of the paper layer: how numbers are printed in its tables and sentences (docs/protocol.md §11).

Accuracy in % with one decimal and its standard error, ``sigma_mid`` with three significant digits and its relative
standard error ("0.154 (0.5%)", as the paper prints it), the paper's own printed numbers as printed;
:func:`percent_table` shows a run's summary that way, :func:`noise_module_counts` the noise modules per variant.
:class:`Markdown` is text a notebook shows as Markdown.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..models import build_model
from ..noise import noise_modules
from ..runs.summary import Variant, variant_name


class Markdown(str):
    """Text that a notebook shows as Markdown when it is a cell's last expression (``_repr_markdown_``); a plain
    ``str`` everywhere else (``in``, ``+``, ``print``)."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return str(self)


def fmt_acc(acc: float, spread: float) -> str:
    """Accuracy in % with one decimal, as the paper prints it, and its error ("± x"; the value alone when the error
    is unknown). The tables pass the standard error ``peak_acc_err`` (docs/protocol.md §11)."""
    if pd.isna(acc):
        return "–"
    return f"{100 * acc:.1f}" + ("" if pd.isna(spread) else f" ± {100 * spread:.1f}")


def sig3(x: float) -> str:
    """Three significant digits, trailing zeros kept (0.2 -> "0.200")."""
    text = f"{x:#.3g}"
    return text.rstrip(".") if "e" not in text else text


def sig(x: float) -> str:
    """Three significant digits, trailing zeros dropped; "n/a" for NaN or inf."""
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def fmt_mid(mid: float, rel: float) -> str:
    """sigma_mid with three significant digits and its relative standard error in %, like the paper's "0.154 (0.5%)"."""
    return "–" if pd.isna(mid) else f"{sig3(mid)} ({100 * rel:.1f}%)"


def fmt_paper_mid(mid: float, rel: float = math.nan) -> str:
    """A printed sigma_mid of the paper, as printed."""
    if pd.isna(mid):
        return "–"
    return f"{mid:g}" + ("" if pd.isna(rel) else f" ({100 * rel:.1f}%)")


def fmt_pct(value: float, err: float) -> str:
    """A fraction in % with one decimal and its error ("70.0 ± 0.4"; the value alone when the error is unknown)."""
    if pd.isna(value):
        return "–"
    return f"{100 * value:.1f}" + ("" if pd.isna(err) else f" ± {100 * err:.1f}")


def fit_note(ok: object, fit: object) -> str:
    """A table's ``fit`` cell: "ok" for a fitted curve (its numbers are in the sigma_mid column), else why there is
    no midpoint; "–" for a row of the paper's that we did not run."""
    if pd.isna(fit):
        return "–"
    return "ok" if ok is True or (not pd.isna(ok) and bool(ok)) else str(fit)


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
            "peak acc. (%)": [fmt_pct(a, e) for a, e in zip(summary.peak_acc, summary.peak_acc_err)],
            "sigma_mid (rel. err.)": [fmt_mid(m, r) for m, r in zip(summary.sigma_mid, summary.rel_err)],
            "diverged": summary["diverged"].to_numpy(),
            "fit": ["ok" if ok else str(f) for ok, f in zip(summary.fit_ok, summary.fit)],
        }
    )


