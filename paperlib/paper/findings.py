"""The paper's findings (docs/protocol.md §8), each checked on a run's summary with a decision rule (§11).

:func:`findings` gives each testable statement a verdict, ``"holds"``,
``"does not hold"`` or ``"not resolved"``, with the numbers compared and
their errors; :func:`findings_report` writes them as Markdown. The
``what_*_shows`` functions say in a few sentences what a notebook's run shows
against the paper's numbers, computed from the run's own summary.
"""
from __future__ import annotations

import math

import pandas as pd

from ..models import ARCH_NAMES
from ..runs.profile import Profile, load_profile
from ..runs.summary import CHANCE, summary_row, variant_name
from . import published as paper
from .experiments import Markdown

_row = summary_row

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


def _pct(r) -> str:
    """A summary row's peak accuracy in % with its standard error, or why there is none."""
    if pd.isna(r.peak_acc):
        return "no accuracy (every run failed)"
    return f"{100 * r.peak_acc:.1f} ± {100 * r.peak_acc_err:.1f}%"


def _vs(ours: float, err: float, printed: float) -> str:
    """How a number of ours compares with the paper's: within or beyond SIGNIFICANCE standard errors."""
    if not (math.isfinite(ours) and math.isfinite(err)):
        return "no comparison"
    s = _cmp(ours, err, printed, 0.0)
    return "matches the paper's within its errors" if s == 0 else "above the paper's" if s == 1 else "below the paper's"


def _fp32_sentence(summary: pd.DataFrame, arch: str) -> str:
    """fp32 trained without noise beside Table II (peak accuracy and sigma_mid)."""
    ref = paper.table_ii().set_index("arch").loc[arch]
    r = _row(summary, arch, "fp32")
    if r is None:
        return f"{ARCH_NAMES[arch]} fp32 is not in this run."
    text = f"{ARCH_NAMES[arch]} fp32 reaches a peak accuracy of {_pct(r)} (paper: {ref.peak_acc_pct:.0f}%)"
    if not r.fit_ok:
        return text + f"; its curve gives {r.fit} (paper: sigma_mid {ref.sigma_mid:g})."
    return (text + f" and sigma_mid {_mid(r)} (paper: {ref.sigma_mid:g}; "
            f"{_vs(r.sigma_mid, r.sigma_mid_err, ref.sigma_mid)}).")


def _best_constant(summary: pd.DataFrame, arch: str):
    """The working constant scale (clean training, fitted, not collapsed) with the highest sigma_mid, or None."""
    const = summary[(summary.arch == arch) & (summary.regime == "clean") & summary.scale.notna()
                    & summary.fit_ok & ~summary.collapsed]
    return None if const.empty else next(const.sort_values("sigma_mid", ascending=False).itertuples())


def budget(profile: Profile, archs: tuple[str, ...]) -> str:
    """What ``profile``'s budget is for ``archs`` beside the paper's protocol (profile ``paper``), and what it means
    for the numbers: one paragraph."""
    ref = load_profile("paper")
    parts = []
    for arch in archs:
        spec, seeds = profile.spec(arch), profile.for_arch(arch).seeds
        images = "all training images" if spec.train_subset is None else f"{spec.train_subset:,} training images"
        tests = "the full test set" if spec.test_subset is None else f"{spec.test_subset:,} test images"
        parts.append(f"{ARCH_NAMES[arch]} {spec.epochs} epoch(s) on {images}, {tests}, {seeds} seed(s)")
    paper_spec = ref.spec(archs[0]) if archs else ref.spec("lenet5")
    text = (f"Profile **{profile.name}**: {'; '.join(parts)}. The paper's protocol (profile `paper`) trains "
            f"{paper_spec.epochs} epochs on all 50,000 training images and tests on all 10,000, with "
            f"{ref.seeds} seeds. ")
    if profile.name == "smoke":
        return text + ("This is a smoke test: its numbers show that the pipeline runs end to end and mean nothing "
                       "about CIFAR-10.")
    if profile.name == "paper":
        return text + "This run follows the paper's budget: its numbers can be set beside the paper's."
    return text + ("With a smaller budget, peak accuracies sit below the paper's and the errors are larger; "
                   "the verdicts above say what this budget can resolve, and a finding 'not resolved' here may "
                   "hold at the paper's budget.")


def _report(lines: list[str], summary: pd.DataFrame, profile: Profile, archs: tuple[str, ...]) -> Markdown:
    return Markdown("\n".join(
        [*(f"- {line}" for line in lines), "", findings_report(summary), "", budget(profile, archs)]
    ))


