"""Thread counts: one fixed count for the numerics, the process's own share of the CPU for the rest.

Why the numerics run on a fixed number of threads. On the CPU, PyTorch's
convolution and matmul kernels (oneDNN, MKL) may split the sums of a backward
pass -- a weight or bias gradient sums over the batch and the pixels -- across
their intra-op threads, so the last bits of the gradients depend on
``torch.get_num_threads()`` (seen for LeNet-5: the first convolution's weight
and bias gradients and the last layer's weight gradient differ between 1 and 2
threads, while the forward pass is the same). After a few steps the weights
differ by ~1e-8, and now and then a test image near a decision boundary
flips, i.e. a noise curve point moves by one image. Left alone, that made an in-process
sweep (torch's default: one thread per core) and a Dask sweep (Dask starts its
workers with ``OMP_NUM_THREADS=1``) disagree. So every numeric op of
:func:`paperlib.train`, :func:`paperlib.accuracy` and
:func:`paperlib.evaluate_pairs` runs inside :func:`numeric_threads`, on
:data:`NUMERIC_THREADS` intra-op threads, whatever the executor, the core count
or the load.

One thread is also the count that never oversubscribes the CPU: one Dask
worker per core, one thread each (:func:`dask_task_threads`). And with one
thread OpenMP has no worker threads that busy-wait (spin) for work while
another job needs their core: on a busy 2-core machine, LeNet-5 training steps
on 2 threads ran 7-13x slower than on 1 thread; with ``OMP_WAIT_POLICY=PASSIVE``
(read once, when torch loads) 2 threads were about as fast as 1. Whoever asks
for ``numeric_threads(n)`` with ``n > 1`` on a shared machine should set it.

What may still change the numbers: another CPU instruction set (oneDNN and
MKL pick other kernels on, e.g., AVX-512 than on AVX2), other torch/oneDNN/MKL
builds, a GPU instead of the CPU, and an explicit ``numeric_threads(n)`` with
``n != 1`` around a backward pass or a full reduction.

Evaluation runs on one thread too, unless you ask for more
(docs/protocol.md §12). A forward pass without autograd splits its outputs
across threads on most CPUs, and its bits were the same on 1, 2 and 3 threads
on an AMD EPYC (AVX2) for LeNet-5, VGG-11 and ResNet-18; but on an Intel Xeon
(2026-12-05) VGG-11's logits differed in their last bits between thread counts
(fp32 and QAT; LeNet-5 and ResNet-18 did not), so a kernel there splits a sum.
Which CPU a user or CI has is not ours to choose, so ``numeric_threads()``
inside ``torch.no_grad()`` (as in :func:`paperlib.accuracy` and
:func:`paperlib.evaluate_pairs`) runs on :func:`evaluation_threads`:
:data:`NUMERIC_THREADS`, or what ``$PAPERLIB_EVAL_THREADS`` asks for
(``share``: the process's share of the CPU; or a whole number), a speed-up of
1.3-1.7x on a quiet 2-core machine that may change the last bits of an
evaluation on some CPUs. A full reduction over a large tensor (``sum``,
``mean``) depends on the thread count on every CPU; code without autograd that
takes one asks for ``numeric_threads(NUMERIC_THREADS)`` (:mod:`paperlib.pcm`).

Many threads on a busy machine are only safe when OpenMP's idle threads sleep:
with torch's default they spin, and a forward pass on 2 threads beside one
other job per core ran 1.2-4x slower than on 1 thread (LeNet-5, VGG-11,
ResNet-18); with ``OMP_WAIT_POLICY=PASSIVE`` it ran as fast as on 1 thread,
and 1.3-1.7x faster on a quiet machine. OpenMP reads that variable once, when
torch loads, so this module sets it (unless the environment already does)
when it is imported before torch, which ``import paperlib`` does first
(:data:`PASSIVE_WAIT`); where torch was loaded before with spinning threads,
evaluation keeps to :data:`NUMERIC_THREADS`.
Work whose result does not depend on the thread count, like the chunked
noise draws of :func:`paperlib.noise.standard_normal`, uses the process's share
of the CPU (:func:`process_threads`) too.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

#: Whether torch was loaded before this module (then OpenMP has read its wait policy already).
TORCH_LOADED_FIRST = "torch" in sys.modules
#: ``OMP_WAIT_POLICY`` as the environment had it before this module (None: unset).
USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
if not TORCH_LOADED_FIRST:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
#: Whether torch's OpenMP threads sleep while they wait for work (``OMP_WAIT_POLICY=PASSIVE`` when torch loaded).
PASSIVE_WAIT = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"

import torch  # noqa: E402  (after the wait policy: OpenMP reads it when torch loads)

#: Intra-op threads of every CPU op that trains or evaluates a network (see the module docstring).
NUMERIC_THREADS = 1

_local = threading.local()  # per OS thread: torch's thread counts are per thread (OpenMP ICVs), so is the saved one


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def process_threads() -> int:
    """Threads this process (this Dask worker, this job) may keep busy, at least 1.

    torch's thread count outside any :func:`numeric_threads` block (torch
    takes it from ``OMP_NUM_THREADS``, else the cores; in a Dask task it is 1,
    see :func:`dask_task_threads`), and never more than :func:`cpu_count`.
    """
    outer = getattr(_local, "outer", None)
    return max(1, min(outer if outer is not None else torch.get_num_threads(), cpu_count()))


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count ``n`` in the calling thread inside the block, restored on exit."""
    saved = torch.get_num_threads()
    if saved != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


