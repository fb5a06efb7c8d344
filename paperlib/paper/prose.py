"""The sentences every "what this run shows" shares (docs/protocol.md §8, §11): a row's numbers in words, ours
beside the paper's, what a profile's budget means for the numbers, and :func:`report`, which ends each figure's
"what this run shows" with the findings' verdicts (:mod:`~paperlib.paper.rules`) and the budget.
"""
from __future__ import annotations

import math

import pandas as pd

from ..models import ARCH_NAMES
from ..runs.profile import Profile, load_profile
from ..runs.summary import summary_row
from . import published as paper
from .rules import compare, findings_report, mid
from .tables import Markdown

_row = summary_row


def pct(r) -> str:
    """A summary row's peak accuracy in % with its standard error, or why there is none."""
    if pd.isna(r.peak_acc):
        return "no accuracy (every run failed)"
    return f"{100 * r.peak_acc:.1f} ± {100 * r.peak_acc_err:.1f}%"


def versus(ours: float, err: float, printed: float) -> str:
    """How a number of ours compares with the paper's: within or beyond SIGNIFICANCE standard errors."""
    if not (math.isfinite(ours) and math.isfinite(err)):
        return "no comparison"
    s = compare(ours, err, printed, 0.0)
    return "matches the paper's within its errors" if s == 0 else "above the paper's" if s == 1 else "below the paper's"


def fp32_sentence(summary: pd.DataFrame, arch: str) -> str:
    """fp32 trained without noise beside Table II (peak accuracy and sigma_mid)."""
    ref = paper.table_ii().set_index("arch").loc[arch]
    r = _row(summary, arch, "fp32")
    if r is None:
        return f"{ARCH_NAMES[arch]} fp32 is not in this run."
    text = f"{ARCH_NAMES[arch]} fp32 reaches a peak accuracy of {pct(r)} (paper: {ref.peak_acc_pct:.0f}%)"
    if not r.fit_ok:
        return text + f"; its curve gives {r.fit} (paper: sigma_mid {ref.sigma_mid:g})."
    return (text + f" and sigma_mid {mid(r)} (paper: {ref.sigma_mid:g}; "
            f"{versus(r.sigma_mid, r.sigma_mid_err, ref.sigma_mid)}).")


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


def report(lines: list[str], summary: pd.DataFrame, profile: Profile, archs: tuple[str, ...]) -> Markdown:
    """A figure's "what this run shows": ``lines`` as a list, the findings' verdicts on ``summary``
    (:func:`~paperlib.paper.rules.findings_report`) and what the profile's budget means (:func:`budget`)."""
    return Markdown("\n".join(
        [*(f"- {line}" for line in lines), "", findings_report(summary), "", budget(profile, archs)]
    ))


def caveat(profile: Profile, arch: str, networks: int, test_images: int | None = None) -> str:
    """The training budget behind a run's numbers beyond the paper, as a caveat sentence (notebooks 05-07)."""
    p = profile.for_arch(arch)
    train = f"{p.train_subset:,}" if p.train_subset else "all 50,000"
    test = test_images or p.test_subset
    tests = f"{test:,}" if test else "all 10,000"
    says = ("the paper trains 500 epochs on all 50,000 images" if p.epochs < 500 or p.train_subset
            else "the paper's budget")
    return (f"profile `{profile.name}`: {ARCH_NAMES.get(arch, arch)} trained {p.epochs} epoch(s) on {train} images "
            f"({says}), {networks} network(s) per variant, {tests} test images")


#: The last line of every "what this run shows" at the smoke profile.
SMOKE_NOTE = "\nThe `smoke` profile checks that the notebook runs; its numbers say nothing about CIFAR-10."
