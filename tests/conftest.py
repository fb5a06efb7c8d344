import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import paperlib  # noqa: F401  first: it asks OpenMP's idle threads to sleep before torch loads (paperlib.threads)

# isort: split
import numpy as np
import pytest
import torch
from PIL import Image

from paperlib.data import CLASSES, CIFAR10Data

#: The JPEG copy of CIFAR-10, a .tar.gz of train/<class>/*.jpg and test/<class>/*.jpg, for the tests on real data;
#: .ci/run sets it where the workspace has the archive.
ARCHIVE_ENV = "PAPERLIB_TEST_ARCHIVE"
#: A data root holding torchvision's python release, ``<root>/cifar-10-batches-py``, for the tests on real data; the
#: tests workflow (.github/workflows/tests.yml) downloads it with ``torchvision.datasets.CIFAR10`` and sets it.
DATA_ENV = "PAPERLIB_TEST_DATA"


@dataclass(frozen=True)
class RealCIFAR10:
    """Real CIFAR-10 for the tests on it: where it is and what :func:`paperlib.load_cifar10` must say of it."""

    kind: str
    """``"jpeg-archive"`` (the JPEG copy, from $PAPERLIB_TEST_ARCHIVE) or ``"python-release"`` ($PAPERLIB_TEST_DATA)"""
    path: Path
    """what to pass to :func:`paperlib.load_cifar10`: the archive, or the data root"""
    source: str
    """the source label it must get: ``"CIFAR-10 (JPEG copy)"`` or ``"CIFAR-10"``"""


#: The two sources of real CIFAR-10: environment variable, source label, what the variable must name.
REAL_SOURCES = {
    "jpeg-archive": (ARCHIVE_ENV, "CIFAR-10 (JPEG copy)", "a .tar.gz of train/<class>/*.jpg, test/<class>/*.jpg"),
    "python-release": (DATA_ENV, "CIFAR-10", "a data root holding cifar-10-batches-py"),
}


@pytest.fixture(autouse=True)
def _quiet_and_deterministic(monkeypatch, tmp_path_factory):
    torch.manual_seed(0)
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session", params=list(REAL_SOURCES))
def real_cifar10(request) -> RealCIFAR10:
    """Real CIFAR-10, once from each source (:data:`REAL_SOURCES`): the JPEG archive named by $PAPERLIB_TEST_ARCHIVE
    and the data root named by $PAPERLIB_TEST_DATA.

    A source whose variable is not set is skipped, with the variable in the reason; one that is set but does not name
    what it must fails, so a CI whose data went missing does not pass by skipping.
    """
    variable, source, what = REAL_SOURCES[request.param]
    value = os.environ.get(variable, "")
    if not value:
        pytest.skip(f"no {request.param} of CIFAR-10: set {variable} to {what}")
    path = Path(value).expanduser().resolve()
    found = path.is_file() if request.param == "jpeg-archive" else (path / "cifar-10-batches-py").is_dir()
    if not found:
        pytest.fail(f"{variable}={value} is not {what}", pytrace=False)
    return RealCIFAR10(request.param, path, source)


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


#: Colours of the ten classes of :func:`make_learnable_release` (uint8 RGB): the corners of a cube plus two more.
LEARNABLE_COLOURS = np.array([(r, g, b) for r in (40, 215) for g in (40, 215) for b in (40, 215)]
                             + [(128, 40, 128), (128, 215, 128)], dtype=float)


def make_learnable_release(root, n_train=3000, n_test=200, noise=30.0, seed=0) -> Path:
    """A generated, learnable ``cifar-10-batches-py`` folder under ``root``; returns the data root.

    Class ``k`` is a plain image of colour ``LEARNABLE_COLOURS[k]`` plus independent Gaussian pixel noise of
    standard deviation ``noise`` (uint8 units): a colour survives the random crops and flips of the training
    augmentation, so LeNet-5 reaches 100% test accuracy in one epoch of 3,000 images, and noise of sigma >= 10
    after every layer brings it to chance. Labels cycle through the classes; ``n_train`` must divide by 5.
    The folder reader labels it "CIFAR-10" (it cannot tell it from the real release).
    """
    if n_train % 5:
        raise ValueError(f"n_train must be a multiple of 5 (five data batches), got {n_train}")
    rng = np.random.default_rng(seed)

    def draw(n):
        labels = np.arange(n) % 10
        images = LEARNABLE_COLOURS[labels][:, :, None, None] + noise * rng.standard_normal((n, 3, 32, 32))
        return np.clip(np.rint(images), 0, 255).astype(np.uint8).reshape(n, -1), labels.tolist()

    batches = Path(root) / "cifar-10-batches-py"
    batches.mkdir(parents=True, exist_ok=True)
    per_batch = n_train // 5
    for b in range(5):
        data, labels = draw(per_batch)
        (batches / f"data_batch_{b + 1}").write_bytes(pickle.dumps({"data": data, "labels": labels}))
    data, labels = draw(n_test)
    (batches / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels}))
    return Path(root)


@pytest.fixture(scope="session")
def learnable_root(tmp_path_factory) -> Path:
    """A generated, learnable data root (see :func:`make_learnable_release`): 3,000 training, 200 test images."""
    return make_learnable_release(tmp_path_factory.mktemp("learnable"))


def assert_frozen_equals_brevitas(model, x, frozen_types) -> None:
    """``paperlib.inference.frozen_quantizers`` gives bitwise Brevitas' outputs on ``x``, freezes every module of
    ``frozen_types`` and restores the model on exit (``model`` in eval mode)."""
    from paperlib.inference import frozen_quantizers

    with torch.no_grad():
        reference = model(x)
        with frozen_quantizers(model):
            fast = model(x)
            assert all("forward" in vars(m) for m in model.modules() if isinstance(m, frozen_types))
        assert not any("forward" in vars(m) for m in model.modules())  # restored
        assert torch.equal(model(x), reference)
    assert torch.equal(fast, reference)
