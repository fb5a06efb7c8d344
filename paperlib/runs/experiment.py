"""Run specs and a content-addressed result cache: nothing computed twice, nothing lost, nothing stale.

A :class:`RunSpec` holds everything that determines one trained network and
its noise evaluation. :func:`run` trains it (or finds it in the cache),
evaluates the noise levels the cache does not hold yet, and returns a
:class:`RunResult`.

Cache layout under the results directory (``results_dir``, else
``$PAPERLIB_RESULTS``, else ``./results``)::

    runs/<train key>/record.json          spec, history, clean accuracy, provenance, code fingerprint
    runs/<train key>/weights.pt           state dict (see "Weights" below)
    runs/<train key>/curve-<eval key>-<fingerprint id>.csv
                                          sigma, repeat, accuracy, all made by one code fingerprint
    partial/<train key>/checkpoint.pt     a run in progress (resumed after an interruption) ...
    partial/<train key>/fingerprint.json  ... and the fingerprint of the code that writes it
    stale/<train key>-<time>/             entries made by other code, moved aside (never deleted)
    stale/partial-<train key>-<time>/     checkpoints made by other code, moved aside
    corrupt/<train key>-<time>/           unreadable entries, moved aside (never deleted)

The train key hashes only the fields that determine training, so adding
sigma points or repeats evaluates the cached weights and never retrains. An
entry is written into a temporary folder and renamed into place, so it appears
whole or not at all; when two processes finish the same spec, the first rename
wins and the second process uses its entry. Curve files are rewritten
atomically under a file lock.

Code fingerprint (docs/protocol.md §12): every record stores
:func:`paperlib.fingerprint.code_fingerprint` (a hash per module that makes
numbers, their combined ``code`` hash, the versions of torch, torchvision,
brevitas and numpy). An entry made by other code (``code`` or a package
version differs; an entry from before fingerprints counts as other code) is
never reused silently: by default it is moved to ``stale/`` with a
:class:`CacheWarning` naming the changed modules, and the run is trained and
evaluated afresh. ``run(..., reuse_stale=True)`` (or ``PAPERLIB_REUSE_STALE=1``)
reuses it with such a warning, for a change known to leave the numbers as they
were; its curve points are then taken as they are when they cover the grid,
else the whole grid is evaluated into the current code's curve file (points
of two fingerprints are never merged). A partial checkpoint of other code is
moved aside, not resumed.

Diverged runs (docs/protocol.md §11): a network whose training loss became
NaN/inf is scored as its NaN logits score in the authors' loop, argmax = class
0, so its accuracy is the fraction of test labels equal to 0 (about 0.1) at
every sigma and as its clean accuracy; the record says so (``scored``).

Weights: kept up to ``weights_limit_mb`` (64 MiB fp32); above it, networks
trained without noise are kept anyway and noisy-trained ones are not.
``run(..., need_weights=True)`` retrains one whose weights were not kept (from
its seed, with a :class:`CacheWarning` and a check of its clean accuracy
against the record) and keeps them.
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
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..atomic import write_atomic
from ..data import CIFAR10Data, load_cifar10
from ..device import resolve_device
from ..evaluate import DEFAULT_SIGMAS, evaluate_pairs, nan_logit_accuracy, summarize_sweep
from ..midpoint import MidpointFit, fit_midpoint_calibrated
from ..models import ARCHS, build_model
from ..noise import NOISE_KINDS, check_sigma
from ..quant import check_quant_args
from ..training import TrainConfig, default_lr, remove_checkpoint, train
from .fingerprint import changed_modules, code_fingerprint, same_code
from .provenance import provenance

#: Bumped when a change of code changes what a cached result means.
CACHE_VERSION = 1
#: Weights above this size (MiB, fp32) are not kept (VGG-11: 107 MiB).
DEFAULT_WEIGHTS_LIMIT_MB = 64.0
#: Seed of the training/test subsets: every run of a profile sees the same images.
SUBSET_SEED = 0


#: How a diverged network is scored (docs/protocol.md §11), as written into its record.
DIVERGED_SCORING = "scored as NaN logits: argmax = class 0"


class CacheWarning(UserWarning):
    """A cache entry was unreadable or made by other code, or weights had to be retrained."""


class ResultsNotWritableError(OSError):
    """The results folder cannot be created or written."""


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
            if k not in ("sigmas", "repeats", "noise_kind")
            and not (k in HASH_OPTIONAL_DEFAULTS and v == HASH_OPTIONAL_DEFAULTS[k])
        }
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
HASH_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "train_noise_kind": "additive",
    "sigma_alpha": 1.0,
    "sigma_theta": 0.0,
    "sigma_sampling": "fixed",
    "data_digest": None,
}


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
    """clean (sigma 0) test accuracy after training; a diverged run: the fraction of test labels 0 (§11)"""
    noise_curve: pd.DataFrame
    """sigma, repeat, accuracy for the spec's grid (a diverged run: its NaN-logit score at every point)"""
    midpoint: MidpointFit
    """the calibrated fit (fit_midpoint_calibrated) of the curve over the repeats of ``noise_curve``;
    not ok for a diverged run"""
    history: pd.DataFrame
    """per-epoch training history"""
    diverged: bool
    """training stopped on a NaN/inf loss; scored as NaN logits (argmax = class 0, docs/protocol.md §11)"""
    error: str | None
    """why the run diverged"""
    trained: bool
    """whether this call trained the network (False: it came from the cache)"""
    record: dict = field(repr=False, default_factory=dict)
    """the cache record: provenance, code fingerprint, throughput, wall time, weights kept"""
    path: Path | None = None
    """the cache entry's folder"""

    @property
    def revision(self) -> str | None:
        """git revision of the checkout that trained the network (from the record's provenance)."""
        return self.record.get("provenance", {}).get("revision")

    @property
    def code(self) -> str | None:
        """combined code hash of the fingerprint that trained the network; None: made before fingerprints."""
        return (self.record.get("fingerprint") or {}).get("code")

    def load_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The trained network, from the cached weights; see :func:`run` (``need_weights``) when none were kept."""
        model = _load_weights(self.path, self.spec, resolve_device(device))
        if model is None:
            if self.diverged:
                why = "its training diverged (a NaN/inf loss), so it has no usable weights"
            elif self.record.get("weights"):
                why = "its weights file is missing or unreadable; run(spec) again recomputes the entry"
            else:
                size = self.record.get("weights_mb")
                why = (
                    f"its weights{f' ({size:.1f} MiB)' if size else ''} were over the weights limit (kept "
                    f"above it only for networks trained without noise), so they were not kept; "
                    f"run(spec, need_weights=True) retrains it from its seed and keeps them"
                )
            raise FileNotFoundError(f"no weights for run {self.key}: {why}")
        return model


def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """The results directory: ``results_dir``, else ``$PAPERLIB_RESULTS``, else ``./results``."""
    return Path(results_dir if results_dir is not None else os.environ.get("PAPERLIB_RESULTS", "results")).expanduser()


def check_writable(root: Path) -> Path:
    """``root``, created when missing; one clear error when it cannot be written (nothing left behind)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".write-test-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ResultsNotWritableError(
            f"results folder {root} is not writable ({exc.strerror or exc}); "
            f"pass results_dir=... or set PAPERLIB_RESULTS"
        ) from None
    return root


