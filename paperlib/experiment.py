"""Run specs and a content-addressed result cache: nothing computed twice, nothing lost.

A :class:`RunSpec` holds everything that determines one trained network and
its noise evaluation. :func:`run` trains it (or finds it in the cache),
evaluates the noise levels the cache does not hold yet, and returns a
:class:`RunResult`.

Cache layout under the results directory (``results_dir``, else
``$PAPERLIB_RESULTS``, else ``./results``)::

    runs/<train key>/record.json          spec, history, clean accuracy, provenance
    runs/<train key>/weights.pt           state dict (only below the size limit)
    runs/<train key>/curve-<eval key>.csv sigma, repeat, accuracy
    partial/<train key>/checkpoint.pt     a run in progress (resumed after an interruption)
    corrupt/<train key>-<time>/           unreadable entries, moved aside (never deleted)

The train key hashes only the fields that determine training, so adding
sigma points or repeats evaluates the cached weights and never retrains. An
entry is written into a temporary folder and renamed into place, so it appears
whole or not at all; when two processes finish the same spec, the first rename
wins and the second process uses its entry. Curve files are rewritten
atomically under a file lock.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import math
import os
import shutil
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from .atomic import write_atomic
from .data import CIFAR10Data, load_cifar10
from .device import resolve_device
from .evaluate import DEFAULT_SIGMAS, evaluate_pairs, summarize_sweep
from .midpoint import MidpointFit, fit_midpoint
from .models import ARCHS, build_model
from .noise import NOISE_KINDS, check_sigma
from .provenance import provenance
from .quant import check_quant_args
from .training import TrainConfig, default_lr, train

#: Bumped when a change of code changes what a cached result means.
CACHE_VERSION = 1
#: Weights above this size (MiB, fp32) are not kept (VGG-11: 107 MiB).
DEFAULT_WEIGHTS_LIMIT_MB = 64.0
#: Seed of the training/test subsets: every run of a profile sees the same images.
SUBSET_SEED = 0


class CacheWarning(UserWarning):
    """A cache entry was unreadable and is recomputed, or weights had to be retrained."""


@dataclass(frozen=True)
class RunSpec:
    """One trained network and its noise evaluation (REFERENCE §6-7)."""

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
    """data set identity, e.g. "CIFAR-10 (JPEG copy)"; None = whatever the data root holds (resolved by run)"""
    sigmas: tuple[float, ...] = tuple(float(s) for s in DEFAULT_SIGMAS)
    """evaluation noise levels (absolute sigma); evaluation only"""
    repeats: int = 5
    """noise draws per sigma; evaluation only"""
    noise_kind: str = "additive"
    """evaluation noise: additive, multiplicative, combined or weight (see paperlib.set_noise); evaluation only"""
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
        sigmas = tuple(float(check_sigma(float(s))) for s in np.atleast_1d(self.sigmas))
        if not sigmas:
            raise ValueError("sigmas must hold at least one noise level")
        object.__setattr__(self, "sigmas", sigmas)
        if self.scale is not None:
            object.__setattr__(self, "scale", float(self.scale))
        if not (isinstance(self.repeats, int) and self.repeats >= 1):
            raise ValueError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 10):
                raise ValueError(f"{name} must be None (all images) or an integer >= 10, got {value!r}")
        if self.noise_kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise_kind {self.noise_kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        for name in ("sigma_alpha", "sigma_theta"):  # 1 and 1.0 are one spec, with one cache key
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        self.train_config()  # validates epochs, lr, batch size, sigma_train, the ramp and the training noise

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunSpec":
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
                           sigma_alpha=self.sigma_alpha, sigma_theta=self.sigma_theta, sigma_sampling=self.sigma_sampling)

    def training_fields(self) -> dict[str, Any]:
        """The fields that determine the trained network (learning rate resolved).

        Fields added after the first release (:data:`HASH_OPTIONAL_DEFAULTS`)
        are left out at their default, so every older spec keeps its cache key.
        """
        out = {k: v for k, v in self.to_dict().items() if k not in ("sigmas", "repeats", "noise_kind")
               and not (k in HASH_OPTIONAL_DEFAULTS and v == HASH_OPTIONAL_DEFAULTS[k])}
        out["lr"] = self.train_config().lr
        return out

    def train_key(self) -> str:
        """Stable hash of :meth:`training_fields` (needs ``dataset`` resolved)."""
        if self.dataset is None:
            raise ValueError("resolve the data set first: the cache key depends on it (run() does this)")
        return _hash({"v": CACHE_VERSION, **self.training_fields()})

    def eval_key(self) -> str:
        """Stable hash of the evaluation settings that are not grid points (the noise kind)."""
        return _hash({"v": CACHE_VERSION, "noise_kind": self.noise_kind})

    def pairs(self) -> list[tuple[float, int]]:
        """The (sigma, repeat) pairs this spec evaluates."""
        return [(s, r) for s in self.sigmas for r in range(self.repeats)]


#: RunSpec training fields added after the first release, with the defaults at which they are not hashed.
HASH_OPTIONAL_DEFAULTS: dict[str, Any] = {"train_noise_kind": "additive", "sigma_alpha": 1.0, "sigma_theta": 0.0,
                                          "sigma_sampling": "fixed"}


def _hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RunResult:
    """What :func:`run` returns. Accuracies are fractions."""

    spec: RunSpec
    """the spec, with its data set resolved"""
    key: str
    """the cache key (train key)"""
    accuracy: float
    """clean (sigma 0) test accuracy after training; NaN when diverged"""
    noise_curve: pd.DataFrame
    """sigma, repeat, accuracy for the spec's grid (empty when diverged)"""
    midpoint: MidpointFit
    """fit_midpoint on the mean/std over repeats of ``noise_curve``"""
    history: pd.DataFrame
    """per-epoch training history"""
    diverged: bool
    """training stopped on a NaN/inf loss"""
    error: str | None
    """why the run diverged"""
    trained: bool
    """whether this call trained the network (False: it came from the cache)"""
    record: dict = field(repr=False, default_factory=dict)
    """the cache record: provenance, throughput, wall time, weights kept"""
    path: Path | None = None
    """the cache entry's folder"""

    def load_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The trained network, from the cached weights."""
        model = _load_weights(self.path, self.spec, resolve_device(device))
        if model is None:
            raise FileNotFoundError(f"no weights kept for run {self.key} (over the size limit, or diverged)")
        return model


def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """The results directory: ``results_dir``, else ``$PAPERLIB_RESULTS``, else ``./results``."""
    return Path(results_dir if results_dir is not None else os.environ.get("PAPERLIB_RESULTS", "results")).expanduser()


def _quarantine(root: Path, entry: Path, why: str) -> None:
    dest = root / "corrupt" / f"{entry.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.rename(entry, dest)
    warnings.warn(f"cache entry {entry} was unreadable ({why}); moved to {dest} and recomputing", CacheWarning, stacklevel=3)


_RECORD_KEYS = {"cache_version", "key", "spec", "accuracy", "diverged", "error", "history", "weights", "provenance"}


def _read_record(root: Path, entry: Path) -> dict | None:
    """The entry's record, or None (missing; or unreadable: moved aside with a warning)."""
    if not entry.exists():
        return None
    try:
        record = json.loads((entry / "record.json").read_text())
        missing = _RECORD_KEYS - set(record)
        if missing:
            raise ValueError(f"record.json lacks {', '.join(sorted(missing))}")
        if record["weights"] and not (entry / "weights.pt").is_file():
            raise ValueError("weights.pt is missing")
        return record
    except (OSError, ValueError) as exc:
        _quarantine(root, entry, str(exc))
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _empty_curve() -> pd.DataFrame:
    return pd.DataFrame({"sigma": pd.Series(dtype=float), "repeat": pd.Series(dtype=int), "accuracy": pd.Series(dtype=float)})


