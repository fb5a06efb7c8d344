"""Running one spec: train it or find it in the result cache, evaluate the noise levels missing, return the result.

:func:`run` takes a :class:`~paperlib.runs.spec.RunSpec` (what one run is and
its cache key) and returns a :class:`RunResult`: the trained network comes
from the cache (:mod:`paperlib.runs.cache`: layout, code fingerprints, stale
entries, weights policy) when this code made it, else it is trained (resumed
from a partial checkpoint after an interruption) and written there whole or
not at all; then the (sigma, repeat) points the cache does not hold yet are
evaluated and added to its curve file. Adding sigma points or repeats
evaluates the cached weights and never retrains.

Walking noise (docs/protocol.md §9): a spec with ``noise_site=k`` is evaluated
with noise at the one noise site ``k`` (``paperlib.noise_sites``) only, and one
with ``eval_test_subset=n`` on ``n`` test images of the full data set; both
are evaluation settings (the spec's eval key names their curve file, the
trained network is the one of the same spec without them).

Diverged runs (docs/protocol.md §11): a network whose training loss became
NaN/inf is scored as its NaN logits score in the authors' loop, argmax = class
0, so its accuracy is the fraction of test labels equal to 0 (about 0.1) at
every sigma and as its clean accuracy; the record says so (``scored``).

Weights: ``run(..., need_weights=True)`` retrains a network whose weights
were not kept (from its seed, with a :class:`CacheWarning` and a check of its
clean accuracy against the record) and keeps them.

The spec and cache names (``RunSpec``, ``CACHE_VERSION``, ``SUBSET_SEED``,
``CacheWarning``, ``ResultsNotWritableError``, ``check_writable``,
``results_root``, ``reuse_stale_default``, ``DEFAULT_WEIGHTS_LIMIT_MB``) are
importable from here too.
"""
from __future__ import annotations

import functools
import json
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from ..data import CIFAR10Data, load_cifar10
from ..device import deterministic_default, reproducible, resolve_device
from ..evaluate import evaluate_pairs, nan_logit_accuracy, summarize_sweep
from ..midpoint import MidpointFit, fit_midpoint_calibrated
from ..models import build_model
from ..noise import noise_sites
from ..resume import quantizers_kept
from ..training import TrainResult, train
from .cache import (
    DEFAULT_WEIGHTS_LIMIT_MB,
    CacheWarning,
    ResultsNotWritableError,
    check_fingerprint,
    check_writable,
    curve_path,
    drop_partial,
    keeps_weights,
    load_weights,
    locked_if_writable,
    made_elsewhere,
    migrate_keys,
    open_partial,
    read_curve,
    read_record,
    results_root,
    reuse_stale_default,
    save_weights,
    weights_mb,
    write_curve,
    write_entry,
    write_record,
)
from .fingerprint import code_fingerprint, packed_record, same_code
from .provenance import provenance
from .spec import CACHE_VERSION, SUBSET_SEED, RunSpec, _hash

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_WEIGHTS_LIMIT_MB",
    "DIVERGED_SCORING",
    "SUBSET_SEED",
    "CacheWarning",
    "ResultsNotWritableError",
    "RunResult",
    "RunSpec",
    "check_writable",
    "eval_seed",
    "results_root",
    "reuse_stale_default",
    "run",
    "shared_data",
]

