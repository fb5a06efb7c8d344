"""What one run is: :class:`RunSpec` and the hash that makes its cache key (docs/protocol.md §6-7, §12).

A :class:`RunSpec` holds everything that determines one trained network and
its noise evaluation. Its train key (:meth:`RunSpec.train_key`) hashes only the
fields that determine training, with :data:`CACHE_VERSION`; fields added after
the first release are left out at their defaults (:data:`HASH_OPTIONAL_DEFAULTS`),
so every older spec keeps its key. Its eval key (:meth:`RunSpec.eval_key`)
hashes the evaluation settings that are not grid points. The cache that these
keys address is :mod:`paperlib.runs.cache`; :func:`paperlib.runs.experiment.run`
runs a spec.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..evaluate import DEFAULT_SIGMAS
from ..models import ARCHS
from ..noise import NOISE_KINDS, check_sigma
from ..quant import check_quant_args
from ..training import TrainConfig, default_lr

#: Bumped when a change of code changes what a cached result means.
CACHE_VERSION = 1
#: Seed of the training/test subsets: every run of a profile sees the same images.
SUBSET_SEED = 0
#: Significant decimal digits of every float that enters a cache key or names a stored point (docs/protocol.md §12).
KEY_DIGITS = 12
#: The float fields of a spec that are made canonical (:func:`canonical`) before they are hashed or stored.
CANONICAL_FIELDS: tuple[str, ...] = ("scale", "sigma_train", "lr", "sigma_alpha", "sigma_theta")


def canonical(x: float) -> float:
    """``x`` rounded to :data:`KEY_DIGITS` significant decimal digits: the same float on every machine.

    A grid made by ``np.logspace`` differs in the last bit between CPUs and
    numpy builds (``10 ** -1.25`` by hand is one ulp away from numpy's on some
    machines), and a key hashes the float's exact decimal form. Rounding to 12
    digits (correctly rounded by Python's ``format``) maps every such variant to
    one float, far below any difference that matters (docs/protocol.md §12).
    Exact values (0.25, 8.0, 0.001, integers) are unchanged; ``-0.0`` becomes ``0.0``; inf and NaN stay.
    """
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return abs(x) if x == 0 else x
    return float(f"{x:.{KEY_DIGITS}g}")


def canonical_grid(values) -> tuple[float, ...]:
    """Every point of ``values`` (floats, numpy arrays, strings of numbers) made :func:`canonical`."""
    return tuple(canonical(float(v)) for v in np.atleast_1d(np.asarray(values, dtype=object)))


@dataclass(frozen=True)
class RunSpec:
    """One trained network and its noise evaluation (docs/protocol.md §6-7)."""

    arch: str = "lenet5"
    """lenet5, vgg11 or resnet18"""
    bits: int | None = None
    """weight/activation bit width 4, 8 or 16; None = fp32"""
    scale: float | None = None
    """constant activation step s; None = dynamic scaling (QAT only)"""
    sigma_train: float = 0.0
    """absolute noise sigma during training (noisy training); 0 = none"""
    sigma_ramp_epochs: int = 0
    """epochs over which sigma_train ramps up linearly from 0 (authors' VGG-11: 100)"""
    epochs: int = 500
    """training epochs (paper: 500)"""
    lr: float | None = None
    """initial Adam learning rate; None = the paper's per architecture (see default_lr)"""
    batch_size: int = 128
    """images per training step"""
    seed: int = 0
    """seed of weight init, data order, augmentation, training noise and evaluation noise"""
    train_subset: int | None = None
    """stratified subset of the training set (images); None = all 50,000"""
    test_subset: int | None = None
    """stratified subset of the test set (images); None = all 10,000"""
    dataset: str | None = None
    """data set label, e.g. "CIFAR-10 (JPEG copy)" (hashed); None = whatever the data root holds (resolved by run)"""
    data_digest: str | None = None
    """content digest of the full data set (CIFAR10Data.digest, 16 hex; docs/protocol.md §12): what tells data sets
    apart in the key; None = resolved by run; hashed when set"""
    sigmas: tuple[float, ...] = tuple(float(s) for s in DEFAULT_SIGMAS)
    """evaluation noise levels (absolute sigma); evaluation only"""
    repeats: int = 5
    """noise draws per sigma; evaluation only"""
    noise_kind: str = "additive"
    """evaluation noise: additive, multiplicative, combined or weight (see paperlib.set_noise); evaluation only"""
    noise_site: int | None = None
    """evaluation noise at this one noise site only (index into paperlib.noise_sites for the noise kind; walking
    noise, docs/protocol.md §9); None = at every site (the paper); evaluation only"""
    eval_test_subset: int | None = None
    """stratified subset of the test set for the noise evaluation (images, seed SUBSET_SEED); None = the spec's
    test_subset; evaluation only"""
    train_noise_kind: str = "additive"
    """kind of the training noise (as noise_kind); only hashed when not additive"""
    sigma_alpha: float = 1.0
    """variance-aware training: weight of sigma_train in each drawn training sigma (dimensionless); see TrainConfig"""
    sigma_theta: float = 0.0
    """variance-aware training: scale of the random part theta * |z| of each training sigma (absolute sigma units)"""
    sigma_sampling: str = "fixed"
    """training sigma: "fixed", "sample" (per image) or "epoch" (per epoch); see TrainConfig"""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        check_quant_args(self.bits, self.scale)
        sigmas = tuple(canonical(check_sigma(float(s))) for s in np.atleast_1d(self.sigmas))
        if not sigmas:
            raise ValueError("sigmas must hold at least one noise level")
        object.__setattr__(self, "sigmas", sigmas)
        for name in CANONICAL_FIELDS:  # one float on every machine, and 1 and 1.0 are one spec (§12)
            value = getattr(self, name)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                object.__setattr__(self, name, canonical(value))
        if not (isinstance(self.repeats, int) and self.repeats >= 1):
            raise ValueError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        for name, none in (("train_subset", "all images"), ("test_subset", "all images"),
                           ("eval_test_subset", "the spec's test_subset")):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 10):
                raise ValueError(f"{name} must be None ({none}) or an integer >= 10, got {value!r}")
        site = self.noise_site
        if isinstance(site, np.integer):
            object.__setattr__(self, "noise_site", site := int(site))
        if site is not None and not (isinstance(site, int) and not isinstance(site, bool) and site >= 0):
            raise ValueError(
                f"noise_site must be None (noise at every site) or a whole number >= 0 (the index of one noise site, "
                f"as in paperlib.noise_sites), got {site!r}"
            )
        if self.noise_kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise_kind {self.noise_kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        self.train_config()  # validates epochs, lr, batch size, sigma_train, the ramp and the training noise

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSpec:
        """Build a spec from a mapping; unknown keys are an error that lists the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown RunSpec field(s) {', '.join(unknown)}; known fields: {', '.join(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-friendly values."""
        out = asdict(self)
        out["sigmas"] = list(self.sigmas)
        return out

    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` of this run (learning rate resolved)."""
        lr = self.lr if self.lr is not None else default_lr(self.arch, self.bits)
        return TrainConfig(epochs=self.epochs, lr=lr, batch_size=self.batch_size, sigma_train=self.sigma_train,
                           sigma_ramp_epochs=self.sigma_ramp_epochs, seed=self.seed, noise_kind=self.train_noise_kind,
                           sigma_alpha=self.sigma_alpha, sigma_theta=self.sigma_theta,
                           sigma_sampling=self.sigma_sampling)

    def training_fields(self) -> dict[str, Any]:
        """The fields that determine the trained network (learning rate resolved).

        Fields added after the first release (:data:`HASH_OPTIONAL_DEFAULTS`)
        are left out at their default, so every older spec keeps its cache key.
        """
        out = {
            k: v
            for k, v in self.to_dict().items()
            if k not in EVALUATION_FIELDS
            and not (k in HASH_OPTIONAL_DEFAULTS and v == HASH_OPTIONAL_DEFAULTS[k])
        }
        out["lr"] = canonical(self.train_config().lr)
        return out

    def train_key(self) -> str:
        """Stable hash of :meth:`training_fields` (needs ``dataset`` resolved)."""
        if self.dataset is None:
            raise ValueError("resolve the data set first: the cache key depends on it (run() does this)")
        return _hash({"v": CACHE_VERSION, **self.training_fields()})

    def eval_key(self) -> str:
        """Stable hash of the evaluation settings that are not grid points: the noise kind, and the noise site and
        evaluation test subset only when set (so every curve file of a spec without them keeps its name)."""
        optional = {k: getattr(self, k) for k in ("noise_site", "eval_test_subset") if getattr(self, k) is not None}
        return _hash({"v": CACHE_VERSION, "noise_kind": self.noise_kind, **optional})

    def pairs(self) -> list[tuple[float, int]]:
        """The (sigma, repeat) pairs this spec evaluates."""
        return [(s, r) for s in self.sigmas for r in range(self.repeats)]


#: RunSpec fields that set the noise evaluation only: never in the train key.
EVALUATION_FIELDS: tuple[str, ...] = ("sigmas", "repeats", "noise_kind", "noise_site", "eval_test_subset")

#: RunSpec training fields added after the first release, with the defaults at which they are not hashed.
HASH_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "train_noise_kind": "additive",
    "sigma_alpha": 1.0,
    "sigma_theta": 0.0,
    "sigma_sampling": "fixed",
    "data_digest": None,
}


def _hash(obj: dict) -> str:
    """16 hex of the SHA-256 of ``obj`` as sorted-key JSON: the form of every cache key (never change it)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