def what_fig2_shows(summary: pd.DataFrame, profile: Profile, arch: str = "lenet5") -> Markdown:
    """What a Fig. 2 run shows, from its own ``summary``: fp32's peak accuracy and sigma_mid beside the paper's
    (75%, 0.286), the most robust working constant scale beside the paper's 8-bit s = 8 (75% -> 70%, sigma_mid up
    by over 200%), which findings hold (:func:`findings_report`) and what the profile's budget means (:func:`budget`).
    """
    lines = [_fp32_sentence(summary, arch)]
    fp32, best = _row(summary, arch, "fp32"), _best_constant(summary, arch)
    if best is None:
        lines.append("No constant scale gives a working curve with a midpoint in this run.")
    else:
        text = f"The most robust constant scale, {best.variant}, keeps a peak accuracy of {_pct(best)}"
        if fp32 is not None and _usable(fp32):
            rise = best.sigma_mid / fp32.sigma_mid - 1
            text += f" and raises sigma_mid to {_mid(best)}, {rise:+.0%} over fp32"
        else:
            text += f" with sigma_mid {_mid(best)}"
        lines.append(text + " (paper, 8-bit s=8: accuracy 75% -> 70%, sigma_mid up by over 200%).")
    headline = _row(summary, arch, variant_name(8, 8.0))
    if arch == "lenet5" and headline is not None and fp32 is not None and _usable(fp32) and _usable(headline):
        gap, gap_err = 100 * (fp32.peak_acc - headline.peak_acc), 100 * math.hypot(fp32.peak_acc_err,
                                                                                   headline.peak_acc_err)
        ratio, ratio_err = headline.sigma_mid / fp32.sigma_mid, 100 * math.hypot(fp32.rel_err, headline.rel_err)
        lines.append(f"The paper's headline network, 8-bit s=8: {gap:.1f} ± {gap_err:.1f} points of accuracy below "
                     f"fp32 (paper: 5) for a sigma_mid {ratio:.2g}x fp32's ± {ratio_err:.0f}% (paper: over 3x).")
    return _report(lines, summary, profile, (arch,))


def what_table1_shows(summary: pd.DataFrame, arch: str, profile: Profile) -> Markdown:
    """What a Table I run of ``arch`` shows, from its own ``summary``: fp32 beside the paper, each of our variants
    that the paper prints beside its row (peak accuracy, sigma_mid), the findings and the budget."""
    lines = [_fp32_sentence(summary, arch)]
    ref = paper.table_i().query("arch == @arch")
    ref = ref.assign(variant=[variant_name(b, s) for b, s in zip(ref.bits, ref.scale)]).set_index("variant")
    for r in summary[(summary.arch == arch) & (summary.regime == "clean") & summary.bits.notna()].itertuples():
        if r.variant not in ref.index:
            lines.append(f"{r.variant}: peak accuracy {_pct(r)}, sigma_mid {_mid(r)} (not in the paper's table).")
            continue
        p = ref.loc[r.variant]
        lines.append(f"{r.variant}: peak accuracy {_pct(r)} (paper {p.peak_acc_pct:.1f}%), sigma_mid {_mid(r)} "
                     f"(paper {p.sigma_mid:g}"
                     + (f"; {_vs(r.sigma_mid, r.sigma_mid_err, p.sigma_mid)})." if r.fit_ok else ")."))
    return _report(lines, summary, profile, (arch,))


def what_fig3_shows(summary: pd.DataFrame, profile: Profile) -> Markdown:
    """What a Fig. 3 run shows, from its own ``summary``: per architecture, fp32's sigma_mid without and with noisy
    training and its gain beside the paper's (LeNet-5 9.1x, VGG-11 19x, ResNet-18 6.1x), the spread of the
    quantized variants' sigma_mid with noisy training around fp32's, the findings and the budget."""
    ref = paper.table_ii().set_index("arch")
    archs = tuple(a for a in summary.arch.unique() if a in ref.index)
    lines = []
    for arch in archs:
        clean, noisy = _row(summary, arch, "fp32"), _row(summary, arch, "fp32", "noisy")
        printed = ref.loc[arch, "sigma_mid_noisy"] / ref.loc[arch, "sigma_mid"]
        if _usable(clean) and _usable(noisy):
            gain = noisy.sigma_mid / clean.sigma_mid
            lines.append(f"{ARCH_NAMES[arch]} fp32: noisy training moves sigma_mid from {_mid(clean)} to "
                         f"{_mid(noisy)}, a gain of {gain:.2g}x ± {100 * math.hypot(clean.rel_err, noisy.rel_err):.0f}%"
                         f" (paper: {ref.loc[arch, 'sigma_mid']:g} -> {ref.loc[arch, 'sigma_mid_noisy']:g}, "
                         f"{printed:.2g}x).")
        else:
            say = lambda r: "not run" if r is None else _mid(r)  # noqa: E731
            lines.append(f"{ARCH_NAMES[arch]} fp32: no gain to compute (without noisy training {say(clean)}; "
                         f"with {say(noisy)}; paper {printed:.2g}x).")
        quant = summary[(summary.arch == arch) & (summary.regime == "noisy") & summary.bits.notna() & summary.fit_ok]
        if _usable(noisy) and not quant.empty:
            ratios = quant.sigma_mid / noisy.sigma_mid
            lines.append(f"{ARCH_NAMES[arch]}, noisy training: the quantized variants' sigma_mid is "
                         f"{ratios.min():.2f}x to {ratios.max():.2f}x fp32's (the paper: the curves overlap).")
    return _report(lines, summary, profile, archs)


def what_table2_shows(summary: pd.DataFrame, profile: Profile) -> Markdown:
    """What a Table II run shows, from its own ``summary``: per architecture, fp32's peak accuracy and sigma_mid
    without and with noisy training beside the paper's, the findings (4-5) and the budget."""
    ref = paper.table_ii().set_index("arch")
    archs = tuple(a for a in summary.arch.unique() if a in ref.index)
    lines = []
    for arch in archs:
        lines.append(_fp32_sentence(summary, arch))
        noisy = _row(summary, arch, "fp32", "noisy")
        if noisy is not None:
            printed = ref.loc[arch, "sigma_mid_noisy"]
            lines.append(f"{ARCH_NAMES[arch]} fp32 with noisy training: sigma_mid {_mid(noisy)} (paper: {printed:g}"
                         + (f"; {_vs(noisy.sigma_mid, noisy.sigma_mid_err, printed)})." if noisy.fit_ok else ")."))
    return _report(lines, summary, profile, archs)

