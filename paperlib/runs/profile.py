"""Named profiles: how much of the paper's protocol to run (docs/protocol.md §6-7).

The defaults of :class:`Profile` are the paper's protocol; each YAML file in
``paperlib/runs/profiles/`` lists only what differs from them:

- ``smoke``: every notebook in about a minute on 2 CPU cores (CI, nbval);
- ``quick``: real CIFAR-10 at laptop scale (the deeper networks on fewer images
  and epochs, via ``arch_overrides``), about an hour on 2 CPU cores;
- ``paper``: the paper's protocol (500 epochs, the authors' grids, 17 sigmas, 5 seeds);
- ``paper-dryrun``: every grid and architecture of ``paper`` at one epoch on 50 images and one seed: tests that
  ``make figures PROFILE=paper`` runs end to end (tests/test_paper_dryrun.py), numbers mean nothing.
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
from .experiment import RunSpec

CONFIG_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES: tuple[str, ...] = ("smoke", "quick", "lenet-full", "paper", "paper-dryrun")
#: Profile fields that ``arch_overrides`` may set per architecture.
OVERRIDABLE: tuple[str, ...] = ("epochs", "train_subset", "test_subset", "seeds", "repeats", "walking_test_subset")


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
    lenet5_scales: tuple[float, ...] = tuple(2.0**k for k in range(-2, 10))
    """constant scales for LeNet-5 (Fig. 2: 0.25 ... 512 in powers of two)"""
    vgg11_scales: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    """constant scales for VGG-11 (Table I)"""
    resnet18_scales: tuple[float, ...] = (0.5, 1.0, 4.0, 8.0, 10.0)
    """constant scales for ResNet-18 (Table I)"""
    archs: tuple[str, ...] = ("lenet5", "vgg11", "resnet18")
    """architectures of the multi-architecture figures (Fig. 3, Table II)"""
    vgg11_ramp_epochs: int = 100
    """VGG-11 noisy training: epochs of the linear sigma ramp (authors: 100 of 500)"""
    noisy_n_sigmas: int = 17
    """training sigmas of noisy training (Fig. 3): this many log-spaced points over the evaluation range"""
    noisy_bits: tuple[int, ...] = (4, 8)
    """bit widths of the quantized noisy-trained variants (Fig. 3), each with dynamic and constant scaling"""
    noisy_scale: float = 1.0
    """constant scale s of the constant-scaling variant in noisy training (Fig. 3)"""
    walking_test_subset: int | None = None
    """test images of each walking-noise sweep (one sweep per noise module); None = all 10,000"""
    arch_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """per-architecture values of the fields in OVERRIDABLE (e.g. fewer images and epochs for VGG-11)"""

    def sigmas(self) -> tuple[float, ...]:
        """The evaluation grid: ``n_sigmas`` points, log-spaced from ``sigma_min`` to ``sigma_max``."""
        return self._grid(self.n_sigmas)

    def noisy_sigmas(self) -> tuple[float, ...]:
        """The training sigmas of noisy training: ``noisy_n_sigmas`` log-spaced points over the same range."""
        return self._grid(self.noisy_n_sigmas)

    def _grid(self, n: int) -> tuple[float, ...]:
        return tuple(float(s) for s in np.logspace(np.log10(self.sigma_min), np.log10(self.sigma_max), n))

    def for_arch(self, arch: str) -> Profile:
        """This profile with ``arch``'s overrides applied (epochs, subsets, seeds, repeats)."""
        return replace(self, arch_overrides={}, **self.arch_overrides.get(arch, {}))

    def scales(self, arch: str) -> tuple[float, ...]:
        """The constant scales of ``arch``."""
        return getattr(self, f"{arch}_scales")

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
    overrides = values.get("arch_overrides", {})
    for arch, fields in overrides.items():
        if arch not in ARCHS or not isinstance(fields, dict) or set(fields) - set(OVERRIDABLE):
            raise ValueError(
                f"arch_overrides in profile {path} must map an architecture ({', '.join(ARCHS)}) "
                f"to values of {', '.join(OVERRIDABLE)}; got {arch}: {fields!r}"
            )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    values.setdefault("name", path.stem)
    profile = Profile(**values)
    for arch in ARCHS:
        profile.spec(arch)  # validates epochs, subsets, grid, with the overrides
        if not (isinstance(profile.for_arch(arch).seeds, int) and profile.for_arch(arch).seeds >= 1):
            raise ValueError(f"seeds must be an integer >= 1 in profile {path}")
        for s in (*profile.scales(arch), profile.noisy_scale):
            RunSpec(arch=arch, bits=profile.bits[0] if profile.bits else 8, scale=s)
    for b in (*profile.bits, *profile.noisy_bits):
        RunSpec(bits=b)
    return profile
