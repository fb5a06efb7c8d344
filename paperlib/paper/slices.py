"""Train a profile's networks on a machine lent for minutes at a time, in slices of a time budget.

A GPU machine lent now and then runs one command of a few minutes and gives back only files (docs/experiments.md,
"Training on a GPU machine in slices"). A slice imports what earlier slices brought back (``--resume``), runs the
specs its notebooks sweep at a profile (:func:`paperlib.paper.transfer.specs_for`) that the cache does not hold,
one at a time with :func:`paperlib.run` (deterministic kernels unless ``--nondeterministic``) while the budget
allows, and writes an archive of every entry of those specs to ``--out`` for ``make import``. On the device
machine ``benchmarks/gpu_slice.sh`` runs::

    python -m paperlib.paper.slices --profile gpu --notebooks 01 02-vgg11 --budget-s 420 --device cuda \\
        --data data/cifar10-jpeg.tar.gz --resume results/slices/results-gpu-slice.tar.gz --out OUT \\
        [--timings gpu_check.json] [--results results] [--weights] [--nondeterministic]

or, for the networks of an epochs curve (:mod:`paperlib.paper.epochs_curve`; rendered here by ``python -m
benchmarks.epochs_curve`` with the same options), ``--epochs-curve vgg11 --epochs 5 10 20 40 [--variants fp32]``
instead of (or beside) ``--notebooks``.

Packs (``--pack N``; by default as the run engine on the device: 32 LeNet-5s per pack on CUDA, none on the CPU;
docs/protocol.md §12): before the runs one by one, the specs the cache lacks that differ only in seed and training
sigma train as packs (:mod:`paperlib.paper.slice_packs`, split as the engine splits them), each pack estimated
by a probe of it (or by the packs of its size this slice trained) and started only when it ends within the
budget; one that does not is halved until it does (down to two networks), and what is left waits for the next
slice (it is not trained alone here). The runs one by one then only evaluate a pack's networks (charged
as an evaluation).

Held specs are skipped (:func:`held`). Estimates per architecture and kind (``fp32``, ``qat-dynamic``,
``qat-constant``, as ``benchmarks/paper_budget.py`` charges them): the longest run of that kind in this slice;
else from ``--timings`` (``budget_timings`` of ``python -m benchmarks.gpu_check --out FILE``: device seconds per
training step and per noisy test image); else from :func:`probe` on the device. These two charge ``epochs x
(steps x step + test images x image) + noise points x test images x image``, times :data:`SAFETY`; no device's
speed is assumed (docs/protocol.md §12). A spec whose estimate would end past ``--budget-s`` (from the start of the
slice) is not started; later, cheaper ones still are. A run is never cut off: :func:`paperlib.run` writes an entry
whole or not at all.

``--out`` gets ``results-<profile>-slice.tar.gz`` (:func:`paperlib.runs.transfer.export_entries`, weights only with
``--weights``) and ``slice.json`` (:func:`run_slice`), rewritten every :data:`REFRESH_S` seconds (without
``--weights``) and on SIGTERM, so a command killed at its limit leaves what finished. Partial trainings are not
carried: a checkpoint holds the weights and Adam's two moments (VGG-11: 3 x 107 MiB), over the 16 MiB a returned
file may have.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from ..atomic import write_atomic
from ..data import CIFAR10Data
from ..device import deterministic_default, reproducible, resolve_device
from ..evaluate import accuracy
from ..models import build_model
from ..runs.cache import check_writable, curve_path, made_elsewhere, read_curve, read_record, results_root
from ..runs.experiment import check_subsets, run, shared_data
from ..runs.fingerprint import code_fingerprint, packed_record, same_code
from ..runs.packs import pack_size
from ..runs.profile import load_profile
from ..runs.progress import duration
from ..runs.spec import RunSpec
from ..runs.transfer import export_entries, import_entries
from ..training import train
from . import epochs_curve, slice_packs
from .session import project_root
from .transfer import NOTEBOOKS, default_results_dir, specs_for

#: Factor on estimates made from timings or a probe (not on runs this slice measured).
SAFETY = 1.5
#: Seconds between refreshes of the outputs during a slice (without --weights).
REFRESH_S = 60.0
#: Largest file the device machine gives back (bytes).
FILE_LIMIT = 16 * 2**20
#: Test images of a probe's noisy pass.
PROBE_IMAGES = 512


class SliceError(ValueError):
    """Bad input to a slice: one sentence saying what is wrong."""


def kind_of(spec: RunSpec) -> str:
    """``fp32``, ``qat-dynamic`` or ``qat-constant``: the kinds ``budget_timings`` times (and
    ``benchmarks/paper_budget.py`` charges)."""
    return "fp32" if spec.bits is None else "qat-dynamic" if spec.scale is None else "qat-constant"


def load_timings(path: str | os.PathLike) -> dict[tuple[str, str], tuple[float, float]]:
    """(arch, kind) -> (s per training step, s per test image) from a ``benchmarks.gpu_check`` JSON file."""
    try:
        data = json.loads(Path(path).read_text())
        return {(arch, kind): (float(v[0]), float(v[1]))
                for arch, r in data["archs"].items() for kind, v in r["budget_timings"].items()}
    except FileNotFoundError:
        raise SliceError(f"timings file {path} does not exist") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise SliceError(f"{path} holds no budget_timings of python -m benchmarks.gpu_check ({exc!r}); run "
                         f"python -m benchmarks.gpu_check --device <yours> --out {path} on the device") from None


def probe(spec: RunSpec, data: CIFAR10Data, dev: torch.device, deterministic: bool | None) -> tuple[float, float]:
    """(s per training step, s per noisy test image) of ``spec``'s network on ``dev``, under the kernels run() uses:
    one epoch of two steps and a pass at sigma 1 over up to :data:`PROBE_IMAGES` test images, twice (the first
    warms up); the second counts."""
    model = build_model(spec.arch, spec.bits, spec.scale, seed=spec.seed)
    sub = data.subset(train=min(2 * spec.batch_size, len(data.y_train)), test=10)
    config = replace(spec.train_config(), epochs=1, sigma_ramp_epochs=0)
    x, y = data.x_test[:PROBE_IMAGES], data.y_test[:PROBE_IMAGES]
    with reproducible(dev, deterministic):
        for _ in range(2):
            t0 = time.perf_counter()
            train(model, sub, config, device=dev, progress=False)
            t1 = time.perf_counter()
            accuracy(model, x, y, 1.0, batch_size=len(y))
            t2 = time.perf_counter()
    return (t1 - t0) / math.ceil(len(sub.y_train) / spec.batch_size), (t2 - t1) / len(y)


def cost(spec: RunSpec, data: CIFAR10Data, step_s: float, image_s: float, part: str = "all") -> float:
    """Seconds :func:`paperlib.run` takes to train and evaluate ``spec`` at these timings, times :data:`SAFETY`;
    ``part``: ``"train"`` (its training, the per-epoch test passes included; with a pack's timings,
    :func:`probe_pack`, the pack's) or ``"evaluate"`` (its noise points: its network is cached) only."""
    n_train = min(spec.train_subset or len(data.y_train), len(data.y_train))
    n_test = min(spec.test_subset or len(data.y_test), len(data.y_test))
    steps = math.ceil(n_train / spec.batch_size)
    training = spec.epochs * (steps * step_s + n_test * image_s)
    points = len(spec.pairs()) * n_test * image_s
    return SAFETY * {"all": training + points, "train": training, "evaluate": points}[part]


def held(root: Path, spec: RunSpec, fingerprint: dict, dev: torch.device) -> bool:
    """Whether the cache under ``root`` holds the resolved ``spec`` as :func:`paperlib.run` would take it without
    training or evaluating: an entry of this code (or this code's on another kind of device) that diverged or
    has every point of the spec's grid in one curve file."""
    entry = root / "runs" / spec.train_key()
    record = read_record(root, entry)
    if packed_record(record):  # trained in a pack: judged by a pack's fingerprint of this code (§12)
        fingerprint = code_fingerprint(packed=True)
    if record is None or not (same_code(record.get("fingerprint"), fingerprint)
                              or made_elsewhere(record, fingerprint, dev)):
        return False
    if record["diverged"]:
        return True
    wanted = set(spec.pairs())
    for fp in (record.get("fingerprint"), fingerprint):
        curve = read_curve(curve_path(entry, spec, fp))
        if wanted <= set(zip(curve.sigma.astype(float), curve.repeat.astype(int))):
            return True
    return False


_DEFAULTS = (("noise_kind", "additive"), ("sigma_sampling", "fixed"), ("train_noise_kind", "additive"),
             ("sigma_theta", 0.0))


def _describe(spec: RunSpec, epochs: int | None = None) -> str:
    """``lenet5 8-bit s=1 sigma_train=0 seed=0``, and the fields that tell the beyond-the-paper specs apart (and an
    epochs curve's: ``epochs=E`` when not the profile's ``epochs``)."""
    bits = "fp32" if spec.bits is None else f"{spec.bits}-bit " + ("dynamic" if spec.scale is None
                                                                  else f"s={spec.scale:g}")
    extra = "".join(f" {k}={getattr(spec, k)}" for k, default in _DEFAULTS if getattr(spec, k) != default)
    extra += f" epochs={spec.epochs}" if epochs is not None and spec.epochs != epochs else ""
    return f"{spec.arch} {bits} sigma_train={spec.sigma_train:g} seed={spec.seed}{extra}"


def run_slice(profile: str, notebooks: Iterable[str] | None, budget_s: float, out: str | os.PathLike,
              device: str = "auto", results: str | os.PathLike | None = None, data_root: str | None = None,
              resume: Iterable[str | os.PathLike] = (), timings: str | os.PathLike | None = None,
              weights: bool = False, deterministic: bool | None = None,
              clock: Callable[[], float] = time.monotonic, curve: dict | None = None,
              pack: int | None = None) -> dict:
    """One slice (module docstring); returns what ``slice.json`` holds: ``profile``, ``notebooks``, ``budget_s``,
    ``specs`` (``total``, ``held_at_start``, ``run_here``, ``done``, ``left``, ``deferred``: not started for the
    budget, ``failed``), ``runs`` (per run: key, spec, arch, kind, wall_s, estimate_s, estimate_from, trained,
    diverged, accuracy), ``failed`` (spec and error), ``estimates`` (arch/kind -> s per run and source),
    ``resumed`` (per archive: added, kept, refused), ``device``, ``device_name``, ``torch``, ``deterministic``,
    ``started_utc``, ``ended_utc``, ``elapsed_s``, ``stopped_by_budget``, ``interrupted``, ``finished`` and
    ``archive`` (file, bytes, entries, weights, over_limit: over the 16 MiB a returned file may have; None: no
    entry yet), and ``packs`` (per pack trained: keys, size, wall_s, estimate_s, estimate_from, trained).
    ``pack``: the largest pack (1: none; None: the run engine's on the device, :func:`paperlib.runs.packs.pack_size`).

    ``curve``: ``{"arch": ..., "epochs": [...], "variants": [...] or None}``, the networks of an epochs curve
    (:func:`paperlib.paper.epochs_curve.specs`) after those of ``notebooks`` (None with a curve: no notebook's);
    ``slice.json`` records it as ``epochs_curve``.

    Raises:
        SliceError, ValueError, OSError: bad input, one sentence, before anything is trained.
    """
    t0, started = clock(), datetime.now(UTC)
    notebooks = list(notebooks) if notebooks is not None else ([] if curve else None)
    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise SliceError(f"--budget-s must be a positive number of seconds, got {budget_s!r}")
    prof = load_profile(profile)

    def describe(spec: RunSpec) -> str:
        return _describe(spec, prof.for_arch(spec.arch).epochs)

    specs = specs_for(prof, notebooks)
    if curve:
        specs += [s for s in epochs_curve.specs(prof, curve["epochs"], curve["arch"], curve.get("variants"))
                  if s not in specs]
    dev = resolve_device(device)
    for archive in resume:
        if not Path(archive).is_file():
            raise SliceError(f"resume archive {archive} does not exist (give a results-<profile>-slice.tar.gz that "
                             f"an earlier slice wrote)")
    table = load_timings(timings) if timings else {}
    sizes = {a: pack_size(pack, dev, a) for a in {s.arch for s in specs}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = check_writable(results_root(results if results is not None else default_results_dir()))
    resumed = []
    for archive in resume:
        r = import_entries(archive, root)
        resumed.append({"archive": Path(archive).name, "added": len(r.added), "kept": len(r.kept),
                        "refused": len(r.refused)})
    data = shared_data(data_root or os.environ.get("PAPERLIB_DATA") or str(project_root() / "data"), str(dev))
    specs = [replace(s, dataset=data.source, data_digest=data.content_digest()) for s in specs]
    for s in specs:
        check_subsets(s, data)
    fingerprint = code_fingerprint()
    todo = [s for s in specs if not held(root, s, fingerprint, dev)]
    observed: dict[tuple, list[float]] = {}
    probed: dict[tuple, tuple[float, float]] = {}

    packed_here: set[str] = set()  # keys a pack of this slice trained: their runs only evaluate

    def estimate(spec: RunSpec, measure: bool = True) -> tuple[float, str] | None:
        k = (spec.arch, kind_of(spec))
        if spec.train_key() in packed_here:  # an evaluation: from the timings of its kind, never "this slice"
            if k in table:
                return cost(spec, data, *table[k], part="evaluate"), "timings"
            if k not in probed and measure:
                probed[k] = probe(spec, data, dev, deterministic)
            return (cost(spec, data, *probed[k], part="evaluate"), "probe") if k in probed else None
        if k in observed:
            return max(observed[k]), "this slice"
        if k in table:
            return cost(spec, data, *table[k]), "timings"
        if k not in probed and measure:
            probed[k] = probe(spec, data, dev, deterministic)
        return (cost(spec, data, *probed[k]), "probe") if k in probed else None

    det = dev.type != "cuda" or deterministic_default(deterministic)
    info = {"profile": prof.name, "notebooks": list(NOTEBOOKS if notebooks is None else notebooks),
            "epochs_curve": None if not curve else {"arch": curve["arch"], "epochs": sorted(set(curve["epochs"])),
                                                    "variants": curve.get("variants")},
            "budget_s": budget_s,
            "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "torch": torch.__version__, "deterministic": det, "started_utc": started.isoformat(timespec="seconds"),
            "ended_utc": None, "elapsed_s": None, "stopped_by_budget": False, "interrupted": False, "finished": False,
            "specs": {}, "archive": None, "resumed": resumed, "runs": [], "failed": [], "estimates": {}, "packs": []}
    deferred: list[RunSpec] = []

    def write_outputs() -> None:
        archive = out / f"results-{prof.name}-slice.tar.gz"
        try:
            rep = export_entries(root, specs, archive, weights=weights)
            info["archive"] = {"file": archive.name, "bytes": rep.archive_bytes, "entries": len(rep.entries),
                               "weights": weights, "over_limit": rep.archive_bytes > FILE_LIMIT}
        except ValueError:  # no entry of these specs yet
            archive.unlink(missing_ok=True)
            info["archive"] = None
        ran = len(info["runs"])
        left = len(todo) - ran
        info["specs"] = {"total": len(specs), "held_at_start": len(specs) - len(todo), "run_here": ran,
                         "done": len(specs) - left, "left": left, "deferred": len(deferred),
                         "failed": len(info["failed"])}
        kinds = {(s.arch, kind_of(s)): s for s in specs}
        info["estimates"] = {f"{a}/{k}": [round(e[0], 1), e[1]] for (a, k), s in kinds.items()
                             if (e := estimate(s, measure=False))}
        info.update(ended_utc=datetime.now(UTC).isoformat(timespec="seconds"), elapsed_s=round(clock() - t0, 1),
                    stopped_by_budget=bool(deferred))
        write_atomic(out / "slice.json", lambda f: f.write(json.dumps(info, indent=1).encode()))

    refreshed = clock()
    try:
        waiting = slice_packs.train_packs(todo, sizes, data, dev, root, deterministic, budget_s, t0, clock, info,
                                          packed_here) if max(sizes.values(), default=1) > 1 else set()
        for spec in todo:
            if spec.train_key() in waiting:  # its pack did not fit this slice: the next one packs it
                deferred.append(spec)
                continue
            try:
                guess = estimate(spec)
                if clock() - t0 + guess[0] > budget_s:
                    deferred.append(spec)
                    continue
                start = clock()
                res = run(spec, results_dir=root, device=dev, data=data, progress=False, deterministic=deterministic)
            except Exception as exc:  # a run or its probe raised: recorded, and the slice goes on with the others
                info["failed"].append({"key": spec.train_key(), "spec": describe(spec),
                                       "error": f"{type(exc).__name__}: {exc}"})
                print(f"FAILED {describe(spec)}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                continue
            wall = clock() - start
            if res.trained:
                observed.setdefault((spec.arch, kind_of(spec)), []).append(wall)
            info["runs"].append({"key": res.key, "spec": describe(spec), "arch": spec.arch, "kind": kind_of(spec),
                                 "wall_s": round(wall, 2), "estimate_s": round(guess[0], 2),
                                 "estimate_from": guess[1], "trained": res.trained, "diverged": res.diverged,
                                 "accuracy": res.accuracy})
            _progress(info, specs, todo, spec, wall, clock() - t0, budget_s, estimate, describe(spec))
            if not weights and clock() - refreshed >= REFRESH_S:
                write_outputs()
                refreshed = clock()
    except KeyboardInterrupt:  # SIGTERM too (main): the runs finished so far are written out
        info["interrupted"] = True
    info["finished"] = not info["interrupted"]
    write_outputs()
    return info


def _progress(info: dict, specs: list, todo: list, spec: RunSpec, wall: float, elapsed: float, budget_s: float,
              estimate: Callable, described: str) -> None:
    """One line per run: done / to go / elapsed / estimated time left."""
    guesses = [estimate(s, measure=False) for s in todo[todo.index(spec) + 1:]]
    unknown, ran = sum(g is None for g in guesses), len(info["runs"])
    print(f"[slice {info['profile']}] {len(specs) - len(todo) + ran}/{len(specs)} done, {len(todo) - ran} to go | "
          f"{described}: {wall:.1f} s | elapsed {elapsed:.0f} s of {budget_s:g} s | about "
          f"{duration(sum(g[0] for g in guesses if g))} of work left"
          + (f" (+{unknown} runs not estimated yet)" if unknown else ""), flush=True)


def main(argv: list[str] | None = None, clock: Callable[[], float] = time.monotonic) -> int:
    """Command line: 0 when the slice ran (work may be left); 1 when a run raised or SIGTERM stopped it (the
    outputs are written all the same); 2 with one sentence on bad input (nothing trained)."""
    p = argparse.ArgumentParser(prog="python -m paperlib.paper.slices", description=__doc__.splitlines()[0])
    p.add_argument("--profile", required=True, help="profile name or YAML file")
    p.add_argument("--notebooks", nargs="+", default=None, metavar="NB",
                   help=f"main-job names ({', '.join(NOTEBOOKS)}; default: all, or none with --epochs-curve)")
    p.add_argument("--epochs-curve", default=None, metavar="ARCH",
                   help=f"also the networks of ARCH's epochs curve ({', '.join(epochs_curve.VARIANTS)})")
    p.add_argument("--epochs", type=int, nargs="+", default=None, help="the epochs curve's training budgets")
    p.add_argument("--variants", nargs="+", default=None, metavar="V",
                   help="the epochs curve's variants: fp32, BITS:dynamic or BITS:SCALE (default: fp32 and one QAT)")
    p.add_argument("--budget-s", type=float, required=True, help="seconds no run may end past (from the start)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--results", default=None, help="results folder (default: $PAPERLIB_RESULTS, else <repo>/results)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder or .tar.gz (default: $PAPERLIB_DATA, else data/)")
    p.add_argument("--resume", nargs="+", default=[], metavar="ARCHIVE", help="archives of earlier slices")
    p.add_argument("--timings", default=None, help="a JSON file of python -m benchmarks.gpu_check --out")
    p.add_argument("--out", required=True, help="folder for the archive and slice.json ($OUT on the device)")
    p.add_argument("--weights", action="store_true", help="put the weights into the archive too")
    p.add_argument("--nondeterministic", action="store_true", help="CUDA's fastest kernels (recorded as such)")
    p.add_argument("--pack", type=int, default=None,
                   help="the largest pack (1: every network alone; default: the run engine's on the device)")
    args = p.parse_args(argv)
    term = signal.signal(signal.SIGTERM, signal.default_int_handler)  # killed at its limit: outputs written
    try:
        curve = None
        if args.epochs_curve is not None or args.epochs is not None or args.variants is not None:
            if args.epochs_curve is None or args.epochs is None:
                raise SliceError("an epochs curve needs --epochs-curve ARCH and --epochs (e.g. --epochs 5 10 20 40)")
            curve = {"arch": args.epochs_curve, "epochs": args.epochs,
                     "variants": None if args.variants is None else [epochs_curve.parse_variant(v)
                                                                     for v in args.variants]}
        info = run_slice(args.profile, args.notebooks, args.budget_s, args.out, args.device, args.results, args.data,
                         args.resume, args.timings, args.weights, False if args.nondeterministic else None, clock,
                         curve, args.pack)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, term)
    s = info["specs"]
    print(f"slice {info['profile']}: ran {s['run_here']}, {s['done']}/{s['total']} done, {s['left']} left"
          + (" (budget reached)" if info["stopped_by_budget"] else "") + f"; outputs in {args.out}")
    if info["archive"] and info["archive"]["over_limit"]:
        print(f"warning: {info['archive']['file']} is over 16 MiB and will not come back", file=sys.stderr)
    if info["failed"] or info["interrupted"]:
        print(f"error: {len(info['failed'])} run(s) raised" + (", interrupted" if info["interrupted"] else "")
              + "; what finished is in the outputs (slice.json says what failed)", file=sys.stderr)
        return 1
    return 0


__all__ = ["SliceError", "cost", "held", "kind_of", "load_timings", "main", "probe", "run_slice"]

if __name__ == "__main__":
    sys.exit(main())