def reuse_stale_default(reuse_stale: bool | None = None) -> bool:
    """``reuse_stale``, or when None the environment variable ``PAPERLIB_REUSE_STALE`` (1/true/yes = reuse)."""
    if reuse_stale is not None:
        return bool(reuse_stale)
    return os.environ.get("PAPERLIB_REUSE_STALE", "").strip().lower() in ("1", "true", "yes", "on")


def _move_aside(root: Path, src: Path, folder: str, prefix: str = "") -> Path:
    """Move ``src`` to ``root/<folder>/<prefix><name>-<time>-<random>`` (never deleted); returns the destination."""
    dest = root / folder / f"{prefix}{src.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):  # another process moved it first
        os.rename(src, dest)
    return dest


def _quarantine(root: Path, entry: Path, why: str) -> None:
    dest = _move_aside(root, entry, "corrupt")
    warnings.warn(
        f"cache entry {entry} was unreadable ({why}); moved to {dest} and recomputing", CacheWarning, stacklevel=3
    )


def _fingerprint_id(fingerprint: dict | None) -> str | None:
    """16 hex over the code hash and the package versions; None for a record made before fingerprints."""
    if not fingerprint:
        return None
    return _hash({"code": fingerprint.get("code"), "packages": fingerprint.get("packages")})