#: How a diverged network is scored (docs/protocol.md §11), as written into its record.
DIVERGED_SCORING = "scored as NaN logits: argmax = class 0"


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
    """sigma, repeat, accuracy for the spec's grid, with noise at ``spec.noise_site`` only when set, on
    ``spec.eval_test_subset`` test images when set (a diverged run: its NaN-logit score at every point)"""
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
    evaluated: int = 0
    """noise points (sigma, repeat) this call evaluated; 0: every point came from the cache"""

    @property
    def revision(self) -> str | None:
        """git revision of the checkout that trained the network (from the record's provenance)."""
        return self.record.get("provenance", {}).get("revision")

    @property
    def deterministic(self) -> bool | None:
        """Whether the network was trained with deterministic kernels (CPU: always; CUDA: unless opted out); None:
        recorded before results said so."""
        return (self.record.get("numerics") or {}).get("deterministic")

    @property
    def pack(self) -> int:
        """How many networks were trained together with this one in a pack (:mod:`paperlib.pack`); 1: alone."""
        return int((self.record.get("trained_in") or {}).get("pack") or 1)

    @property
    def device(self) -> str | None:
        """The device that trained the network (from the record's provenance)."""
        return self.record.get("provenance", {}).get("device")

    @property
    def torch_version(self) -> str | None:
        """The torch version that trained the network (from the record's code fingerprint); None: not recorded."""
        return ((self.record.get("fingerprint") or {}).get("packages") or {}).get("torch")

    @property
    def code(self) -> str | None:
        """combined code hash of the fingerprint that trained the network; None: made before fingerprints."""
        return (self.record.get("fingerprint") or {}).get("code")

    def load_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The trained network, from the cached weights; see :func:`run` (``need_weights``) when none were kept."""
        model = load_weights(self.path, self.spec, resolve_device(device))
        if model is None:
            if self.diverged:
                why = "its training diverged (a NaN/inf loss), so it has no usable weights"
            elif self.record.get("weights") or "weights_lost" in (
                    _reread(self.path, self.record) if self.path is not None else self.record):
                why = ("its weights file was missing or unreadable (set aside in the results folder's corrupt/); "
                       "run(spec, need_weights=True) retrains it from its seed and keeps them")
            elif self.record.get("weights_not_exported"):
                why = ("its results were imported without weights (make export WEIGHTS=1 on the machine that trained "
                       "it carries them); run(spec, need_weights=True) retrains it from its seed and keeps them")
            else:
                size = self.record.get("weights_mb")
                why = (
                    f"its weights{f' ({size:.1f} MiB)' if size else ''} were over the weights limit (kept "
                    f"above it only for networks trained without noise), so they were not kept; "
                    f"run(spec, need_weights=True) retrains it from its seed and keeps them"
                )
            raise FileNotFoundError(f"no weights for run {self.key}: {why}")
        return model


@functools.lru_cache(maxsize=2)
def shared_data(root: str | None, device: str) -> CIFAR10Data:
    """The full data set, loaded once per process and device (Dask workers: preload with ``client.run``)."""
    return load_cifar10(root, device=device)


def _train(spec: RunSpec, data: CIFAR10Data, device: torch.device, checkpoint: Path | None, progress: bool):
    model = build_model(spec.arch, spec.bits, spec.scale, seed=spec.seed)
    with quantizers_kept():  # a resumed dynamic scale goes on learning (paperlib.resume)
        res = train(model, data, spec.train_config(), device=device, checkpoint=checkpoint, progress=progress)
    return model, res


def _train_in_partial(
    spec: RunSpec, data: CIFAR10Data, device: torch.device, root: Path, key: str, fingerprint: dict, progress: bool
):
    """Train with a checkpoint in ``partial/<key>``; a checkpoint of other code is moved aside, not resumed."""
    return _train(spec, data, device, open_partial(root, key, fingerprint), progress)


def _nan_logit_accuracy(data: CIFAR10Data) -> float:
    """The accuracy of a diverged network on ``data``'s test set (see :func:`paperlib.evaluate.nan_logit_accuracy`)."""
    return nan_logit_accuracy(data.y_test)


@functools.lru_cache(maxsize=32)
def _site_count(arch: str, bits: int | None, scale: float | None, kind: str) -> int:
    """How many noise sites of ``kind`` the network of ``arch``, ``bits``, ``scale`` has (built once, on the CPU)."""
    return len(noise_sites(build_model(arch, bits, scale, seed=0), kind))


def check_noise_site(spec: RunSpec) -> None:
    """One clear error when ``spec.noise_site`` is not a noise site of its network (counted on one built from the
    spec, as every trained or loaded network is, so that :func:`run` says so before any training)."""
    if spec.noise_site is None:
        return
    n = _site_count(spec.arch, spec.bits, spec.scale, spec.noise_kind)
    if spec.noise_site >= n:
        raise ValueError(
            f"noise_site={spec.noise_site} is not a noise site of {spec.arch}: it has {n} {spec.noise_kind} noise "
            f"sites (paperlib.noise_sites), so use noise_site=0 to {n - 1}, or None for noise at every site"
        )


