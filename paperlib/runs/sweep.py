"""Sweeps: many runs, in-process or on any ``concurrent.futures`` executor (Dask included).

:func:`run_sweep` returns one tidy table for all runs. Runs already in the
cache cost nothing; a run that raises or diverges is recorded with its error
while the others go on; a run whose worker dies is submitted again.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import os
import time
import traceback
from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..device import deterministic_default, resolve_device
from ..threads import cpu_count, dask_task_threads
from . import packs as _packs
from . import progress as _progress
from .experiment import RunSpec, check_writable, results_root, reuse_stale_default, run, shared_data
from .summary import variant_name

#: The key of a run's first row that carries how many noise points it evaluated, for its progress line; never a column.
_EVALUATED = "_evaluated"
#: The curve columns of a run without a noise curve (failed).
_NO_CURVE = {"sigma": math.nan, "repeat": -1, "accuracy": math.nan}


def _spec_fields(spec: RunSpec) -> dict[str, Any]:
    """The spec's fields for a table row (the grid itself is in the rows)."""
    return {k: v for k, v in spec.to_dict().items() if k not in ("sigmas", "repeats")}


def _rows(result) -> list[dict[str, Any]]:
    """One row per curve point; ``revision`` and ``code`` name the checkout and code fingerprint that trained it."""
    common = {**_spec_fields(result.spec), "key": result.key, "clean_accuracy": result.accuracy,
              "diverged": result.diverged, "error": result.error, "trained": result.trained,
              "revision": result.revision, "code": result.code, "device": result.device,
              "deterministic": result.deterministic, "torch": result.torch_version, "pack": result.pack}
    if result.noise_curve.empty:
        return [{**common, **_NO_CURVE}]
    return [{**common, "sigma": s, "repeat": int(r), "accuracy": a}
            for s, r, a in result.noise_curve.itertuples(index=False)]


def _error_rows(spec: RunSpec, error: str) -> list[dict[str, Any]]:
    return [{**_spec_fields(spec), "key": None, "clean_accuracy": math.nan, "diverged": False, "error": error,
             "trained": False, "revision": None, "code": None, "device": None, "deterministic": None, "torch": None,
             "pack": None, **_NO_CURVE}]


def _worker_device(device: str) -> str:
    """On a machine with several GPUs, spread Dask workers over them by worker name."""
    if device not in ("auto", "cuda") or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except (ImportError, ValueError):
        return device
    return f"cuda:{sum(map(ord, name)) % torch.cuda.device_count()}"


def _describe(spec: RunSpec) -> str:
    """``lenet5 8-bit s=1 seed 0``, with what else tells the run apart: the training sigma when noisy (and its
    variance-aware sampling, its noise kind), the evaluation noise kind when not additive, its one noise site
    (walking noise) and its evaluation test images when set. For progress lines."""
    extra = []
    if spec.sigma_train > 0:
        extra.append(f"trained at sigma {spec.sigma_train:.3g}")
        if spec.sigma_sampling != "fixed":
            per = {"sample": "image", "epoch": "epoch"}.get(spec.sigma_sampling, spec.sigma_sampling)
            extra.append(f"(a sigma per {per}: alpha {spec.sigma_alpha:.3g}, theta {spec.sigma_theta:.3g})")
        if spec.train_noise_kind != "additive":
            extra.append(f"({spec.train_noise_kind} noise)")
    if spec.noise_kind != "additive":
        extra.append(f"evaluated with {spec.noise_kind} noise")
    if spec.noise_site is not None:
        extra.append(f"noise at site {spec.noise_site} only")
    if spec.eval_test_subset is not None:
        extra.append(f"on {spec.eval_test_subset:,} test images")
    return " ".join([spec.arch, variant_name(spec.bits, spec.scale), *extra, f"seed {spec.seed}"])


