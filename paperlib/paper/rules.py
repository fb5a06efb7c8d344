"""The paper's findings (docs/protocol.md §8), each checked on a run's summary with a decision rule (§11).

:func:`findings` gives each testable statement a verdict, ``"holds"``, ``"does not hold"`` or ``"not resolved"``,
with the numbers compared and their errors; :func:`findings_report` writes them as Markdown. :func:`compare` is the
decision rule of two numbers with errors, :func:`mid` a row's midpoint in words; :mod:`~paperlib.paper.prose` builds
each figure's "what this run shows" on them.
"""
from __future__ import annotations

import math

import pandas as pd

from ..models import ARCH_NAMES
from ..runs.summary import CHANCE, summary_row, variant_name

_row = summary_row


def usable(row: pd.Series | None) -> bool:
    """A summary row with a fitted midpoint."""
    return row is not None and bool(row["fit_ok"])


_usable = usable

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


def compare(a: float, a_err: float, b: float, b_err: float) -> int:
    """+1 when ``a`` exceeds ``b`` by more than SIGNIFICANCE combined standard errors, -1 when ``b`` exceeds ``a`` so,
    else 0 (also when an error is unknown)."""
    se = math.hypot(a_err, b_err)
    if not (math.isfinite(se) and math.isfinite(a) and math.isfinite(b)):
        return 0
    return 1 if a - b > SIGNIFICANCE * se else -1 if b - a > SIGNIFICANCE * se else 0


def _acc(r) -> str:
    """Peak accuracy in % with its standard error."""
    return "–" if pd.isna(r.peak_acc) else f"{100 * r.peak_acc:.1f} ± {100 * r.peak_acc_err:.1f}%"


def mid(r) -> str:
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


def working_constants(summary: pd.DataFrame, arch: str) -> pd.DataFrame:
    """The clean constant-scale rows of ``arch`` that work by the findings' rule (fitted, not collapsed, and at
    least :data:`WORKING_FRACTION` of fp32's accuracy above chance when fp32 is in ``summary``); any bit width."""
    const = summary[(summary.arch == arch) & (summary.regime == "clean") & summary.scale.notna()]
    got = _fp32_floor(summary, arch)
    floor = -math.inf if got is None else got[0]
    return const[[_works(r, floor) for r in const.itertuples()]]


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
                    signs = [compare(r.sigma_mid, r.sigma_mid_err, dyn.sigma_mid, dyn.sigma_mid_err) for r in work]
                    verdict = FAILS if -1 in signs else HOLDS if all(s == 1 for s in signs) else UNRESOLVED
                    out.append(
                        (
                            statement,
                            verdict,
                            f"sigma_mid: dynamic {mid(dyn)}; "
                            + ", ".join(f"s={r.scale:g} {mid(r)} ({_SIGN[s]})" for r, s in zip(work, signs))
                            + f"; {_RULE}; {rule}{_left_out(const, floor)}",
                        )
                    )
            statement = f"{what}: dynamic scaling is less robust than fp32"
            if dyn_note or not _usable(fp32):
                out.append((statement, UNRESOLVED, dyn_note + f"fp32 {mid(fp32)}; {rule}"))
            else:
                s = compare(dyn.sigma_mid, dyn.sigma_mid_err, fp32.sigma_mid, fp32.sigma_mid_err)
                out.append(
                    (
                        statement,
                        HOLDS if s == -1 else FAILS if s == 1 else UNRESOLVED,
                        f"sigma_mid: dynamic {mid(dyn)} {_SIGN[s]} fp32 {mid(fp32)}; {_RULE}",
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
            acc = compare(lo.peak_acc, lo.peak_acc_err, hi.peak_acc, hi.peak_acc_err)  # +1: accuracy falls
            rises = compare(hi.sigma_mid, hi.sigma_mid_err, lo.sigma_mid, lo.sigma_mid_err)  # +1: robustness rises
            verdict = HOLDS if acc == 1 and rises == 1 else FAILS if -1 in (acc, rises) else UNRESOLVED
            out.append(
                (
                    statement,
                    verdict,
                    f"s={lo.scale:g} -> s={hi.scale:g}: peak accuracy {_acc(lo)} {_SIGN[acc]} {_acc(hi)}, "
                    f"sigma_mid {mid(lo)} {_SIGN[-rises]} {mid(hi)}; {_RULE}; {rule}{_left_out(const, floor)}",
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
            a = compare(r8.peak_acc, r8.peak_acc_err, r4.peak_acc, r4.peak_acc_err)
            m = compare(r8.sigma_mid, r8.sigma_mid_err, r4.sigma_mid, r4.sigma_mid_err)
            if a >= 0 and m >= 0:
                kind = "beaten" if 1 in (a, m) else "covered"
                if best != "beaten":
                    best, by = kind, r8
        status.append(best)
        notes.append(
            f"{r4.variant} ({_acc(r4)}, {mid(r4)}): {best}"
            + (f" by {by.variant} ({_acc(by)}, {mid(by)})" if by is not None else "")
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
                        f"fp32 sigma_mid {mid(clean)} -> {mid(noisy)} with noisy training: "
                        f"{ratio:.2g}x ± {100 * se:.0f}% (needs >= {gain:g}x by {SIGNIFICANCE:g} standard errors)",
                    )
                )
            else:
                out.append((statement, UNRESOLVED, f"fp32 without noisy training {mid(clean)}; with {mid(noisy)}"))
        quant = summary[(summary.arch == arch) & (summary.regime == "noisy") & summary.bits.notna()]
        if noisy is None or quant.empty:
            continue
        statement = (
            f"{arch}: with noisy training, quantized and fp32 models are equally robust "
            f"(sigma_mid within {tolerance:.0%})"
        )
        if not _usable(noisy):
            out.append((statement, UNRESOLVED, f"fp32 with noisy training: {mid(noisy)}"))
            continue
        kinds, notes = [], []
        for q in quant.itertuples():
            if not q.fit_ok:
                kinds.append("not resolved")
                notes.append(f"{q.variant} {mid(q)}")
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
            notes.append(f"{q.variant} {mid(q)}: {math.exp(d):.2f}x ± {100 * se:.0f}%, {kind}")
        verdict = FAILS if "differs" in kinds else HOLDS if all(k == "matches" for k in kinds) else UNRESOLVED
        out.append(
            (
                statement,
                verdict,
                f"fp32 {mid(noisy)}; "
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
        names = f"fp32 sigma_mid: {ARCH_NAMES[high]} {mid(a)}"
        if not (_usable(a) and _usable(b)):
            out.append((statement, UNRESOLVED, f"{names}, {ARCH_NAMES[low]} {mid(b)}"))
            continue
        s = compare(a.sigma_mid, a.sigma_mid_err, b.sigma_mid, b.sigma_mid_err)
        out.append(
            (
                statement,
                HOLDS if s == 1 else FAILS if s == -1 else UNRESOLVED,
                f"{names} {_SIGN[s]} {ARCH_NAMES[low]} {mid(b)}; {_RULE}",
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

    In a notebook, the ``what_*_shows`` functions include it as Markdown.
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