def _evaluation_images(spec: RunSpec, data: CIFAR10Data, sub: CIFAR10Data, dev: torch.device) -> tuple[Tensor, Tensor]:
    """The test images and labels of the noise evaluation, on ``dev``: ``spec.eval_test_subset`` of the full data
    set ``data`` when set (seed :data:`SUBSET_SEED`), else those of the spec's own subset ``sub``."""
    if spec.eval_test_subset is None:
        return sub.x_test, sub.y_test
    test = data.subset(test=spec.eval_test_subset, seed=SUBSET_SEED)
    return test.x_test.to(dev), test.y_test.to(dev)


def _train_entry(
    spec: RunSpec,
    data: CIFAR10Data,
    dev: torch.device,
    root: Path,
    entry: Path,
    fingerprint: dict,
    weights_limit_mb: float,
    progress: bool,
    numerics: dict | None = None,
) -> tuple[nn.Module, dict]:
    """Train ``spec`` and write its entry (whole or not at all); returns the model and the entry's record;
    ``numerics``: what :func:`paperlib.device.reproducible` says of the kernels, recorded."""
    key = entry.name
    model, res = _train_in_partial(spec, data, dev, root, key, fingerprint, progress)
    record = write_trained(spec, data, dev, root, entry, fingerprint, weights_limit_mb, model, res, numerics)
    drop_partial(root, key)
    return model, record