def _curve_path(entry: Path, spec: RunSpec, fingerprint: dict | None) -> Path:
    """The curve file of ``spec``'s noise kind with points made by code ``fingerprint`` (None: before fingerprints)."""
    fid = _fingerprint_id(fingerprint)
    return entry / (f"curve-{spec.eval_key()}.csv" if fid is None else f"curve-{spec.eval_key()}-{fid}.csv")


def _check_fingerprint(root: Path, entry: Path, record: dict, fingerprint: dict, reuse_stale: bool) -> dict | None:
    """``record`` when made by this code (or reused as asked); None after moving an entry of other code aside."""
    if same_code(record.get("fingerprint"), fingerprint):
        return record
    changed = ", ".join(changed_modules(record.get("fingerprint"), fingerprint))
    rev = record["provenance"].get("revision")
    made = f"cache entry {entry.name} was made by other code (changed: {changed}; rev {rev})"
    if reuse_stale:
        warnings.warn(f"{made}; reusing it as asked (reuse_stale / PAPERLIB_REUSE_STALE=1)", CacheWarning, stacklevel=3)
        return record
    dest = _move_aside(root, entry, "stale")
    warnings.warn(
        f"{made}; moved it to {dest} and computing it afresh (reuse_stale=True or PAPERLIB_REUSE_STALE=1 "
        f"reuses it when the change cannot change results)",
        CacheWarning,
        stacklevel=3,
    )
    return None


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
    return pd.DataFrame(
        {"sigma": pd.Series(dtype=float), "repeat": pd.Series(dtype=int), "accuracy": pd.Series(dtype=float)}
    )


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
        warnings.warn(
            f"noise curve {path} was unreadable ({exc}); re-evaluating its points", CacheWarning, stacklevel=3
        )
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


def _train_in_partial(
    spec: RunSpec, data: CIFAR10Data, device: torch.device, root: Path, key: str, fingerprint: dict, progress: bool
):
    """Train with a checkpoint in ``partial/<key>``; a checkpoint of other code is moved aside, not resumed."""
    partial = root / "partial" / key
    partial.mkdir(parents=True, exist_ok=True)
    ckpt, stamp = partial / "checkpoint.pt", partial / "fingerprint.json"
    if ckpt.exists():
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            old = None  # written before checkpoints carried a fingerprint
        if not same_code(old, fingerprint):
            dest = _move_aside(root, partial, "stale", prefix="partial-")
            warnings.warn(
                f"the partial checkpoint of run {key} was made by other code (changed: "
                f"{', '.join(changed_modules(old, fingerprint))}); moved it to {dest} and training from "
                f"the start",
                CacheWarning,
                stacklevel=3,
            )
            partial.mkdir(parents=True, exist_ok=True)
    write_atomic(stamp, lambda f: f.write(json.dumps(fingerprint).encode()))
    return _train(spec, data, device, ckpt, progress)


def _drop_partial(root: Path, key: str) -> None:
    """Remove ``partial/<key>`` after its entry is written (another process may still train into it: no rmtree)."""
    partial = root / "partial" / key
    for name in ("checkpoint.pt", "fingerprint.json"):
        remove_checkpoint(partial / name)  # and the temporary files of a write that was killed
    with contextlib.suppress(OSError):
        partial.rmdir()


def _nan_logit_accuracy(data: CIFAR10Data) -> float:
    """The accuracy of a diverged network on ``data``'s test set (see :func:`paperlib.evaluate.nan_logit_accuracy`)."""
    return nan_logit_accuracy(data.y_test)


def _trained_without_noise(spec: RunSpec) -> bool:
    return spec.sigma_train == 0 and spec.sigma_theta == 0


def _write_record(path: Path, record: dict) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(record, indent=1, default=float).encode()))


def _train_entry(
    spec: RunSpec,
    data: CIFAR10Data,
    dev: torch.device,
    root: Path,
    entry: Path,
    fingerprint: dict,
    weights_limit_mb: float,
    progress: bool,
) -> tuple[nn.Module, dict]:
    """Train ``spec`` and write its entry (whole or not at all); returns the model and the entry's record."""
    key = entry.name
    model, res = _train_in_partial(spec, data, dev, root, key, fingerprint, progress)
    weights_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    keep = not res.diverged and (weights_mb <= weights_limit_mb or _trained_without_noise(spec))
    record = {
        "cache_version": CACHE_VERSION,
        "key": key,
        "spec": spec.training_fields(),
        "accuracy": _nan_logit_accuracy(data) if res.diverged else res.test_accuracy,
        "diverged": res.diverged,
        "error": res.error,
        "history": res.history,
        "weights": keep,
        "weights_mb": weights_mb,
        "train_images_per_s": res.images_per_s,
        "train_wall_time_s": res.wall_time_s,
        "data": data.describe(),
        "fingerprint": fingerprint,
        "provenance": provenance(str(dev)),
    }
    if res.diverged:
        record.update(scored=DIVERGED_SCORING, accuracy_before_divergence=res.test_accuracy)
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
    _drop_partial(root, key)
    return model, record


