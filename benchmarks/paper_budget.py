"""What ``make figures PROFILE=paper`` costs: networks per notebook, cache disk, CPU time (docs/protocol.md §7, §12).

    python -m benchmarks.paper_budget                       # counts, disk and a CPU timing; a Markdown report
    python -m benchmarks.paper_budget --no-timing           # counts and disk only (seconds)
    python -m benchmarks.paper_budget --profile quick       # any profile name or YAML file
    python -m benchmarks.paper_budget --timings gpu_check.json   # device-hours from a device's measured timings

The counts come from the library's own spec lists, called as the notebooks call them
(:func:`notebook_runs`; ``seeds = 0``, i.e. the profile's seeds), and are deduplicated by train key
across notebooks in ``make figures`` order, as the result cache shares networks. A network is
*trained* when its train key is new, *retrained* when a notebook needs its weights
(``run(..., need_weights=True)``) or new noise points of it and they were not kept (the weights policy
of :func:`paperlib.run`: kept up to the limit, and above it for networks trained without noise).

Disk: kept weights at parameters x 4 bytes (fp32), records with one history entry per epoch, curve CSVs;
partial checkpoints (weights and Adam's two moments, per network in training) and ``stale/`` come on top.

CPU time: one training step of batch 128 (:func:`paperlib.train` on random images, augmentation
included) and the forward pass per test image (:func:`paperlib.accuracy` with noise on) are timed per
architecture, fp32 and 8-bit QAT with dynamic and constant scaling (4-bit is charged as 8-bit), on one
thread as the library trains (:data:`paperlib.threads.NUMERIC_THREADS`), in CPU time of the process (core-seconds;
waiting for a busy core is left out); the minimum of ``--repeats`` timings is taken. A network's cost is
``epochs x (steps x step + test images x forward)`` (the per-epoch clean test accuracy) plus its noise
points x test images x forward; walking noise adds sites x sigmas x images x forward per profiled network.
Noisy training is charged as clean training (the noise is elementwise, small beside the convolutions).

Another device: ``--timings`` takes the ``budget_timings`` that ``python -m benchmarks.gpu_check --out FILE``
measured on it (wall seconds per step and per test image, per architecture and kind) instead of timing this
CPU, and the report gives device-hours for one network at a time on that device, saying where the timings come
from. No speed-up factor is assumed anywhere.

With packs: where the file also holds ``gpu_check``'s ``pack`` timings (training images/s of packs of a few
sizes against one network, per architecture and kind), the report adds device-hours with the run engine's packs
(:mod:`paperlib.runs.packs`): each notebook's new networks that differ only in seed and training sigma, split
into packs of at most ``--pack`` (default: the engine's size on CUDA per architecture) as the engine splits
them, each pack charged its networks' steps divided by the measured speed-up of the largest measured pack size
not above its own (1, no gain, below the smallest measured size). Networks trained again for their weights,
weight-noise training and all evaluation are charged as without packs. Packs are grouped per notebook (a
notebook's sweeps together), which a notebook of several sweeps may not reach.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field, replace

import torch

from paperlib.data import CIFAR10Data
from paperlib.evaluate import accuracy
from paperlib.models import ARCHS, build_model
from paperlib.noise import NOISE_KINDS, noise_modules
from paperlib.paper import fig2, fig3, noise_kinds, table1, table2, variance_aware, walking_noise
from paperlib.paper.slices import kind_of
from paperlib.paper.slices import load_timings as slice_timings
from paperlib.runs.cache import DEFAULT_WEIGHTS_LIMIT_MB
from paperlib.runs.fingerprint import code_fingerprint
from paperlib.runs.packs import CUDA_PACK_SIZES, even_packs, pack_group, packable
from paperlib.runs.profile import Profile, load_profile
from paperlib.runs.provenance import provenance
from paperlib.runs.spec import RunSpec
from paperlib.training import TrainConfig, train

#: ``make figures`` jobs in make order (paperlib.paper.notebooks.JOBS).
JOBS: tuple[str, ...] = ("01", "02-vgg11", "02-resnet18", "03", "04", "05", "06", "07")
#: Images of the full CIFAR-10 training and test sets.
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000
#: Bytes of one curve CSV line ("sigma,repeat,accuracy", e.g. "0.05623413251903491,0,0.4512").
CURVE_LINE_BYTES = 36


@dataclass(frozen=True)
class Run:
    """One ``run()`` a notebook makes."""

    spec: RunSpec
    """the spec (data set placeholder resolved, so it has a train key)"""
    need_weights: bool = False
    """the notebook loads the network (``run(..., need_weights=True)``)"""
    walking: tuple[int, int] = (0, 0)
    """walking noise on this network: (sigmas, test images) per noise site; (0, 0) = none"""


def _resolved(specs: list[RunSpec]) -> list[RunSpec]:
    """Specs with a placeholder data set: the train key needs one; every spec gets the same."""
    return [replace(s, dataset="CIFAR-10", data_digest="0" * 16) for s in specs]


def notebook_runs(p: Profile) -> dict[str, list[Run]]:
    """The runs of each notebook of ``make figures`` at profile ``p``, as the notebooks make them (``seeds = 0``).

    Notebook 05 picks its three networks per architecture from finished sweeps and profiles each of their
    seeds; here the picks are fp32, a constant-scale QAT variant (any: all are trained without noise, so
    kept) and the fp32 network noisy-trained at the middle training sigma, every seed: the cost is the same.
    """
    out: dict[str, list[RunSpec]] = {
        "01": fig2.specs(p),
        # the main job skips a Table I architecture outside the profile's archs
        "02-vgg11": table1.specs(p, arch="vgg11") if "vgg11" in p.archs else [],
        "02-resnet18": table1.specs(p, arch="resnet18") if "resnet18" in p.archs else [],
        "03": fig3.specs(p),
        "04": table2.specs(p),
        "06": variance_aware.specs(p),
        "07": noise_kinds.specs(p, kinds=NOISE_KINDS),
    }
    runs = {job: [Run(s) for s in _resolved(specs)] for job, specs in out.items()}
    walking = [Run(s) for s in _resolved(walking_noise.specs(p))]
    n_walk = len(walking_noise.sigmas(p))
    for a in p.archs:
        mid = p.noisy_sigmas()[len(p.noisy_sigmas()) // 2]
        images = p.for_arch(a).walking_test_subset or TEST_IMAGES
        picks = [q for k in range(p.for_arch(a).seeds)  # notebook 05 profiles every seed of its three picks
                 for q in (p.spec(a, seed=k), p.spec(a, bits=p.bits[0], scale=p.scales(a)[0], seed=k),
                           p.spec(a, sigma_train=mid, sigmas=(mid,), seed=k))]
        walking += [Run(s, need_weights=True, walking=(n_walk, images)) for s in _resolved(picks)]
    runs["05"] = walking
    return {job: runs[job] for job in JOBS}


def weights_mb(arch: str, bits: int | None, scale: float | None) -> float:
    """The size the cache charges a network's weights (MiB): parameters x 4 bytes, as :func:`paperlib.run`."""
    return sum(t.numel() for t in build_model(arch, bits, scale).parameters()) * 4 / 2**20


