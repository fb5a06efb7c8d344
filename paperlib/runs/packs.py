"""Packs in the run engine: a sweep's networks of one architecture trained together on one device.

:func:`paperlib.run_sweep` with ``pack`` > 1 (by default on CUDA, see
:func:`pack_size`) first trains the specs the cache lacks in packs
(:func:`paperlib.train_pack`), then runs every spec as usual: a network
trained in a pack is in the cache by then, and its noise curve is evaluated
alone, exactly as any cached network's (docs/protocol.md §12).

Which specs share a pack. Specs that differ only in the seed and the training
sigma (:data:`paperlib.pack.PER_NETWORK_FIELDS`) and need training; weight
noise trains alone. Each group, its members sorted by cache key, is split
into packs of at most ``pack`` networks of about equal size, so the same
sweep makes the same packs (and bitwise the same networks) again; a pack of
one trains alone. A pack interrupted part way resumes from its checkpoint in
``partial/pack-<hash of its members>`` when the same networks still need it.

Each network keeps its own cache entry, written whole or not at all, with
``trained_in``: the pack's size, the network's place in it and its members'
keys. A pack equals training alone to float tolerance only, so its networks
carry the code fingerprint of a pack (:func:`~paperlib.runs.fingerprint.code_fingerprint`
``packed``: :mod:`paperlib.pack` hashed too).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import write_atomic
from ..data import CIFAR10Data
from ..device import reproducible, resolve_device
from ..models import build_model
from ..pack import PER_NETWORK_FIELDS, train_pack
from ..threads import dask_task_threads
from . import progress as _progress
from .cache import DEFAULT_WEIGHTS_LIMIT_MB, drop_partial, open_partial
from .experiment import cached_record, check_noise_site, resolve_spec, shared_data, write_trained
from .fingerprint import code_fingerprint
from .spec import SUBSET_SEED, RunSpec, _hash

#: The environment variable that sets the largest pack of a sweep (``run_sweep(pack=None)``); 1: no packs.
ENV = "PAPERLIB_PACK"
#: The largest pack per architecture on CUDA when neither ``pack`` nor ``$PAPERLIB_PACK`` says: LeNet-5 is
#: launch-bound on a GPU (a bare fp32 pack of 32 ran about 20x one network on an H200, the GPU issue's
#: measurement); VGG-11 and ResNet-18 train alone until ``benchmarks/gpu_check.py``'s pack timings show a gain.
CUDA_PACK_SIZES: dict[str, int] = {"lenet5": 32, "vgg11": 1, "resnet18": 1}
#: The file beside a pack's checkpoint that names its members (to resume it).
MEMBERS = "members.json"
#: Seconds between a pack's progress lines (and one after its last epoch).
PROGRESS_S = 60.0


def pack_size(pack: int | None, device: str | torch.device, arch: str) -> int:
    """The largest pack for ``arch``'s networks: ``pack`` when given, else ``$PAPERLIB_PACK`` when set, else
    :data:`CUDA_PACK_SIZES` on CUDA and 1 (no packs) on the CPU, where a network trains alone on one exact thread."""
    if pack is None:
        env = os.environ.get(ENV, "").strip()
        if env:
            if not env.isdigit() or int(env) < 1:
                raise ValueError(f"${ENV}={env!r} is not a pack size; set it to a whole number >= 1 (1: no packs)")
            return int(env)
        return CUDA_PACK_SIZES.get(arch, 1) if resolve_device(device).type == "cuda" else 1
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise ValueError(f"pack must be a whole number >= 1 (the largest pack; 1: every network alone) or None "
                         f"(by device), got {pack!r}")
    return pack


def check_pack(pack: int | None) -> None:
    """One clear error for a bad ``pack`` argument or ``$PAPERLIB_PACK`` before any run."""
    pack_size(pack, "cpu", "lenet5")


def pack_group(spec: RunSpec) -> str:
    """What the networks of one pack share: every field that determines the trained network but the per-network
    ones."""
    return json.dumps({k: v for k, v in spec.training_fields().items() if k not in PER_NETWORK_FIELDS},
                      sort_keys=True, default=str)


def packable(spec: RunSpec) -> bool:
    """Whether ``spec``'s network can train in a pack (weight noise trains alone)."""
    return spec.train_noise_kind != "weight"