#: The environment variable that lets evaluations use more than :data:`NUMERIC_THREADS` (module docstring).
EVAL_THREADS_ENV = "PAPERLIB_EVAL_THREADS"


def evaluation_threads() -> int:
    """Intra-op threads of a forward pass without autograd: :data:`NUMERIC_THREADS`, unless
    ``$PAPERLIB_EVAL_THREADS`` is ``share`` (:func:`process_threads` where OpenMP's idle threads sleep,
    :data:`PASSIVE_WAIT`, else one) or a whole number; more than one may change an evaluation's last bits on some
    CPUs (module docstring)."""
    raw = os.environ.get(EVAL_THREADS_ENV, "").strip().lower()
    if not raw:
        return NUMERIC_THREADS
    if raw == "share":
        return process_threads() if PASSIVE_WAIT else NUMERIC_THREADS
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    raise ValueError(f"${EVAL_THREADS_ENV} is {os.environ[EVAL_THREADS_ENV]!r}; set it to 'share' (the process's "
                     f"share of the CPU), a whole number of threads >= 1, or leave it unset (one thread, the same "
                     f"bits on every CPU's thread count)")


@contextlib.contextmanager
def numeric_threads(n: int | None = None) -> Iterator[None]:
    """Run torch's CPU ops in this block on ``n`` intra-op threads; the previous count is restored on exit.

    ``n`` None (the numerics of :func:`paperlib.train` and of the evaluations):
    :data:`NUMERIC_THREADS` where autograd records (a backward pass's sums
    split across threads), :func:`evaluation_threads` inside ``torch.no_grad()``
    or inference mode (also one, unless ``$PAPERLIB_EVAL_THREADS`` asks for
    more; module docstring). Nestable; acts on the calling thread (torch keeps one count per thread),
    so concurrent Dask tasks in one worker do not undo each other's setting.
    Inside the block :func:`process_threads` still reports the count from
    outside it. Either way CPU results are independent of the executor, the
    core count and the load (module docstring).
    """
    if n is None:
        n = NUMERIC_THREADS if torch.is_grad_enabled() else evaluation_threads()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"numeric_threads takes a whole number of threads >= 1, got {n!r}")
    outer = getattr(_local, "outer", None)
    if outer is None:
        _local.outer = torch.get_num_threads()
    try:
        with _torch_threads(n):
            yield
    finally:
        _local.outer = outer


def in_dask_worker() -> bool:
    """Whether the calling thread runs a task of a Dask worker."""
    try:
        from distributed import get_worker
        get_worker()
    except (ImportError, ValueError):
        return False
    return True


@contextlib.contextmanager
def dask_task_threads() -> Iterator[None]:
    """In a Dask worker's task: one CPU thread for this task (:func:`process_threads` is 1); elsewhere nothing.

    A worker runs ``threads_per_worker`` tasks at once, one per thread; with
    one CPU thread each, workers x tasks x threads never exceeds the cores
    that :func:`paperlib.dask_executor` gives out, whatever the cluster's
    ``OMP_NUM_THREADS``. Restored when the task ends.
    """
    if not in_dask_worker():
        yield
        return
    with _torch_threads(1):
        yield