def _record_bytes(epochs: int) -> int:
    """Bytes of a record.json: a real fingerprint and provenance, ``epochs`` history entries of typical values."""
    entry = {"epoch": 500, "sigma_train": 0.31622776601683794, "lr": 0.000123456789, "loss": 0.123456789,
             "train_acc": 0.98765, "test_acc": 0.8765}
    record = {"spec": RunSpec(dataset="CIFAR-10", data_digest="0" * 16).training_fields(), "key": "0" * 16,
              "history": [entry] * epochs, "fingerprint": code_fingerprint(), "provenance": provenance("cpu"),
              "accuracy": 0.8765, "diverged": False, "error": None, "weights": True, "weights_mb": 1.0,
              "train_images_per_s": 1234.5, "train_wall_time_s": 1234.5, "data": "CIFAR-10, 50000 train / 10000 test",
              "cache_version": 1}
    return len(json.dumps(record, indent=1, default=float).encode())


@dataclass
class Tally:
    """What one notebook adds to the cache and costs."""

    trained: dict[str, int] = field(default_factory=dict)
    """new networks per arch"""
    retrained: dict[str, int] = field(default_factory=dict)
    """networks trained again per arch (weights needed or new noise points, but not kept)"""
    train_steps: dict[tuple, int] = field(default_factory=dict)
    """training steps of batch 128 per (arch, kind)"""
    forwards: dict[tuple, int] = field(default_factory=dict)
    """test images through a forward pass per (arch, kind): per-epoch test accuracy, noise points, walking noise"""
    pack_trainings: list[tuple[str, tuple, int]] = field(default_factory=list)
    """the new networks a pack could train: (what their pack shares, (arch, kind), training steps), one per network
    (their steps are in ``train_steps`` too)"""
    weights_bytes: int = 0
    """kept weights added to the cache (parameters x 4)"""
    other_bytes: int = 0
    """records and curve files added to the cache"""


