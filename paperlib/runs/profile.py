"""Named profiles: how much of the paper's protocol to run (docs/protocol.md §6-7).

The defaults of :class:`Profile` are the paper's protocol; each YAML file in
``paperlib/runs/profiles/`` lists only what differs from them:

- ``smoke``: every notebook in about a minute on 2 CPU cores (CI, nbval);
- ``quick``: real CIFAR-10 at laptop scale (the deeper networks on fewer images
  and epochs, via ``per_arch``), about an hour on 2 CPU cores;
- ``lenet-full``: LeNet-5 on all of CIFAR-10 with the paper's grids, at fewer epochs and seeds;
- ``paper``: the paper's protocol (500 epochs, the authors' grids, 17 sigmas, 5 seeds);
- ``paper-dryrun``: every grid and architecture of ``paper`` at one epoch on 50 images and one seed: tests that
  ``make figures PROFILE=paper`` runs end to end (tests/test_paper_dryrun.py), numbers mean nothing.

Values per architecture live in one mapping, ``per_arch``: architecture ->
{key: value}, the keys being :data:`PER_ARCH_KEYS` (``scales``, the constant
activation scales of Fig. 2 and Table I, and the fields of :data:`OVERRIDABLE`).
Its paper defaults (:data:`PAPER_PER_ARCH`) hold each architecture's scales;
a profile overrides them key by key, so a YAML file that sets only
``per_arch: {resnet18: {epochs: 4}}`` keeps ResNet-18's paper scales::

    per_arch:
      lenet5: {scales: [0.25, 1.0, 8.0, 64.0, 512.0]}
      resnet18: {scales: [0.5, 1.0, 10.0], epochs: 4, train_subset: 2500, seeds: 1}
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..models import ARCHS
from .spec import RunSpec, canonical_grid

CONFIG_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES: tuple[str, ...] = ("smoke", "quick", "lenet-full", "gpu", "paper", "paper-dryrun")
#: Profile fields that ``per_arch`` may set for one architecture (they override the profile-wide value).
OVERRIDABLE: tuple[str, ...] = ("epochs", "train_subset", "test_subset", "seeds", "repeats", "walking_test_subset")
#: The keys of one architecture's entry in ``per_arch``: its constant scales and the fields of OVERRIDABLE.
PER_ARCH_KEYS: tuple[str, ...] = ("scales", *OVERRIDABLE)
#: The paper's per-architecture values: the constant activation scales s of the authors' grids
#: (LeNet-5: Fig. 2, 0.25 ... 512 in powers of two; VGG-11 and ResNet-18: Table I).
PAPER_PER_ARCH: Mapping[str, Mapping[str, Any]] = {
    "lenet5": {"scales": tuple(2.0**k for k in range(-2, 10))},
    "vgg11": {"scales": (0.5, 1.0, 2.0, 3.0)},
    "resnet18": {"scales": (0.5, 1.0, 4.0, 8.0, 10.0)},
}


def _merge_per_arch(per_arch: Any) -> dict[str, dict[str, Any]]:
    """:data:`PAPER_PER_ARCH` overridden key by key by ``per_arch``; scales as tuples of floats.

    Raises:
        ValueError: ``per_arch`` is not a mapping, or names an unknown architecture or key.
    """
    if not isinstance(per_arch, Mapping):
        raise ValueError(f"per_arch must map an architecture ({', '.join(ARCHS)}) to {{key: value}}, "
                         f"got {per_arch!r}")
    out = {arch: dict(PAPER_PER_ARCH.get(arch, {})) for arch in ARCHS}
    for arch, values in per_arch.items():
        if arch not in ARCHS:
            raise ValueError(f"per_arch names an unknown architecture {arch!r}; valid architectures: "
                             f"{', '.join(ARCHS)}")
        if not isinstance(values, Mapping):
            raise ValueError(f"per_arch[{arch!r}] must be a mapping of key: value (keys: "
                             f"{', '.join(PER_ARCH_KEYS)}), got {values!r}")
        unknown = sorted(set(values) - set(PER_ARCH_KEYS))
        if unknown:
            raise ValueError(f"per_arch[{arch!r}] has unknown key(s) {', '.join(map(str, unknown))}; valid keys: "
                             f"{', '.join(PER_ARCH_KEYS)}")
        out[arch].update(values)
    for arch, values in out.items():
        scales = values.get("scales")
        if isinstance(scales, (str, bytes)) or not isinstance(scales, (list, tuple)):
            raise ValueError(f"per_arch[{arch!r}]['scales'] must be a list of constant scales, got {scales!r}")
        values["scales"] = tuple(float(v) for v in scales)
    return out


#: What each scalar or list field of :class:`Profile` holds, for the error on a value of the wrong type:
#: field -> (kind, example). Kinds: int (>= 1), int0 (>= 0), int?, number, number?, ints, archs, text.
_FIELD_KINDS: Mapping[str, tuple[str, str]] = {
    "name": ("text", "quick"),
    "epochs": ("int", "8"), "seeds": ("int", "2"), "repeats": ("int", "1"), "n_sigmas": ("int", "17"),
    "vgg11_ramp_epochs": ("int0", "100"), "noisy_n_sigmas": ("int", "17"),
    "train_subset": ("int?", "10000"), "test_subset": ("int?", "2000"), "walking_test_subset": ("int?", "2000"),
    "sigma_min": ("number", "0.01"), "sigma_max": ("number", "100"), "noisy_scale": ("number", "1.0"),
    "noisy_sigma_min": ("number?", "0.1"), "noisy_sigma_max": ("number?", "10"),
    "bits": ("ints", "[4, 8]"), "noisy_bits": ("ints", "[4, 8]"), "archs": ("archs", "[lenet5, resnet18]"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_types(profile: Profile) -> None:
    """One clear error for a field of the wrong type (``bits: 8`` for ``[8]``, ``n_sigmas: "five"``) or an
    unknown architecture in ``archs``, before anything else reads the profile."""
    for name, (kind, example) in _FIELD_KINDS.items():
        v = getattr(profile, name)
        optional = kind.endswith("?")
        if optional and v is None:
            continue
        base = kind.rstrip("?")
        if base in ("int", "int0"):
            least = 0 if base == "int0" else 1
            ok = _is_int(v) and v >= least
            want = f"an integer >= {least}" + (" or null (all)" if optional else "")
        elif base == "number":
            ok = isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and 0 < float(v) < float("inf")
            want = "a positive number" + (" or null" if optional else "")
        elif base == "text":
            ok, want = isinstance(v, str) and bool(v), "a name"
        elif base == "ints":
            ok = isinstance(v, (list, tuple)) and all(_is_int(b) for b in v)
            want = "a list of bit widths"
        else:  # archs
            ok = isinstance(v, (list, tuple)) and bool(v) and all(isinstance(a, str) for a in v)
            want = f"a list of architectures ({', '.join(ARCHS)})"
            if ok and not set(v) <= set(ARCHS):
                unknown = ", ".join(repr(a) for a in v if a not in ARCHS)
                raise ValueError(f"archs names unknown architecture(s) {unknown}; valid architectures: "
                                 f"{', '.join(ARCHS)}")
        if not ok:
            raise ValueError(f"{name} must be {want} (e.g. {name}: {example}), got {v!r}")


@dataclass(frozen=True)
class Profile:
    """How much of the protocol to run; the defaults are the paper's."""

    name: str = "paper"
    """profile name, shown in captions"""
    epochs: int = 500
    """training epochs per network"""
    train_subset: int | None = None
    """stratified training subset (images); None = all 50,000"""
    test_subset: int | None = None
    """stratified test subset (images); None = all 10,000"""
    seeds: int = 5
    """networks per configuration (separately trained; the paper's error bars)"""
    repeats: int = 1
    """noise draws per sigma and network"""
    sigma_min: float = 0.01
    """smallest evaluation sigma (absolute)"""
    sigma_max: float = 100.0
    """largest evaluation sigma (absolute)"""
    n_sigmas: int = 17
    """points of the log-spaced sigma grid (authors: 17, four per decade)"""
    bits: tuple[int, ...] = (4, 8)
    """quantized bit widths"""
    archs: tuple[str, ...] = ("lenet5", "vgg11", "resnet18")
    """architectures of the multi-architecture figures (Fig. 3, Table II)"""
    vgg11_ramp_epochs: int = 100
    """VGG-11 noisy training: epochs of the linear sigma ramp (authors: 100 of 500)"""
    noisy_n_sigmas: int = 17
    """training sigmas of noisy training (Fig. 3): this many log-spaced points, noisy_sigma_min to noisy_sigma_max"""
    noisy_sigma_min: float | None = None
    """smallest training sigma of noisy training (absolute); None = sigma_min (the paper: the evaluation range)"""
    noisy_sigma_max: float | None = None
    """largest training sigma of noisy training (absolute); None = sigma_max"""
    noisy_bits: tuple[int, ...] = (4, 8)
    """bit widths of the quantized noisy-trained variants (Fig. 3), each with dynamic and constant scaling"""
    noisy_scale: float = 1.0
    """constant scale s of the constant-scaling variant in noisy training (Fig. 3)"""
    walking_test_subset: int | None = None
    """test images of each walking-noise sweep (one sweep per noise module); None = all 10,000"""
    per_arch: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _merge_per_arch({}))
    """architecture -> {key: value} (keys: PER_ARCH_KEYS): its constant scales (paper defaults: PAPER_PER_ARCH) and
    its own values of the fields in OVERRIDABLE (e.g. fewer images and epochs for VGG-11); given values override
    the paper defaults key by key"""

    def __post_init__(self) -> None:
        _check_types(self)
        object.__setattr__(self, "per_arch", _merge_per_arch(self.per_arch))
        lo, hi = self._noisy_range()
        if not 0 < lo < hi:
            raise ValueError(f"noisy training sigmas must satisfy 0 < noisy_sigma_min < noisy_sigma_max, got "
                             f"{lo!r} and {hi!r}")

    def sigmas(self) -> tuple[float, ...]:
        """The evaluation grid: ``n_sigmas`` points, log-spaced from ``sigma_min`` to ``sigma_max``."""
        return self._grid(self.n_sigmas)

    def noisy_sigmas(self) -> tuple[float, ...]:
        """The training sigmas of noisy training: ``noisy_n_sigmas`` log-spaced points from ``noisy_sigma_min``
        to ``noisy_sigma_max`` (by default the evaluation range, as the paper)."""
        return self._grid(self.noisy_n_sigmas, *self._noisy_range())

    def _noisy_range(self) -> tuple[float, float]:
        """(smallest, largest) training sigma of noisy training: the profile's own, else the evaluation range."""
        return (self.sigma_min if self.noisy_sigma_min is None else self.noisy_sigma_min,
                self.sigma_max if self.noisy_sigma_max is None else self.noisy_sigma_max)

    def _grid(self, n: int, lo: float | None = None, hi: float | None = None) -> tuple[float, ...]:
        """``n`` log-spaced points from ``lo`` to ``hi`` (default: the evaluation range)."""
        lo, hi = (self.sigma_min if lo is None else lo), (self.sigma_max if hi is None else hi)
        return canonical_grid(np.logspace(np.log10(lo), np.log10(hi), n))  # the same floats on every machine (§12)

    def _arch(self, arch: str) -> Mapping[str, Any]:
        if arch not in self.per_arch:
            raise ValueError(f"unknown architecture {arch!r}; valid architectures: {', '.join(self.per_arch)}")
        return self.per_arch[arch]

    def overrides(self, arch: str) -> dict[str, Any]:
        """The fields of OVERRIDABLE that ``per_arch`` sets for ``arch`` (empty: the profile-wide values)."""
        return {k: v for k, v in self._arch(arch).items() if k in OVERRIDABLE}

    def for_arch(self, arch: str) -> Profile:
        """This profile with ``arch``'s values of ``per_arch`` applied (epochs, subsets, seeds, repeats).

        The result keeps every architecture's scales and no other per-architecture values.
        """
        scales_only = {a: {"scales": v["scales"]} for a, v in self.per_arch.items()}
        return replace(self, per_arch=scales_only, **self.overrides(arch))

    def scales(self, arch: str) -> tuple[float, ...]:
        """The constant activation scales of ``arch`` (Fig. 2, Table I), from ``per_arch``."""
        return self._arch(arch)["scales"]

    def spec(self, arch: str, **fields: Any) -> RunSpec:
        """A :class:`RunSpec` with this profile's epochs, subsets and grid; ``fields`` override.

        The architecture's overrides apply; noisy training of VGG-11 gets the
        profile's ramp (capped at the epochs).
        """
        p = self.for_arch(arch)
        base: dict[str, Any] = dict(arch=arch, epochs=p.epochs, train_subset=p.train_subset,
                                    test_subset=p.test_subset, sigmas=p.sigmas(), repeats=p.repeats)
        if arch == "vgg11" and fields.get("sigma_train", 0.0) > 0:
            base["sigma_ramp_epochs"] = min(p.vgg11_ramp_epochs, fields.get("epochs", p.epochs))
        return RunSpec.from_dict({**base, **fields})


