"""The one training-step timer of the benchmarks (``python -m benchmarks`` and ``benchmarks.gpu_check``)."""
from __future__ import annotations

import time

import torch
from torch.nn import functional as F


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Wall seconds per Adam training step (lr 1e-4) of ``model`` on the batch ``x`` (N, 3, 32, 32), ``y`` (N,).

    The mean over ``steps`` steps after one warm-up step, on the device of ``x``, synchronized before and after.
    """
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    for i in range(steps + 1):
        if i == 1:  # the first step warms up
            sync(x.device)
            t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(x.device)
    return (time.perf_counter() - t) / steps
