"""Named profiles: how much of the paper's protocol to run (REFERENCE §6-7).

The defaults of :class:`Profile` are the paper's protocol; each YAML file in
``paperlib/configs/`` lists only what differs from them:

- ``smoke``: every notebook in about a minute on 2 CPU cores (CI, nbval);
- ``quick``: real CIFAR-10, the paper's trends visible, about an hour on a laptop CPU;
- ``paper``: the paper's protocol (500 epochs, the authors' grids, 17 sigmas, 5 seeds).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .experiment import RunSpec

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROFILES: tuple[str, ...] = ("smoke", "quick", "paper")


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

    def sigmas(self) -> tuple[float, ...]:
        """The evaluation grid: ``n_sigmas`` points, log-spaced from ``sigma_min`` to ``sigma_max``."""
        return tuple(float(s) for s in np.logspace(np.log10(self.sigma_min), np.log10(self.sigma_max), self.n_sigmas))

    def scales(self, arch: str) -> tuple[float, ...]:
        """The constant scales of ``arch``."""
        return getattr(self, f"{arch}_scales")

    def spec(self, arch: str, **fields: Any) -> RunSpec:
        """A :class:`RunSpec` with this profile's epochs, subsets and grid; ``fields`` override.

        Noisy training of VGG-11 gets the profile's ramp (capped at the epochs).
        """
        base: dict[str, Any] = dict(arch=arch, epochs=self.epochs, train_subset=self.train_subset,
                                    test_subset=self.test_subset, sigmas=self.sigmas(), repeats=self.repeats)
        if arch == "vgg11" and fields.get("sigma_train", 0.0) > 0:
            base["sigma_ramp_epochs"] = min(self.vgg11_ramp_epochs, fields.get("epochs", self.epochs))
        return RunSpec.from_dict({**base, **fields})


def load_profile(name: str | os.PathLike = "quick") -> Profile:
    """Load a named profile (``smoke``, ``quick``, ``paper``) or a YAML file of the same form.

    Raises:
        ValueError: unknown profile, unknown field or invalid value.
    """
    path = CONFIG_DIR / f"{name}.yaml" if str(name) in PROFILES else Path(name)
    if not path.is_file():
        raise ValueError(f"unknown profile {str(name)!r}; choose one of {', '.join(PROFILES)}, or give the path of a YAML file")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"profile {path} must be a mapping of field: value")
    known = {f.name: f for f in dataclasses.fields(Profile)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} in profile {path}; known fields: {', '.join(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    values.setdefault("name", path.stem)
    profile = Profile(**values)
    profile.spec(profile.archs[0])  # validates epochs, subsets, grid
    for arch in profile.archs:
        for s in profile.scales(arch):
            RunSpec(arch=arch, bits=profile.bits[0] if profile.bits else 8, scale=s)
    return profile