def load_profile(name: str | os.PathLike = "quick") -> Profile:
    """Load a named profile (one of :data:`PROFILES`) or a YAML file of the same form.

    Raises:
        ValueError: unknown profile, unknown field or invalid value.
    """
    path = CONFIG_DIR / f"{name}.yaml" if str(name) in PROFILES else Path(name)
    if not path.is_file():
        raise ValueError(
            f"unknown profile {str(name)!r}; choose one of {', '.join(PROFILES)}, or give the path of a YAML file"
        )
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"profile {path} must be a mapping of field: value")
    known = {f.name: f for f in dataclasses.fields(Profile)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} in profile {path}; known fields: {', '.join(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    values.setdefault("name", path.stem)
    try:
        profile = Profile(**values)
    except ValueError as exc:
        raise ValueError(f"in profile {path}: {exc}") from None
    for arch in ARCHS:
        profile.spec(arch)  # validates epochs, subsets, grid, with the overrides
        if not (isinstance(profile.for_arch(arch).seeds, int) and profile.for_arch(arch).seeds >= 1):
            raise ValueError(f"seeds must be an integer >= 1 in profile {path}")
        for s in (*profile.scales(arch), profile.noisy_scale):
            RunSpec(arch=arch, bits=profile.bits[0] if profile.bits else 8, scale=s)
    for b in (*profile.bits, *profile.noisy_bits):
        RunSpec(bits=b)
    return profile