def count(p: Profile, weights_limit_mb: float = DEFAULT_WEIGHTS_LIMIT_MB) -> dict[str, Tally]:
    """Simulate the result cache over ``make figures`` at ``p``: per notebook, a :class:`Tally`."""
    cache: dict[str, dict] = {}  # train key -> {"kept": bool, "points": set}
    sizes: dict[tuple, float] = {}
    sites: dict[tuple, int] = {}
    record = {a: _record_bytes(p.for_arch(a).epochs) for a in ARCHS}
    out = {}
    for job, runs in notebook_runs(p).items():
        t = Tally()
        for r in runs:
            s, fa = r.spec, p.for_arch(r.spec.arch)
            n_train, n_test = s.train_subset or TRAIN_IMAGES, s.test_subset or TEST_IMAGES
            mkey = (s.arch, s.bits, s.scale)
            if mkey not in sizes:
                sizes[mkey] = weights_mb(*mkey)
                sites[mkey] = len(noise_modules(build_model(*mkey)))
            ck = (s.arch, kind_of(s))
            key, points = s.train_key(), {(s.eval_key(), sig, rep) for sig, rep in s.pairs()}
            entry = cache.get(key)

            def charge_training() -> None:
                # called at once, in this iteration: the loop variables are the ones meant
                t.train_steps[ck] = t.train_steps.get(ck, 0) + s.epochs * math.ceil(n_train / s.batch_size)  # noqa: B023
                t.forwards[ck] = t.forwards.get(ck, 0) + s.epochs * n_test  # noqa: B023

            if entry is None:
                keep = s.sigma_train == 0 and s.sigma_theta == 0 or sizes[mkey] <= weights_limit_mb
                entry = cache[key] = {"kept": keep, "points": set()}
                t.trained[s.arch] = t.trained.get(s.arch, 0) + 1
                charge_training()
                if packable(s):
                    t.pack_trainings.append((pack_group(s), ck, s.epochs * math.ceil(n_train / s.batch_size)))
                t.weights_bytes += int(sizes[mkey] * 2**20) if keep else 0
                t.other_bytes += record[s.arch]
            elif not entry["kept"] and (r.need_weights or points - entry["points"]):
                t.retrained[s.arch] = t.retrained.get(s.arch, 0) + 1
                charge_training()
                if r.need_weights:
                    entry["kept"] = True
                    t.weights_bytes += int(sizes[mkey] * 2**20)
            new = points - entry["points"]
            if new:
                t.forwards[ck] = t.forwards.get(ck, 0) + len(new) * n_test
                t.other_bytes += len(new) * CURVE_LINE_BYTES
                entry["points"] |= new
            if r.walking[0]:
                t.forwards[ck] = t.forwards.get(ck, 0) + sites[mkey] * r.walking[0] * (fa.walking_test_subset or
                                                                                       TEST_IMAGES)
        out[job] = t
    return out