def _retrain_weights(
    spec: RunSpec,
    data: CIFAR10Data,
    dev: torch.device,
    root: Path,
    entry: Path,
    record: dict,
    fingerprint: dict,
    progress: bool,
) -> tuple[nn.Module | None, dict]:
    """Retrain a cached network whose weights were not kept, check it against its record, and keep its weights."""
    key = entry.name
    size = record.get("weights_mb")
    warnings.warn(
        f"run {key} kept no weights ({f'{size:.1f} MiB, ' if size else ''}over the weights limit); "
        f"retraining it from its seed to get them (need_weights=True)",
        CacheWarning,
        stacklevel=3,
    )
    model, res = _train_in_partial(spec, data, dev, root, key, fingerprint, progress)
    _drop_partial(root, key)
    if res.diverged:
        warnings.warn(
            f"retraining run {key} diverged ({res.error}) although the recorded run did not; no weights kept",
            CacheWarning,
            stacklevel=3,
        )
        return None, record
    same = res.test_accuracy == record["accuracy"]
    if not same:
        warnings.warn(
            f"the retrained run {key} is NOT the recorded network: clean accuracy {res.test_accuracy:.4f} "
            f"now, {record['accuracy']:.4f} recorded (nondeterministic kernels, e.g. on a GPU, or other "
            f"code); its weights are kept and noise points evaluated from now on come from them",
            CacheWarning,
            stacklevel=3,
        )
    write_atomic(entry / "weights.pt", lambda f: torch.save(model.state_dict(), f))
    record = {
        **record,
        "weights": True,
        "weights_retrained": {
            "accuracy": res.test_accuracy,
            "matches_record": same,
            "fingerprint": fingerprint,
            "provenance": provenance(str(dev)),
        },
    }
    _write_record(entry / "record.json", record)  # after weights.pt: a record never promises missing weights
    return model, record


def run(
    spec: RunSpec,
    data_root: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    *,
    data: CIFAR10Data | None = None,
    weights_limit_mb: float = DEFAULT_WEIGHTS_LIMIT_MB,
    progress: bool = True,
    reuse_stale: bool | None = None,
    need_weights: bool = False,
) -> RunResult:
    """Train and evaluate ``spec``, or take what the cache already holds (made by this code).

    Args:
        spec: the run.
        data_root: where CIFAR-10 is (see :func:`paperlib.load_cifar10`).
        results_dir: the cache (see module docstring); must be writable.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` ...
        data: the full data set, already loaded (skips loading).
        weights_limit_mb: keep weights only up to this size (fp32 MiB); networks trained without
            noise are kept at any size. Without weights, later new sigma points mean retraining.
        progress: tqdm bars.
        reuse_stale: reuse an entry made by other code (with a warning naming the changed modules)
            instead of moving it aside and recomputing it; None = ``$PAPERLIB_REUSE_STALE`` (1 = reuse).
        need_weights: retrain (from the seed, with a warning) a cached network whose weights were not
            kept, check its clean accuracy against the record and keep them, so that
            :meth:`RunResult.load_model` works.

    Returns:
        A :class:`RunResult`. A diverged run is recorded and returned
        (``diverged=True``, scored as NaN logits at every sigma, docs/protocol.md §11), not raised.

    Raises:
        ResultsNotWritableError: the results folder cannot be written (before any loading or training).
    """
    root = check_writable(results_root(results_dir))
    reuse_stale = reuse_stale_default(reuse_stale)
    dev = resolve_device(device)
    if data is None:
        data = shared_data(None if data_root is None else str(data_root), str(dev))
    if spec.dataset is None:
        spec = replace(spec, dataset=data.source)
    elif spec.dataset != data.source:
        raise ValueError(f"the spec asks for {spec.dataset!r} but the data root holds {data.source!r}")
    digest = data.content_digest()  # the key tells data sets apart by content, not by label (docs/protocol.md §12)
    if spec.data_digest is None:
        spec = replace(spec, data_digest=digest)
    elif spec.data_digest != digest:
        raise ValueError(
            f"the spec asks for data with digest {spec.data_digest} but the data root holds {digest} "
            f"({data.source}); point data_root at the data the spec was made for"
        )
    key, entry = spec.train_key(), root / "runs" / spec.train_key()
    sub = data.subset(train=spec.train_subset, test=spec.test_subset, seed=SUBSET_SEED).to(dev)
    fingerprint = code_fingerprint()
    record = _read_record(root, entry)
    if record is not None:
        record = _check_fingerprint(root, entry, record, fingerprint, reuse_stale)
    model, trained = None, record is None
    if record is None:
        limit = math.inf if need_weights else weights_limit_mb  # asked for weights: keep them whatever their size
        model, record = _train_entry(spec, sub, dev, root, entry, fingerprint, limit, progress)
    elif need_weights and not record["diverged"] and not (entry / "weights.pt").is_file():
        model, record = _retrain_weights(spec, sub, dev, root, entry, record, fingerprint, progress)
    curve = _curve(spec, record, fingerprint, entry, sub, dev, model, progress)
    if record["diverged"]:
        fit = MidpointFit(
            math.nan, math.nan, math.nan, 0.1, math.nan, False, f"training diverged; {DIVERGED_SCORING} at every sigma"
        )
    else:
        summary = summarize_sweep(curve)
        fit = fit_midpoint_calibrated(summary.sigma.to_numpy(), summary.acc_mean.to_numpy())
    accuracy = _nan_logit_accuracy(sub) if record["diverged"] else float(record["accuracy"])
    return RunResult(
        spec=spec,
        key=key,
        accuracy=accuracy,
        noise_curve=curve,
        midpoint=fit,
        history=pd.DataFrame(record["history"]),
        diverged=bool(record["diverged"]),
        error=record["error"],
        trained=trained,
        record=record,
        path=entry if entry.exists() else None,
    )


