"""Device selection and numerics: the device is always a parameter, never hard-coded.

Reproducible on CUDA by default (docs/protocol.md §12): :func:`reproducible`
runs the block with deterministic algorithms on a CUDA device (cuDNN's default
algorithms are not: a rerun of one seed can give another network), so
that a rerun gives the same numbers and an interrupted run resumes to the
same result, as on the CPU. ``PAPERLIB_NONDETERMINISTIC=1`` (or
``deterministic=False``) opts out for speed; every result records which it was.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

#: Set to 1 to let CUDA choose its fastest, nondeterministic kernels; every result records that it did.
NONDETERMINISTIC_ENV = "PAPERLIB_NONDETERMINISTIC"
#: The cuBLAS workspace that deterministic cuBLAS needs (set when deterministic and not set already).
CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are checked and returned."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} was asked for but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s) (cuda:0 ... cuda:{torch.cuda.device_count() - 1}); use one of them or 'auto'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} was asked for but MPS is not available here; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not one paperlib runs on; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return dev


def deterministic_default(deterministic: bool | None = None) -> bool:
    """``deterministic``, or when None: True unless ``$PAPERLIB_NONDETERMINISTIC`` is 1/true/yes/on."""
    if deterministic is not None:
        return bool(deterministic)
    return os.environ.get(NONDETERMINISTIC_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


@contextlib.contextmanager
def reproducible(device: str | torch.device, deterministic: bool | None = None) -> Iterator[dict]:
    """Run the block with deterministic algorithms on a CUDA ``device`` (unless opted out); restored on exit.

    On CUDA: ``torch.use_deterministic_algorithms(True)`` (an op without a
    deterministic kernel raises, naming itself: opt out with
    ``PAPERLIB_NONDETERMINISTIC=1``), ``cudnn.deterministic``, no cuDNN
    benchmarking, and ``CUBLAS_WORKSPACE_CONFIG`` when unset. On the CPU nothing
    changes: it is deterministic already (one numeric thread, §12).

    Yields:
        What a result records of its numerics: ``{"device_type": "cuda", "deterministic": True, "how": ...}``.
    """
    dev = resolve_device(device)
    if dev.type != "cuda":
        yield {"device_type": dev.type, "deterministic": True, "how": "CPU kernels, one numeric thread"}
        return
    det = deterministic_default(deterministic)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if det:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(det)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det, False
    how = ("torch.use_deterministic_algorithms(True), cudnn.deterministic" if det
           else f"CUDA's default kernels, not deterministic (opted out: {NONDETERMINISTIC_ENV}=1 or "
                "deterministic=False)")
    try:
        yield {"device_type": "cuda", "deterministic": det, "how": how}
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


@contextlib.contextmanager
def tf32(allowed: bool = False) -> Iterator[None]:
    """Allow or forbid TF32 in CUDA matmuls and cuDNN convolutions inside the block; restored on exit.

    PyTorch allows TF32 in cuDNN convolutions by default, which changes
    numerics on Ampere and newer GPUs; paperlib trains and evaluates in full
    fp32 unless asked otherwise. No effect on the CPU.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