def measure(arch: str, kind: str, steps: int = 2, repeats: int = 3, seed: int = 0) -> tuple[float, float]:
    """(CPU seconds per training step of batch 128, CPU seconds per test image forward with noise on), one thread.

    CPU time of this process (``time.process_time``), not wall time: on a busy machine a thread waits for its
    core, and CPU time leaves the waiting out. The minimum over ``repeats`` of :func:`paperlib.train` over
    ``steps`` steps on random images (its per-epoch test accuracy on 10 images included) and of
    :func:`paperlib.accuracy` on 256 images at sigma 1.
    """
    bits, scale = {"fp32": (None, None), "qat-dynamic": (8, None), "qat-constant": (8, 1.0)}[kind]
    g = torch.Generator().manual_seed(seed)
    n = steps * 128
    x_test, y_test = torch.randn(256, 3, 32, 32, generator=g), torch.arange(256) % 10
    data = CIFAR10Data(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 10, x_test[:10], y_test[:10],
                       "random")
    step_s, fwd_s = math.inf, math.inf
    for _ in range(repeats):
        model = build_model(arch, bits, scale, seed=seed)
        t0 = time.process_time()
        train(model, data, TrainConfig(epochs=1, lr=1e-4, seed=seed), device="cpu", progress=False)
        step_s = min(step_s, (time.process_time() - t0) / steps)
        t0 = time.process_time()
        accuracy(model, x_test, y_test, 1.0, batch_size=256)
        fwd_s = min(fwd_s, (time.process_time() - t0) / 256)
    return step_s, fwd_s


def load_pack_speedups(path: str) -> dict[tuple[str, str], dict[int, float]]:
    """(arch, kind) -> {pack size: measured speed-up over one network} from a ``gpu_check`` JSON file; empty when
    it holds no ``pack`` timings."""
    from benchmarks.gpu_check import BUDGET_KINDS

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = {}
    for arch, r in (data.get("archs") or {}).items():
        for kind, (_, variant) in BUDGET_KINDS.items():  # (its speed key, its VARIANTS name)
            speed = ((r.get("pack") or {}).get(variant) or {}).get("speedup")
            if speed:
                out[(arch, kind)] = {int(n): float(x) for n, x in speed.items()}
    return out


def speedup_at(measured: dict[int, float], size: int) -> float:
    """The measured speed-up of the largest measured pack size not above ``size`` (1 below every measured size)."""
    below = [n for n in measured if n <= size]
    return measured[max(below)] if below and size > 1 else 1.0


def pack_seconds(t: Tally, timings: dict[tuple, tuple[float, float]], speedups: dict[tuple, dict[int, float]],
                 sizes: dict[str, int]) -> float:
    """Device seconds that packs save on ``t``'s new networks (see the module docstring): what they cost one at a
    time minus what their packs cost."""
    groups: dict[tuple, int] = {}
    for group, ck, steps in t.pack_trainings:
        groups[(group, ck, steps)] = groups.get((group, ck, steps), 0) + 1
    saved = 0.0
    for (_, ck, steps), n in groups.items():
        for pack in even_packs(list(range(n)), max(1, sizes.get(ck[0], 1))):
            m = len(pack)
            saved += m * steps * timings[ck][0] * (1 - 1 / speedup_at(speedups.get(ck, {}), m))
    return saved


def _fmt_counts(d: dict[str, int]) -> str:
    return " + ".join(f"{d[a]} {a}" for a in ARCHS if d.get(a)) or "0"


