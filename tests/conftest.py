import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.data import CLASSES, CIFAR10Data

ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _quiet_and_deterministic(monkeypatch, tmp_path_factory):
    torch.manual_seed(0)
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def archive() -> Path:
    """The JPEG archive at ../shared/data, or skip."""
    path = Path(os.environ.get("PAPERLIB_TEST_ARCHIVE", ARCHIVE))
    if not path.is_file():
        pytest.skip(f"the CIFAR-10 JPEG archive is not at {path} (set PAPERLIB_TEST_ARCHIVE to run this test)")
    return path


def separable_data(n_train=512, n_test=500, seed=0) -> CIFAR10Data:
    """Ten class templates plus pixel noise: LeNet-5 learns it in a few steps."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(10, 3, 32, 32, generator=g)

    def draw(n):
        y = torch.arange(n) % 10
        return templates[y] + 0.8 * torch.randn(n, 3, 32, 32, generator=g), y

    (xtr, ytr), (xte, yte) = draw(n_train), draw(n_test)
    return CIFAR10Data(xtr, ytr, xte, yte, "synthetic")


def make_release(root, per_batch=20, n_test=30, seed=0):
    """A tiny cifar-10-batches-py folder and the same images as a PNG image-folder tree."""
    rng = np.random.default_rng(seed)
    batches = root / "release" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    splits = {"train": 5 * per_batch, "test": n_test}
    arrays = {}
    for split, n in splits.items():
        labels = np.sort(np.arange(n) % 10)  # sorted by class, as the folder reader orders them
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        arrays[split] = (images, labels)
        for i, (img, lab) in enumerate(zip(images, labels)):
            folder = root / "folder" / split / CLASSES[lab]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{i:05d}.png")
    train_x, train_y = arrays["train"]
    for b in range(5):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        entry = {"data": train_x[sl].reshape(per_batch, -1), "labels": train_y[sl].tolist()}
        (batches / f"data_batch_{b + 1}").write_bytes(pickle.dumps(entry))
    test_x, test_y = arrays["test"]
    (batches / "test_batch").write_bytes(pickle.dumps({"data": test_x.reshape(n_test, -1), "labels": test_y.tolist()}))
    return arrays


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A generated cifar-10-batches-py folder: 200 training and 60 test images of random pixels."""
    root = tmp_path_factory.mktemp("tiny")
    make_release(root, per_batch=40, n_test=60)
    return root / "release"