def _read_curve(path: Path) -> pd.DataFrame:
    """A cached curve; empty when missing or unreadable (with a warning)."""
    if not path.is_file():
        return _empty_curve()
    try:
        curve = pd.read_csv(path)
        if list(curve.columns) != ["sigma", "repeat", "accuracy"] or curve.isna().any().any():
            raise ValueError("unexpected columns or missing values")
        return curve
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        warnings.warn(f"noise curve {path} was unreadable ({exc}); re-evaluating its points", CacheWarning, stacklevel=3)
        return _empty_curve()


def _load_weights(entry: Path | None, spec: RunSpec, device: torch.device) -> nn.Module | None:
    if entry is None or not (entry / "weights.pt").is_file():
        return None
    model = build_model(spec.arch, spec.bits, spec.scale)
    try:
        model.load_state_dict(torch.load(entry / "weights.pt", map_location="cpu", weights_only=True))
    except Exception as exc:  # truncated or foreign file
        warnings.warn(f"weights {entry / 'weights.pt'} unreadable ({exc}); retraining", CacheWarning, stacklevel=3)
        return None
    return model.to(device).eval()


@functools.lru_cache(maxsize=2)
def shared_data(root: str | None, device: str) -> CIFAR10Data:
    """The full data set, loaded once per process and device (Dask workers: preload with ``client.run``)."""
    return load_cifar10(root, device=device)


def _train(spec: RunSpec, data: CIFAR10Data, device: torch.device, checkpoint: Path | None, progress: bool):
    model = build_model(spec.arch, spec.bits, spec.scale, seed=spec.seed)
    res = train(model, data, spec.train_config(), device=device, checkpoint=checkpoint, progress=progress)
    return model, res