class _Pace:
    """Progress lines of a sweep (:mod:`paperlib.progress`): runs from the cache, runs trained, time left."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.trained, self.cached, self.failed = total, 0, 0, 0, 0
        self.worked = 0  # runs that trained or evaluated something: what the time left is estimated from
        self.t0 = time.perf_counter()
        _progress.report(f"sweep of {total} run(s)")

    def done(self, spec: RunSpec, rows: list[dict[str, Any]]) -> None:
        self.count += 1
        first = rows[0]
        if first.get("key") is None:
            self.failed += 1
            how = "FAILED: " + str(first.get("error", "")).strip().splitlines()[0][:120]
        elif first.get("trained"):
            self.trained += 1
            how = "trained" + (f" in a pack of {first['pack']}" if (first.get("pack") or 1) > 1 else "") \
                + (" (diverged)" if first.get("diverged") else "")
        else:
            self.cached += 1
            how = "from the cache"
        evaluated = first.pop(_EVALUATED, 0)
        if evaluated and not first.get("trained") and not first.get("diverged"):  # a trained network evaluates
            how += f", {evaluated} noise point(s) evaluated"
        self.worked += bool(first.get("trained") or evaluated)
        left = self.total - self.count
        eta = ""
        if left and self.worked:  # an estimate, not a bound: a run resumed from its partial checkpoint is quicker
            eta = f"; about {_progress.duration((time.perf_counter() - self.t0) / self.worked * left)} left"
        _progress.report(
            f"run {self.count}/{self.total} {_describe(spec)}: {how} "
            f"({self.trained} trained, {self.cached} cached, {self.failed} failed, {left} to go{eta})"
        )


def _trained_here(rows: list[dict[str, Any]], packed: set[str]) -> list[dict[str, Any]]:
    """``rows`` of a run, marked ``trained`` when this sweep trained its network in a pack (its run found it cached)."""
    if rows and rows[0].get("key") in packed:
        for r in rows:
            r["trained"] = True
    return rows


def run_rows(
    spec: RunSpec, data_root: str | None, results_dir: str | None, device: str, *, reuse_stale: bool | None = None,
    deterministic: bool | None = None,
) -> list[dict[str, Any]]:
    """Run one spec and return its rows; an exception becomes an error row (for executors).

    In a Dask worker the run gets one CPU thread (:func:`paperlib.threads.dask_task_threads`): a worker runs
    ``threads_per_worker`` runs at once, so more threads per run would oversubscribe its cores.
    """
    try:
        with dask_task_threads():
            result = run(spec, data_root, results_dir, _worker_device(device), progress=False,
                         reuse_stale=reuse_stale, deterministic=deterministic)
        rows = _rows(result)
        rows[0][_EVALUATED] = result.evaluated  # for the progress line only (_Pace.done pops it from every run)
        return rows
    except Exception as exc:  # recorded, the sweep goes on
        return _error_rows(spec, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")


def run_sweep(
    specs: Iterable[RunSpec],
    executor: cf.Executor | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    device: str = "auto",
    retries: int = 1,
    progress: bool = True,
    reuse_stale: bool | None = None,
    deterministic: bool | None = None,
    pack: int | None = None,
) -> pd.DataFrame:
    """Run every spec (cached ones cost nothing) and return one tidy table.

    Args:
        specs: the runs.
        executor: ``None`` runs in this process, one after another; else any
            ``concurrent.futures.Executor`` (see :func:`paperlib.dask_executor`).
        data_root, results_dir, device: as for :func:`paperlib.run`.
        retries: resubmissions of a run whose worker died.
        progress: a progress bar over runs.
        reuse_stale: as for :func:`paperlib.run` (None: ``$PAPERLIB_REUSE_STALE`` of this process).
        deterministic: as for :func:`paperlib.run` (None: yes unless ``$PAPERLIB_NONDETERMINISTIC`` of this
            process is 1).
        pack: the largest pack: the specs to train that differ only in seed and training sigma train together,
            up to this many per pack (:mod:`paperlib.runs.packs`; 1: each alone); None: ``$PAPERLIB_PACK`` when
            set, else 32 LeNet-5s on CUDA and every network alone on the CPU
            (:data:`~paperlib.runs.packs.CUDA_PACK_SIZES`).

    Returns:
        One row per spec x sigma x repeat, with every spec field (but the
        grid), ``key``, ``sigma``, ``repeat``, ``accuracy``, ``clean_accuracy``,
        ``diverged``, ``error``, ``trained``, ``revision`` and ``code`` (the
        git revision and code hash that trained the network), ``device`` and
        ``deterministic`` (its kernels; None: recorded before results said so), ``pack`` (how many networks
        trained together with it; 1: alone); a diverged spec
        has its NaN-logit score at every point (docs/protocol.md §11), a failed
        one a single row with NaN accuracy and its error.
    """
    specs = list(specs)
    for s in specs:
        if not isinstance(s, RunSpec):
            raise TypeError(f"run_sweep takes RunSpec objects, got {type(s).__name__}")
    root = None if data_root is None else str(data_root)
    out = None if results_dir is None else str(results_dir)
    check_writable(results_root(out))  # one clear error before any run, not one per run
    # resolved here: workers may not share the environment
    stale = {"reuse_stale": reuse_stale_default(reuse_stale), "deterministic": deterministic_default(deterministic)}
    _packs.check_pack(pack)
    packed = _train_packs(specs, executor, root, out, device, pack, stale, progress)
    rows: dict[int, list[dict]] = {}
    pace = _Pace(len(specs))
    with tqdm(total=len(specs), desc="sweep", unit="run", disable=not progress) as bar:
        if executor is None:
            for i, spec in enumerate(specs):
                rows[i] = _trained_here(run_rows(spec, root, out, device, **stale), packed)
                pace.done(spec, rows[i])
                bar.update()
        else:
            pending = {executor.submit(run_rows, s, root, out, device, **stale): (i, 0) for i, s in enumerate(specs)}
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    i, attempt = pending.pop(fut)
                    try:
                        rows[i] = _trained_here(fut.result(), packed)
                    except Exception as exc:  # the worker died or the executor broke
                        if attempt < retries:
                            pending[executor.submit(run_rows, specs[i], root, out, device, **stale)] = (i, attempt + 1)
                            continue
                        rows[i] = _error_rows(
                            specs[i], f"worker failed {attempt + 1} time(s): {type(exc).__name__}: {exc}"
                        )
                    pace.done(specs[i], rows[i])
                    bar.update()
    return pd.DataFrame([r for i in range(len(specs)) for r in rows[i]])


def _train_packs(
    specs: list[RunSpec], executor: cf.Executor | None, root: str | None, out: str | None, device: str,
    pack: int | None, stale: dict, progress: bool = False,
) -> set[str]:
    """Train in packs what ``specs`` need trained (:mod:`paperlib.runs.packs`); returns the keys trained. A failed
    pack is reported and its networks train alone afterwards."""
    sizes = {arch: _packs.pack_size(pack, device, arch) for arch in {s.arch for s in specs}}
    if max(sizes.values(), default=1) < 2:
        return set()
    here = resolve_device(device)
    data = shared_data(root, str(here) if executor is None else "cpu")  # the data's digest and the cache keys
    cache = results_root(out)
    todo = []
    for spec in specs:
        if sizes[spec.arch] < 2:
            continue
        try:
            need = _packs.needs_training(spec, data, cache, stale["reuse_stale"], here)
        except Exception:  # noqa: BLE001  bad input: its run says so, as an error row
            continue
        if need is not None:
            todo.append(need)
    unfinished = _packs.unfinished_packs(cache)
    planned = [p for arch, size in sorted(sizes.items())
               for p in _packs.plan_packs([s for s in todo if s.arch == arch], size, unfinished)]
    if not planned:
        return set()
    _progress.report(f"{len(planned)} pack(s) of {sum(map(len, planned))} networks to train together")
    det = stale["deterministic"]
    trained: set[str] = set()
    if executor is None:
        for i, members in enumerate(planned):
            outcome = _packs.pack_task(members, root, str(cache), device, det, i + 1, len(planned), progress)
            _packs.report(outcome, members, i + 1, len(planned))
            trained.update(outcome.trained)
        return trained
    pending = {executor.submit(_pack_on_worker, m, root, str(cache), device, det, i + 1, len(planned)): i
               for i, m in enumerate(planned)}
    done_count = 0
    for fut in cf.as_completed(pending):
        members = planned[pending[fut]]
        done_count += 1
        try:
            outcome = fut.result()
        except Exception as exc:  # the worker died: its networks train alone
            outcome = _packs.PackOutcome([s.train_key() for s in members], [], f"worker failed: {exc}", 0.0)
        _packs.report(outcome, members, done_count, len(planned))
        trained.update(outcome.trained)
    return trained


def _pack_on_worker(specs: list[RunSpec], data_root: str | None, root: str, device: str, deterministic: bool,
                    index: int, total: int) -> _packs.PackOutcome:
    """:func:`paperlib.runs.packs.pack_task` on a worker's own GPU (:func:`_worker_device`)."""
    return _packs.pack_task(specs, data_root, root, _worker_device(device), deterministic, index, total)