def _missing(curve: pd.DataFrame, wanted: list[tuple[float, int]]) -> list[tuple[float, int]]:
    have = set(zip(curve.sigma.astype(float), curve.repeat.astype(int)))
    return [p for p in wanted if p not in have]


def _curve(
    spec: RunSpec,
    record: dict,
    fingerprint: dict,
    entry: Path,
    data: CIFAR10Data,
    dev: torch.device,
    model: nn.Module | None,
    progress: bool,
) -> pd.DataFrame:
    """The spec's (sigma, repeat) accuracies: cached ones, plus the missing ones evaluated now.

    Points of one curve file are all made by one code fingerprint. An entry of
    other code reused as asked gives its old points when they cover the grid;
    else the whole grid comes from this code's file (never a merge of both).
    """
    wanted = spec.pairs()
    if record["diverged"]:  # NaN logits: argmax = class 0 at every sigma (docs/protocol.md §11)
        return pd.DataFrame(
            {"sigma": [s for s, _ in wanted], "repeat": [r for _, r in wanted], "accuracy": _nan_logit_accuracy(data)}
        )
    made_by = record.get("fingerprint")
    path = _curve_path(entry, spec, made_by)
    with _locked(entry / ".curve.lock"):
        cached = _read_curve(path)
        missing = _missing(cached, wanted)
        if missing and not same_code(made_by, fingerprint):
            path = _curve_path(entry, spec, fingerprint)
            cached = _read_curve(path)
            missing = _missing(cached, wanted)
        if missing:
            if model is None:
                model = _load_weights(entry, spec, dev)
            if model is None:
                warnings.warn(
                    f"run {entry.name} keeps no weights; retraining it to evaluate {len(missing)} new noise points",
                    CacheWarning,
                    stacklevel=3,
                )
                model, _ = _train(spec, data, dev, None, progress)
            # a seed per set of missing points: draws for points added later are independent of earlier ones
            seed = int(_hash({"seed": spec.seed, "pairs": missing}), 16) % 2**62
            new = evaluate_pairs(
                model.to(dev), data.x_test, data.y_test, missing, kind=spec.noise_kind, seed=seed, progress=progress
            )
            cached = pd.concat([cached, new], ignore_index=True) if len(cached) else new
            write_atomic(path, lambda f: f.write(cached.to_csv(index=False).encode()))
    index = pd.MultiIndex.from_tuples(wanted, names=["sigma", "repeat"])
    return cached.set_index(["sigma", "repeat"]).loc[index].reset_index()
