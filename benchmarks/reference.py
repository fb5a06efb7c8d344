"""The reference pipeline users compare us with (the authors' code, docs/protocol.md §6).

Training: a torchvision ``DataLoader`` over PIL images with per-image
``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``,
``Normalize``, ``num_workers=2``, batch 128, shuffled. Evaluation: set one
sigma, loop over the test loader, repeat, next sigma.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from paperlib import set_noise
from paperlib.data import MEAN, STD


class UInt8Images(Dataset):
    """uint8 images ``[N, 3, 32, 32]`` served as PIL images, like ``torchvision.datasets.CIFAR10``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # HWC, as CIFAR10.data
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


TRAIN_TRANSFORM = transforms.Compose([
    transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
    transforms.ToTensor(), transforms.Normalize(MEAN, STD),
])
TEST_TRANSFORM = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def train_steps(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, steps: int,
                batch_size: int = 128, num_workers: int = 2, lr: float = 1e-3) -> int:
    """The reference training loop for ``steps`` steps; returns the images trained on."""
    loader = DataLoader(UInt8Images(images, labels, TRAIN_TRANSFORM), batch_size=batch_size, shuffle=True,
                        num_workers=num_workers, persistent_workers=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    seen, done = 0, 0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen, done = seen + len(y), done + 1
            if done == steps:
                break
    return seen


@torch.no_grad()
def noise_sweep(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, sigmas, repeats: int,
                batch_size: int = 128, num_workers: int = 2) -> list[tuple[float, int, float]]:
    """The reference evaluation: one sigma at a time, a pass over the test loader per repeat."""
    loader = DataLoader(UInt8Images(images, labels, TEST_TRANSFORM), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers)
    model.eval()
    out = []
    for sigma in sigmas:
        set_noise(model, float(sigma))
        for r in range(repeats):
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
            out.append((float(sigma), r, correct / len(labels)))
    set_noise(model, 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one reference job in this process: ``python -m benchmarks.reference JOB OUT``.

    ``JOB`` is a ``torch.save`` of ``{"fn": "train_steps" | "noise_sweep", "model": (arch, bits, scale, seed),
    "state_dict": dict or None, "args": [...], "kwargs": {...}}``; ``OUT`` gets ``{"result": ..., "seconds": ...}``
    and ``"omp_wait_policy"`` (JSON), the seconds of the call alone. torch is loaded before paperlib here, as in
    the authors' scripts, so OpenMP keeps its own default wait policy (``paperlib.threads``).
    """
    import json
    import sys
    import time
    from pathlib import Path

    from paperlib import build_model

    job_file, out_file = (argv if argv is not None else sys.argv[1:])
    job = torch.load(job_file, weights_only=False)
    model = build_model(*job["model"])
    if job["state_dict"] is not None:
        model.load_state_dict(job["state_dict"])
    fn = {"train_steps": train_steps, "noise_sweep": noise_sweep}[job["fn"]]
    t = time.perf_counter()
    result = fn(model, *job["args"], **job["kwargs"])
    seconds = time.perf_counter() - t
    import os

    Path(out_file).write_text(json.dumps({"result": result, "seconds": seconds,
                                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