class DaskExecutor(cf.Executor):
    """A ``concurrent.futures`` executor on a Dask cluster; closes client and cluster on shutdown."""

    def __init__(self, client, cluster=None, retries: int = 1) -> None:
        self.client, self.cluster = client, cluster
        self._executor = client.get_executor(pure=False, retries=retries)

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def dask_executor(
    address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    workers_per_gpu: int = 1,
    retries: int = 1,
) -> DaskExecutor:
    """A Dask executor for :func:`run_sweep`.

    Args:
        address: scheduler address of an existing cluster (e.g. one started by
            dask-jobqueue's ``SLURMCluster``; ``cluster.scheduler_address``).
            Empty or ``None``: start a ``LocalCluster`` on this machine.
        n_workers: local worker processes; default: ``workers_per_gpu`` per
            GPU where there are GPUs, else one per ``threads_per_worker`` CPU
            cores this process may use (:func:`paperlib.threads.cpu_count`),
            so that workers x threads never exceeds the cores.
        threads_per_worker: runs one local worker runs at once, each on one
            CPU thread (:func:`run_rows` sees to that in any Dask worker). The
            numerics of every run use :data:`paperlib.threads.NUMERIC_THREADS`
            threads wherever it runs, so the numbers equal an in-process sweep's.
        workers_per_gpu: several small runs can share one GPU.
        retries: Dask-level retries of a task whose worker died.

    Use as a context manager, or call ``shutdown()`` when done.
    """
    from distributed import Client, LocalCluster

    if isinstance(threads_per_worker, bool) or not (isinstance(threads_per_worker, int) and threads_per_worker >= 1):
        raise ValueError(f"threads_per_worker must be a whole number >= 1, got {threads_per_worker!r}")
    if address:
        return DaskExecutor(Client(address), None, retries)
    if n_workers is None:
        gpus = torch.cuda.device_count()
        n_workers = gpus * workers_per_gpu if gpus else max(1, cpu_count() // threads_per_worker)
    # The cluster logs only what is fatal: under load a worker's heartbeat may lose the scheduler for a moment, and
    # Dask prints a traceback it then recovers from; a run that fails for good becomes an error row and a progress
    # line. silence_logs covers this process (scheduler, nannies), _quiet_logs the worker processes.
    cluster = LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    client = Client(cluster)
    client.run(_quiet_logs)
    return DaskExecutor(client, cluster, retries)


def _quiet_logs() -> None:
    """In a Dask worker of :func:`dask_executor`'s local cluster: log only what is fatal."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
