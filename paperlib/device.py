"""Device selection: the device is always a parameter, never hard-coded."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


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