def write_trained(
    spec: RunSpec,
    data: CIFAR10Data,
    dev: torch.device,
    root: Path,
    entry: Path,
    fingerprint: dict,
    weights_limit_mb: float,
    model: nn.Module,
    res: TrainResult,
    numerics: dict | None,
    trained_in: dict | None = None,
) -> dict:
    """Write the entry of ``spec``'s trained ``model`` (its :class:`paperlib.TrainResult` ``res``), whole or not at
    all, and return its record; ``trained_in``: the pack that trained it (None: trained alone)."""
    key = entry.name
    size_mb = weights_mb(model)
    keep = keeps_weights(spec, size_mb, res.diverged, weights_limit_mb)
    record = {
        "cache_version": CACHE_VERSION,
        "key": key,
        "spec": spec.training_fields(),
        "accuracy": _nan_logit_accuracy(data) if res.diverged else res.test_accuracy,
        "diverged": res.diverged,
        "error": res.error,
        "history": res.history,
        "weights": keep,
        "weights_mb": size_mb,
        "train_images_per_s": res.images_per_s,
        "train_wall_time_s": res.wall_time_s,
        "data": data.describe(),
        "fingerprint": fingerprint,
        "provenance": provenance(str(dev)),
        "numerics": numerics,
    }
    if trained_in is not None:
        record["trained_in"] = trained_in
    if res.diverged:
        record.update(scored=DIVERGED_SCORING, accuracy_before_divergence=res.test_accuracy)
    return write_entry(root, entry, record, model if keep else None)


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
    lost = record.get("weights_lost")
    warnings.warn(
        f"run {key}'s weights file was unreadable ({lost.get('why')}; set aside as {lost.get('moved_to')}); "
        f"retraining it from its seed to repair the entry"
        if isinstance(lost, dict) else
        f"run {key} kept no weights ({f'{size:.1f} MiB, ' if size else ''}over the weights limit); "
        f"retraining it from its seed to get them (need_weights=True)",
        CacheWarning,
        stacklevel=3,
    )
    model, res = _train_in_partial(spec, data, dev, root, key, fingerprint, progress)
    drop_partial(root, key)
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
    save_weights(entry, model)
    record = {
        **{k: v for k, v in record.items() if k != "weights_lost"},
        "weights": True,
        "weights_retrained": {
            "accuracy": res.test_accuracy,
            "matches_record": same,
            "fingerprint": fingerprint,
            "provenance": provenance(str(dev)),
        },
    }
    write_record(entry / "record.json", record)  # after weights.pt: a record never promises missing weights
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
    deterministic: bool | None = None,
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
        deterministic: on CUDA, deterministic kernels (:func:`paperlib.device.reproducible`; recorded as
            ``record["numerics"]``); None = yes unless ``$PAPERLIB_NONDETERMINISTIC`` is 1. No effect on the CPU.

    Returns:
        A :class:`RunResult`. A diverged run is recorded and returned
        (``diverged=True``, scored as NaN logits at every sigma, docs/protocol.md §11), not raised.

    Raises:
        ResultsNotWritableError: the results folder cannot be written (before any loading or training).
    """
    root = check_writable(results_root(results_dir))
    check_noise_site(spec)
    reuse_stale = reuse_stale_default(reuse_stale)
    dev = resolve_device(device)
    if data is None:
        data = shared_data(None if data_root is None else str(data_root), str(dev))
    spec = resolve_spec(spec, data)
    key, entry = spec.train_key(), root / "runs" / spec.train_key()
    sub = data.subset(train=spec.train_subset, test=spec.test_subset, seed=SUBSET_SEED).to(dev)
    images = _evaluation_images(spec, data, sub, dev)
    record, fingerprint = cached_record(root, entry, reuse_stale, dev)
    model, trained = None, record is None
    if record is None:
        for folder in ("runs", "partial"):  # before hours of training, not after them
            check_writable(root / folder)
    with reproducible(dev, deterministic_default(deterministic)) as numerics:
        if record is None:
            limit = math.inf if need_weights else weights_limit_mb  # asked for weights: keep them at any size
            model, record = _train_entry(spec, sub, dev, root, entry, fingerprint, limit, progress, numerics)
        elif need_weights and not record["diverged"] and not (entry / "weights.pt").is_file():  # or set aside
            model, record = _retrain_weights(spec, sub, dev, root, entry, record, fingerprint, progress)
        curve, evaluated = _curve(spec, record, fingerprint, entry, sub, dev, model, progress, images)
    record = _reread(entry, record) if entry.is_dir() else record  # repaired weights rewrote it
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
        evaluated=evaluated,
    )


def resolve_spec(spec: RunSpec, data: CIFAR10Data) -> RunSpec:
    """``spec`` with its data set and data digest resolved from ``data`` (the full data set); one clear error when
    the spec was made for other data or asks for more images than ``data`` holds."""
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
    check_subsets(spec, data)
    return spec


def cached_record(root: Path, entry: Path, reuse_stale: bool, dev: torch.device) -> tuple[dict | None, dict]:
    """The entry's record when this code made it (else None: missing, or moved aside as stale) and the code
    fingerprint it is judged by and its curves are made with: a pack's (:func:`code_fingerprint` ``packed``) for a
    network trained in a pack, else the plain one (docs/protocol.md §12)."""
    record = read_record(root, entry)
    if record is None and migrate_keys(root):  # entries under the keys of unrounded floats (§12) renamed
        record = read_record(root, entry)
    fingerprint = code_fingerprint(packed=packed_record(record))
    if record is not None:
        record = check_fingerprint(root, entry, record, fingerprint, reuse_stale, dev)
    if record is None:
        fingerprint = code_fingerprint()  # trained here, alone
    return record, fingerprint


def _reread(entry: Path, record: dict) -> dict:
    """The entry's record as it is on disk now (a weights file set aside rewrote it); ``record`` when unreadable."""
    try:
        return json.loads((entry / "record.json").read_text())
    except (OSError, ValueError):
        return record


def check_subsets(spec: RunSpec, data: CIFAR10Data) -> None:
    """One clear error when ``spec`` asks for a subset larger than ``data`` holds (it would silently train or test
    on fewer images than its spec and captions say)."""
    for name, split, n, none in (
        ("train_subset", "training", len(data.y_train), "all of them"),
        ("test_subset", "test", len(data.y_test), "all of them"),
        ("eval_test_subset", "test", len(data.y_test), "the spec's test_subset"),
    ):
        want = getattr(spec, name)
        if want is not None and want > n:
            raise ValueError(
                f"{name}={want:,} asks for more {split} images than the data set holds ({n:,} in {data.source}); "
                f"use {name}=None ({none}) or at most {n:,}"
            )


def _missing(curve: pd.DataFrame, wanted: list[tuple[float, int]]) -> list[tuple[float, int]]:
    have = set(zip(curve.sigma.astype(float), curve.repeat.astype(int)))
    return [p for p in wanted if p not in have]


