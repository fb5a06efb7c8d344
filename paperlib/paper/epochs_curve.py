"""The epochs curve: peak accuracy and ``sigma_mid`` against the training budget, behind a profile's ``epochs``
(docs/protocol.md §7).

The paper trains for 500 epochs; a profile trains for fewer, and this curve shows what that costs: one network per
number of epochs (seed 0, the cosine schedule over that many epochs) for fp32 and one QAT variant of an
architecture (:data:`VARIANTS`), each swept over the profile's sigmas. The runs at the profile's own ``epochs`` are
the ones its notebooks reuse from the cache. ``python -m benchmarks.epochs_curve`` renders it here; ``python -m
paperlib.paper.slices --epochs-curve ARCH`` trains it on a GPU machine in slices.
"""
from __future__ import annotations

import pandas as pd

from ..runs import summary as rp
from ..runs.profile import Profile
from ..runs.spec import RunSpec
from ..runs.summary import Variant

#: Each architecture's variants: fp32 and one QAT network (LeNet-5: the paper's headline 8-bit s = 8; VGG-11 and
#: ResNet-18: 8-bit s = 1, a Table I row of each, and far cheaper to train than a dynamic scale on a GPU).
VARIANTS: dict[str, list[Variant]] = {"lenet5": [(None, None), (8, 8.0)], "vgg11": [(None, None), (8, 1.0)],
                                      "resnet18": [(None, None), (8, 1.0)]}
#: What this curve's saved table records beside the core modules (``Session.save_table(..., by=...)``).
MODULES = ("paper/epochs_curve",)


def parse_variant(token: str) -> Variant:
    """``fp32``, ``BITS:dynamic`` or ``BITS:SCALE`` (e.g. ``8:1``) as a variant ``(bits, scale)``.

    Raises:
        ValueError: anything else (one sentence naming the forms).
    """
    if token == "fp32":
        return (None, None)
    bits, _, scale = token.partition(":")
    try:
        return (int(bits), None if scale == "dynamic" else float(scale))
    except ValueError:
        raise ValueError(f"variant {token!r} is none of fp32, BITS:dynamic or BITS:SCALE (e.g. 8:1)") from None


def specs(profile: Profile, epochs: list[int], arch: str = "lenet5",
          variants: list[Variant] | None = None) -> list[RunSpec]:
    """One network per number of ``epochs`` and variant (default :data:`VARIANTS` of ``arch``), seed 0, the
    longest first (they set the wall time on a cluster or a GPU machine)."""
    if arch not in VARIANTS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(VARIANTS)}")
    if not epochs or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in epochs):
        raise ValueError(f"epochs must be whole numbers >= 1, got {epochs!r}")
    return [profile.spec(arch, bits=b, scale=s, epochs=e, seed=0) for e in sorted(set(epochs), reverse=True)
            for b, s in (VARIANTS[arch] if variants is None else variants)]


def table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (epochs, variant) of a sweep of :func:`specs`: ``epochs``, ``variant``, ``peak_acc``,
    ``peak_acc_err``, ``sigma_mid``, ``sigma_mid_err`` (sigma units of §3) and ``fit``, by variant then epochs."""
    rows = []
    for e, g in results.groupby("epochs"):
        summary = rp.summarize(g).assign(epochs=int(e))
        rows.append(summary[["epochs", "variant", "peak_acc", "peak_acc_err", "sigma_mid", "sigma_mid_err", "fit"]])
    return pd.concat(rows, ignore_index=True).sort_values(["variant", "epochs"], ignore_index=True)


def name(arch: str) -> str:
    """The saved table's name: ``epochs_curve`` for LeNet-5 (the committed lenet-full one), else
    ``epochs_curve_<arch>``."""
    return "epochs_curve" if arch == "lenet5" else f"epochs_curve_{arch}"


def markdown(t: pd.DataFrame) -> str:
    """:func:`table` as a Markdown table: variant, epochs, peak accuracy and sigma_mid with their errors."""
    lines = ["| variant | epochs | peak accuracy | sigma_mid |", "|---|---:|---:|---:|"]
    for r in t.itertuples(index=False):
        lines.append(f"| {r.variant} | {r.epochs} | {100 * r.peak_acc:.1f} ± {100 * r.peak_acc_err:.1f}% | "
                     f"{r.sigma_mid:.3g} ± {r.sigma_mid_err:.2g} |")
    return "\n".join(lines)