def even_packs(members: list[RunSpec], size: int) -> list[list[RunSpec]]:
    """``members`` in consecutive packs of at most ``size``, of sizes differing by one at most."""
    n_packs = -(-len(members) // size)
    base, extra = divmod(len(members), n_packs)
    out, i = [], 0
    for p in range(n_packs):
        k = base + (p < extra)
        out.append(members[i : i + k])
        i += k
    return out


def _pack_id(keys: Sequence[str]) -> str:
    return "pack-" + _hash({"members": list(keys)})


def unfinished_packs(root: Path) -> list[list[str]]:
    """The member keys of every pack with a checkpoint under ``partial/`` (interrupted)."""
    out = []
    for path in sorted((root / "partial").glob(f"pack-*/{MEMBERS}")):
        try:
            keys = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        started = (path.parent / "checkpoint.pt").exists()
        if started and isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            out.append(keys)
    return out


def plan_packs(specs: Sequence[RunSpec], size: int, unfinished: Sequence[Sequence[str]] = ()) -> list[list[RunSpec]]:
    """The packs (two networks or more) in which to train ``specs`` (resolved: their keys known; each needs
    training): grouped by what they share, an interrupted pack of ``unfinished`` (its members' keys) first when all
    its members are there, the rest sorted by key and split evenly into packs of at most ``size``."""
    groups: dict[str, dict[str, RunSpec]] = {}
    for s in specs:
        if packable(s):
            groups.setdefault(pack_group(s), {})[s.train_key()] = s
    packs = []
    for members in groups.values():
        for keys in unfinished:
            if 1 < len(keys) <= size and all(k in members for k in keys):
                packs.append([members.pop(k) for k in keys])
        rest = [members[k] for k in sorted(members)]
        if len(rest) > 1 and size > 1:
            packs += [p for p in even_packs(rest, size) if len(p) > 1]
    return packs


@dataclass
class PackOutcome:
    """What training one pack did."""

    keys: list[str]
    """its networks' cache keys"""
    trained: list[str]
    """the keys whose entries it wrote (a network cached meanwhile by another process keeps that entry)"""
    error: str | None
    """why the pack failed (its networks then train alone); None: it trained"""
    wall_time_s: float
    """wall time, data loading included"""


def train_packed(
    specs: Sequence[RunSpec],
    data: CIFAR10Data,
    dev: torch.device,
    root: Path,
    *,
    deterministic: bool,
    weights_limit_mb: float = DEFAULT_WEIGHTS_LIMIT_MB,
    progress: bool = False,
    on_epoch: Callable[[int, list[dict]], None] | None = None,
) -> list[str]:
    """Train resolved ``specs`` (one pack: they differ in seed and training sigma only) with :func:`paperlib.train_pack`
    and write each network's cache entry; returns the keys written. Resumes from, and then removes, the pack's
    checkpoint in ``partial/pack-<hash>``; ``progress`` and ``on_epoch`` as for :func:`paperlib.train_pack`."""
    keys = [s.train_key() for s in specs]
    fingerprint = code_fingerprint(packed=True)
    pack_id = _pack_id(keys)
    ckpt = open_partial(root, pack_id, fingerprint)
    write_atomic(ckpt.parent / MEMBERS, lambda f: f.write(json.dumps(keys).encode()))
    first = specs[0]
    sub = data.subset(train=first.train_subset, test=first.test_subset, seed=SUBSET_SEED).to(dev)
    models = [build_model(s.arch, s.bits, s.scale, seed=s.seed) for s in specs]
    with reproducible(dev, deterministic) as numerics:
        results = train_pack(models, sub, [s.train_config() for s in specs], device=dev, checkpoint=ckpt,
                             progress=progress, on_epoch=on_epoch)
    written = []
    for i, (spec, model, res) in enumerate(zip(specs, models, results)):
        res.images_per_s /= len(specs)  # per network, as a network trained alone records it
        trained_in = {"pack": len(specs), "index": i, "members": keys,
                      "pack_images_per_s": res.images_per_s * len(specs)}
        record = write_trained(spec, sub, dev, root, root / "runs" / keys[i], fingerprint, weights_limit_mb, model,
                               res, numerics, trained_in)
        if record.get("trained_in") == trained_in:
            written.append(keys[i])
    (ckpt.parent / MEMBERS).unlink(missing_ok=True)
    drop_partial(root, pack_id)
    return written


def needs_training(
    spec: RunSpec, data: CIFAR10Data, root: Path, reuse_stale: bool, dev: torch.device
) -> RunSpec | None:
    """``spec`` resolved when the cache lacks its network (an entry of other code is moved aside as by
    :func:`paperlib.run`), else None; bad input raises as in :func:`paperlib.run`."""
    check_noise_site(spec)
    spec = resolve_spec(spec, data)
    record, _ = cached_record(root, root / "runs" / spec.train_key(), reuse_stale, dev)
    return spec if record is None else None


def epoch_lines(specs: Sequence[RunSpec], index: int, total: int, every_s: float = PROGRESS_S
                ) -> Callable[[int, list[dict]], None]:
    """An ``on_epoch`` for :func:`paperlib.train_pack` that writes a progress line (:mod:`paperlib.runs.progress`)
    at most every ``every_s`` seconds and after the last epoch: ``pack 1/3: epoch 12/40 of 8 lenet5 ... networks;
    about 20 min left`` (the time left from this call's epochs; a resumed pack counts from its resume)."""
    epochs, t0 = specs[0].epochs, time.perf_counter()
    state = {"first": None, "last": t0}

    def on_epoch(epoch: int, entries: list[dict]) -> None:
        now = time.perf_counter()
        first = state["first"] = state["first"] or epoch
        if now - state["last"] < every_s and epoch < epochs:
            return
        state["last"] = now
        left = (now - t0) / (epoch - first + 1) * (epochs - epoch)
        tail = f"; about {_progress.duration(left)} left" if epoch < epochs else ""
        _progress.report(f"pack {index}/{total}: epoch {epoch}/{epochs} of {describe_pack(specs)}{tail}")

    return on_epoch


def pack_task(
    specs: Sequence[RunSpec], data_root: str | None, root: str, device: str, deterministic: bool,
    index: int = 1, total: int = 1, progress: bool = False,
) -> PackOutcome:
    """Train one planned pack (:func:`plan_packs`), pack ``index`` of ``total``, in this process or a worker and
    say how it went, with progress lines per epoch (:func:`epoch_lines`) and, with ``progress``, a bar; an
    exception becomes the outcome's error (its networks then train alone)."""
    t0 = time.perf_counter()
    keys = [s.train_key() for s in specs]
    try:
        with dask_task_threads():
            dev = resolve_device(device)
            data = shared_data(data_root, str(dev))
            trained = train_packed(specs, data, dev, Path(root), deterministic=deterministic, progress=progress,
                                   on_epoch=epoch_lines(specs, index, total))
        return PackOutcome(keys, trained, None, time.perf_counter() - t0)
    except Exception as exc:  # reported; its networks train alone
        return PackOutcome(keys, [], f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)


def describe_pack(specs: Sequence[RunSpec]) -> str:
    """``8 lenet5 8-bit s=1 networks (seeds 0-7; training sigmas 0, 0.1)`` for progress lines."""
    from .summary import variant_name

    first = specs[0]
    seeds = sorted({s.seed for s in specs})
    sigmas = sorted({s.sigma_train for s in specs})
    if len(seeds) == 1:
        seed_text = f"seed {seeds[0]}"
    elif seeds == list(range(seeds[0], seeds[-1] + 1)):
        seed_text = f"seeds {seeds[0]}-{seeds[-1]}"
    else:
        seed_text = "seeds " + ", ".join(map(str, seeds))
    sigma_text = "" if sigmas == [0.0] else "; training sigma" + ("s " if len(sigmas) > 1 else " ") + ", ".join(
        f"{s:.3g}" for s in sigmas)
    return f"{len(specs)} {first.arch} {variant_name(first.bits, first.scale)} networks ({seed_text}{sigma_text})"


def report(outcome: PackOutcome, specs: Sequence[RunSpec], index: int, total: int) -> None:
    """The progress line of one pack."""
    head = f"pack {index}/{total}: {describe_pack(specs)}"
    if outcome.error is not None:
        _progress.report(f"{head}: FAILED ({outcome.error.splitlines()[0][:160]}); they train alone")
    else:
        _progress.report(f"{head}: trained together in {_progress.duration(outcome.wall_time_s)}")