def eval_seed(spec: RunSpec, pairs: list[tuple[float, int]]) -> int:
    """The seed of the noise draws that evaluate ``pairs`` (the (sigma, repeat) points a curve lacks) of ``spec``.

    One seed per set of missing points: draws for points added later are independent of earlier ones; one noise
    site's draws are independent of another's (walking noise), and without a site the seed is as it always was.
    This module is outside the code hash (docs/protocol.md §12), so tests/test_zoo.py pins what it gives: a shipped
    network's curve, evaluated with it, is the committed figure's.
    """
    site = {} if spec.noise_site is None else {"site": spec.noise_site}
    return int(_hash({"seed": spec.seed, "pairs": pairs, **site}), 16) % 2**62


def _curve(
    spec: RunSpec,
    record: dict,
    fingerprint: dict,
    entry: Path,
    data: CIFAR10Data,
    dev: torch.device,
    model: nn.Module | None,
    progress: bool,
    images: tuple[Tensor, Tensor] | None = None,
) -> tuple[pd.DataFrame, int]:
    """The spec's (sigma, repeat) accuracies: cached ones, plus the missing ones evaluated now; and how many points
    were evaluated now.

    Points of one curve file are all made by one code fingerprint. An entry of
    other code reused as asked gives its old points when they cover the grid;
    else the whole grid comes from this code's file (never a merge of both).
    ``data`` is the spec's subset (what a retraining here trains on); ``images``
    the test images and labels of the evaluation (None: ``data``'s test set).
    """
    wanted = spec.pairs()
    x_eval, y_eval = (data.x_test, data.y_test) if images is None else images
    if record["diverged"]:  # NaN logits: argmax = class 0 at every sigma (docs/protocol.md §11)
        return pd.DataFrame(
            {"sigma": [s for s, _ in wanted], "repeat": [r for _, r in wanted], "accuracy": nan_logit_accuracy(y_eval)}
        ), 0
    made_by = record.get("fingerprint")
    path = curve_path(entry, spec, made_by)
    with locked_if_writable(entry / ".curve.lock") as writable:  # read-only: cached points can still be read
        cached = read_curve(path)
        missing = _missing(cached, wanted)
        missing_there = len(missing)  # in the curve file of the code (and packages) that trained it
        if missing and not same_code(made_by, fingerprint):
            path = curve_path(entry, spec, fingerprint)
            cached = read_curve(path)
            missing = _missing(cached, wanted)
        if missing and not writable:
            raise ResultsNotWritableError(
                f"run {entry.name} needs {len(missing)} noise point(s) that its cache entry lacks, but {entry} cannot "
                f"be written (read-only); make it writable, or copy the results to a writable folder (results_dir=...)"
            )
        if missing:
            if model is None:
                model = load_weights(entry, spec, dev)
            on_disk = _reread(entry, record) if model is None else record
            if model is None and "weights_lost" in on_disk:  # a damaged weights file, set aside: repair it
                model, _ = _retrain_weights(spec, data, dev, entry.parent.parent, entry, on_disk, fingerprint,
                                            progress)
            if model is None and made_elsewhere(record, fingerprint, dev):
                trained_on = record["provenance"].get("device")
                raise ValueError(
                    f"run {entry.name} was trained on {trained_on} (another machine's result, kept as it is) and its "
                    f"curve lacks {missing_there} of the spec's noise points, but its weights are not here; evaluate "
                    f"them where it was trained, or bring its weights (make export WEIGHTS=1 there): retraining it "
                    f"here would make another device's network"
                )
            if model is None:
                warnings.warn(
                    f"run {entry.name} keeps no weights; retraining it to evaluate {len(missing)} new noise points",
                    CacheWarning,
                    stacklevel=3,
                )
                model, _ = _train(spec, data, dev, None, progress)
            new = evaluate_pairs(
                model.to(dev), x_eval, y_eval, missing, layer=spec.noise_site, kind=spec.noise_kind,
                seed=eval_seed(spec, missing), progress=progress,
            )
            cached = pd.concat([cached, new], ignore_index=True) if len(cached) else new
            write_curve(path, cached)
    index = pd.MultiIndex.from_tuples(wanted, names=["sigma", "repeat"])
    return cached.set_index(["sigma", "repeat"]).loc[index].reset_index(), len(missing)