def run(
    spec: RunSpec,
    data_root: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    *,
    data: CIFAR10Data | None = None,
    weights_limit_mb: float = DEFAULT_WEIGHTS_LIMIT_MB,
    progress: bool = True,
) -> RunResult:
    """Train and evaluate ``spec``, or take what the cache already holds.

    Args:
        spec: the run.
        data_root: where CIFAR-10 is (see :func:`paperlib.load_cifar10`).
        results_dir: the cache (see module docstring).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` ...
        data: the full data set, already loaded (skips loading).
        weights_limit_mb: keep weights only up to this size (fp32 MiB). Without
            weights, later new sigma points mean retraining.
        progress: tqdm bars.

    Returns:
        A :class:`RunResult`. A diverged run is recorded and returned
        (``diverged=True``), not raised.
    """
    dev = resolve_device(device)
    if data is None:
        data = shared_data(None if data_root is None else str(data_root), str(dev))
    if spec.dataset is None:
        spec = replace(spec, dataset=data.source)
    elif spec.dataset != data.source:
        raise ValueError(f"the spec asks for {spec.dataset!r} but the data root holds {data.source!r}")
    root = results_root(results_dir)
    key, entry = spec.train_key(), root / "runs" / spec.train_key()
    sub = data.subset(train=spec.train_subset, test=spec.test_subset, seed=SUBSET_SEED).to(dev)
    record = _read_record(root, entry)
    model, trained = None, record is None
    if record is None:
        partial = root / "partial" / key
        partial.mkdir(parents=True, exist_ok=True)
        model, res = _train(spec, sub, dev, partial / "checkpoint.pt", progress)
        keep = not res.diverged and sum(p.numel() for p in model.parameters()) * 4 / 2**20 <= weights_limit_mb
        record = {"cache_version": CACHE_VERSION, "key": key, "spec": spec.training_fields(),
                  "accuracy": res.test_accuracy, "diverged": res.diverged, "error": res.error,
                  "history": res.history, "weights": keep, "train_images_per_s": res.images_per_s,
                  "train_wall_time_s": res.wall_time_s, "data": sub.describe(), "provenance": provenance(str(dev))}
        tmp = root / "runs" / f".{key}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir(parents=True)
        if keep:
            torch.save(model.state_dict(), tmp / "weights.pt")
        (tmp / "record.json").write_text(json.dumps(record, indent=1, default=float))
        try:
            os.rename(tmp, entry)
        except OSError:  # another process finished this spec first: use its entry
            shutil.rmtree(tmp, ignore_errors=True)
            record = _read_record(root, entry) or record
        # another process may still be training this spec into the same folder: leave its files alone
        with contextlib.suppress(FileNotFoundError):
            (partial / "checkpoint.pt").unlink()
        with contextlib.suppress(OSError):
            partial.rmdir()
    curve = _curve(spec, record, root, entry, sub, dev, model, progress)
    summary = summarize_sweep(curve)
    fit = (fit_midpoint(summary.sigma, summary.acc_mean, summary.acc_std) if not curve.empty else
           MidpointFit(math.nan, math.nan, math.nan, 0.1, math.nan, False, "training diverged"))
    return RunResult(spec=spec, key=key, accuracy=float(record["accuracy"]),
                     noise_curve=curve, midpoint=fit, history=pd.DataFrame(record["history"]),
                     diverged=bool(record["diverged"]), error=record["error"], trained=trained, record=record,
                     path=entry if entry.exists() else None)


def _curve(spec: RunSpec, record: dict, root: Path, entry: Path, data: CIFAR10Data, dev: torch.device,
           model: nn.Module | None, progress: bool) -> pd.DataFrame:
    """The spec's (sigma, repeat) accuracies: cached ones, plus the missing ones evaluated now."""
    wanted = spec.pairs()
    if record["diverged"]:
        return _empty_curve()
    path = entry / f"curve-{spec.eval_key()}.csv"
    with _locked(entry / ".curve.lock"):
        cached = _read_curve(path)
        have = set(zip(cached.sigma.astype(float), cached.repeat.astype(int)))
        missing = [p for p in wanted if p not in have]
        if missing:
            if model is None:
                model = _load_weights(entry, spec, dev)
            if model is None:
                warnings.warn(f"run {entry.name} keeps no weights; retraining it to evaluate {len(missing)} new noise points",
                              CacheWarning, stacklevel=3)
                model, _ = _train(spec, data, dev, None, progress)
            # a seed per set of missing points: draws for points added later are independent of earlier ones
            seed = int(_hash({"seed": spec.seed, "pairs": missing}), 16) % 2**62
            new = evaluate_pairs(model.to(dev), data.x_test, data.y_test, missing, kind=spec.noise_kind, seed=seed, progress=progress)
            cached = pd.concat([cached, new], ignore_index=True) if len(cached) else new
            write_atomic(path, lambda f: f.write(cached.to_csv(index=False).encode()))
    index = pd.MultiIndex.from_tuples(wanted, names=["sigma", "repeat"])
    return cached.set_index(["sigma", "repeat"]).loc[index].reset_index()