def load_timings(path: str) -> tuple[dict[tuple, tuple[float, float]], str]:
    """The ``budget_timings`` of a ``gpu_check`` JSON file (:func:`paperlib.paper.slices.load_timings`: (arch, kind)
    -> (s/step, s/test image)), and a line naming the device, GPU and torch version that measured them."""
    timings = slice_timings(path)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return timings, (f"{data.get('gpu') or data.get('device')}, torch {data.get('torch')} "
                     f"(python -m benchmarks.gpu_check, {path})")


def report(p: Profile, tallies: dict[str, Tally], timings: dict[tuple, tuple[float, float]] | None,
           measured_on: str | None = None, speedups: dict[tuple, dict[int, float]] | None = None,
           pack_sizes: dict[str, int] | None = None) -> str:
    """The Markdown report: networks and disk per notebook, then (with timings) core-hours of this CPU, or with
    ``measured_on`` (timings of another device, :func:`load_timings`) hours of that device, and with ``speedups``
    (:func:`load_pack_speedups`) its hours with packs of at most ``pack_sizes`` per architecture."""
    unit = "device-hours" if measured_on else "CPU core-hours"
    packs = bool(timings and measured_on and speedups)
    sizes = pack_sizes or CUDA_PACK_SIZES
    lines = [f"## Budget of `make figures PROFILE={p.name}`", "",
             f"{p.epochs} epochs; train/test images {p.train_subset or TRAIN_IMAGES}/{p.test_subset or TEST_IMAGES}"
             f"{' (with per-architecture values)' if any(p.overrides(a) for a in ARCHS) else ''}; "
             f"{p.seeds} seed(s); {p.n_sigmas} sigmas; "
             f"{p.repeats} noise draw(s); bits {', '.join(map(str, p.bits))}; "
             f"weights kept up to {DEFAULT_WEIGHTS_LIMIT_MB:g} MiB, and above it for networks trained without noise.",
             "", "| notebook | networks trained (new) | retrained (weights not kept) | kept weights | records + curves "
             + (f"| {unit} |" if timings else "|") + (" with packs |" if packs else ""),
             "|---|---|---|---|---|" + ("---|" if timings else "") + ("---|" if packs else "")]
    total_cpu, total_packed = 0.0, 0.0
    sums = Tally()
    for job, t in tallies.items():
        cpu, packed = 0.0, 0.0
        if timings:
            cpu = (sum(n * timings[k][0] for k, n in t.train_steps.items())
                   + sum(n * timings[k][1] for k, n in t.forwards.items())) / 3600
            total_cpu += cpu
        if packs:
            packed = cpu - pack_seconds(t, timings, speedups, sizes) / 3600
            total_packed += packed
        for a in ARCHS:
            sums.trained[a] = sums.trained.get(a, 0) + t.trained.get(a, 0)
            sums.retrained[a] = sums.retrained.get(a, 0) + t.retrained.get(a, 0)
        sums.weights_bytes += t.weights_bytes
        sums.other_bytes += t.other_bytes
        lines.append(f"| {job} | {sum(t.trained.values())} ({_fmt_counts(t.trained)}) | "
                     f"{sum(t.retrained.values())} ({_fmt_counts(t.retrained)}) | {t.weights_bytes / 2**30:.2f} GiB | "
                     f"{t.other_bytes / 2**20:.1f} MiB |" + (f" {cpu:,.0f} |" if timings else "")
                     + (f" {packed:,.0f} |" if packs else ""))
    lines.append(f"| **total** | **{sum(sums.trained.values())}** ({_fmt_counts(sums.trained)}) | "
                 f"**{sum(sums.retrained.values())}** ({_fmt_counts(sums.retrained)}) | "
                 f"**{sums.weights_bytes / 2**30:.2f} GiB** | **{sums.other_bytes / 2**20:.1f} MiB** |"
                 + (f" **{total_cpu:,.0f}** |" if timings else "") + (f" **{total_packed:,.0f}** |" if packs else ""))
    if timings:
        where = (f"measured on {measured_on}; wall time, one network at a time" if measured_on else
                 f"on this machine ({platform.processor() or platform.machine()}, one thread, torch "
                 f"{torch.__version__}; CPU time of the process, minimum of the repeats)")
        lines += ["", f"Timings {where}:", "",
                  "| arch | kind | s / training step (batch 128) | ms / test image forward "
                  "| s / epoch (50k + 10k test) |",
                  "|---|---|---|---|---|"]
        for (a, k), (step, fwd) in sorted(timings.items()):
            epoch = math.ceil(TRAIN_IMAGES / 128) * step + TEST_IMAGES * fwd
            lines.append(f"| {a} | {k} | {step:.3f} | {1000 * fwd:.3f} | {epoch:,.0f} |")
        if measured_on:
            lines += ["", f"Device: **{total_cpu:,.0f} device-hours** ({total_cpu / 24:,.1f} days) training one "
                      f"network at a time, from the timings above (no speed-up factor assumed)."]
            if packs:
                largest = ", ".join(f"{a} {sizes.get(a, 1)}" for a in ARCHS)
                measured = "; ".join(f"{a} {k}: " + ", ".join(f"{n}: {x:.1f}x" for n, x in sorted(v.items()))
                                     for (a, k), v in sorted(speedups.items()))
                lines += ["", f"With packs (at most {largest} networks per pack, as the run engine makes them): "
                          f"**{total_packed:,.0f} device-hours** ({total_packed / 24:,.1f} days), from the pack "
                          f"speed-ups measured on the same device ({measured}); a pack larger than every measured "
                          f"size is charged the largest measured speed-up, a smaller one none."]
            else:
                lines += ["", "With packs: not projected (the timings file holds no pack timings of gpu_check)."]
        else:
            lines += ["", f"CPU: **{total_cpu:,.0f} core-hours** ({total_cpu / 24:,.0f} core-days); "
                      f"on 16 cores in parallel about {total_cpu / 16 / 24:,.0f} days."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_budget", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", help="profile name or YAML file (default paper)")
    parser.add_argument("--no-timing", action="store_true", help="counts and disk only")
    parser.add_argument("--steps", type=int, default=2, help="training steps per timing (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per arch and kind; the minimum counts")
    parser.add_argument("--timings", default=None,
                        help="a JSON file of python -m benchmarks.gpu_check --out: that device's timings, not this "
                             "CPU's")
    parser.add_argument("--pack", type=int, default=None,
                        help="with --timings: the largest pack for every architecture (default: the run engine's on "
                             "CUDA, paperlib.runs.packs.CUDA_PACK_SIZES)")
    args = parser.parse_args(argv)
    p = load_profile(args.profile)
    tallies = count(p)
    timings, measured_on, speedups = None, None, None
    if args.pack is not None and (args.pack < 1 or not args.timings):
        parser.error("--pack takes a whole number >= 1 (1: no packs), with --timings (a device's measured packs)")
    if args.timings:
        try:
            timings, measured_on = load_timings(args.timings)
            speedups = load_pack_speedups(args.timings)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        lacking = sorted({k for t in tallies.values() for k in (*t.train_steps, *t.forwards)} - set(timings))
        if lacking:
            parser.error(f"{args.timings} has no timings of {', '.join(f'{a} {k}' for a, k in lacking)}, which "
                         f"profile {p.name} trains; run gpu_check without --quick (it times every architecture)")
    elif not args.no_timing:
        kinds = sorted({k for t in tallies.values() for k in (*t.train_steps, *t.forwards)})
        timings = {}
        for a, k in kinds:
            timings[(a, k)] = measure(a, k, args.steps, args.repeats)
            print(f"timed {a} {k}: {timings[(a, k)][0]:.3f} s/step, {1e3 * timings[(a, k)][1]:.3f} ms/image",
                  file=sys.stderr, flush=True)
    sizes = None if args.pack is None else {a: args.pack for a in ARCHS}
    print(report(p, tallies, timings, measured_on, speedups, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
