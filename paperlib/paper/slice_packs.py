"""Packs in a slice (:mod:`paperlib.paper.slices`): the run engine's packs, each started only when its estimate ends
within the slice's budget (docs/experiments.md, "Packs in a slice")."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from ..data import CIFAR10Data
from ..device import deterministic_default, reproducible
from ..models import build_model
from ..runs.packs import needs_training, plan_packs, train_packed
from ..runs.spec import RunSpec

#: Test images of a pack probe's test pass.
PROBE_IMAGES = 512


def probe_pack(specs: list[RunSpec], data: CIFAR10Data, dev: torch.device, deterministic: bool | None
               ) -> tuple[float, float]:
    """(s per training step of the pack, s per test image of the pack's per-epoch accuracy pass) of ``specs``'
    networks trained as one pack on ``dev``: one epoch of two steps, twice (the first warms up); the second counts
    (its test pass over ``PROBE_IMAGES`` images, divided by them)."""
    from ..pack import train_pack

    sub = data.subset(train=min(2 * specs[0].batch_size, len(data.y_train)), test=min(PROBE_IMAGES,
                                                                                      len(data.y_test)))
    configs = [replace(s.train_config(), epochs=1, sigma_ramp_epochs=0) for s in specs]
    with reproducible(dev, deterministic):
        for _ in range(2):
            res = train_pack([build_model(s.arch, s.bits, s.scale, seed=s.seed) for s in specs], sub, configs,
                             device=dev, progress=False)[0]
    steps = math.ceil(len(sub.y_train) / specs[0].batch_size)
    train_s = len(sub.y_train) * len(specs) / res.images_per_s
    return train_s / steps, max(res.wall_time_s - train_s, 0.0) / len(sub.y_test)


def train_packs(todo: list[RunSpec], sizes: dict[str, int], data: CIFAR10Data, dev: torch.device, root: Path,
                 deterministic: bool | None, budget_s: float, t0: float, clock: Callable[[], float], info: dict,
                 packed_here: set[str]) -> set[str]:
    """Train ``todo``'s packs that fit the budget (:mod:`paperlib.paper.slices`' docstring); returns the keys left
    for a later slice (their packs did not fit); adds the keys trained to ``packed_here`` and each pack to
    ``info["packs"]``."""
    from .slices import _describe as describe  # the slice's own estimates and names (it imports this module)
    from .slices import cost, kind_of

    det = dev.type != "cuda" or deterministic_default(deterministic)
    need = []
    for spec in todo:
        try:
            if sizes.get(spec.arch, 1) > 1 and needs_training(spec, data, root, False, dev) is not None:
                need.append(spec)
        except Exception:  # noqa: BLE001  bad input: its run one by one says so
            continue
    planned = [p for arch, size in sorted(sizes.items()) for p in plan_packs([s for s in need if s.arch == arch], size)]
    observed: dict[tuple, float] = {}  # (arch, kind, size, epochs, steps) -> wall s of a pack this slice trained
    waiting: set[str] = set()
    queue = list(planned)
    while queue:
        members = queue.pop(0)
        first = members[0]
        k = (first.arch, kind_of(first), len(members), first.epochs, first.train_subset, first.batch_size)
        if k in observed:
            guess, source = observed[k], "this slice"
        else:
            step_s, image_s = probe_pack(members, data, dev, deterministic)
            guess, source = cost(first, data, step_s, image_s, part="train"), "probe"
        if clock() - t0 + guess > budget_s:
            if len(members) >= 4:  # halve it and try again
                half = len(members) // 2
                queue[:0] = [members[:half], members[half:]]
            else:
                waiting.update(s.train_key() for s in members)
            continue
        start = clock()
        try:
            keys = train_packed(members, data, dev, root, deterministic=det)
        except Exception as exc:  # recorded; its networks are left to the runs one by one
            info["failed"].append({"key": first.train_key(), "spec": f"pack of {len(members)}: {describe(first)}",
                                   "error": f"{type(exc).__name__}: {exc}"})
            continue
        wall = clock() - start
        observed[k] = max(observed.get(k, 0.0), wall)
        packed_here.update(keys)
        info["packs"].append({"keys": [s.train_key() for s in members], "size": len(members), "arch": first.arch,
                              "kind": kind_of(first), "wall_s": round(wall, 2), "estimate_s": round(guess, 2),
                              "estimate_from": source, "trained": keys})
        print(f"[slice {info['profile']}] pack of {len(members)} {describe(first)} ...: {wall:.1f} s "
              f"(estimate {guess:.0f} s, {source})", flush=True)
    return waiting
