"""CIFAR-10 as tensors, from three sources, with batched on-device augmentation (REFERENCE §6).

Sources, tried in this order under the data root:

1. ``<root>/cifar-10-batches-py``: the python release (what torchvision downloads);
2. an image-folder tree ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``
   (like ``cifar10-jpeg.tar.gz``; ``root`` may also be such a ``.tar.gz``
   itself), decoded once and cached as uint8 arrays;
3. torchvision's ``CIFAR10(root, download=True)`` when ``download=True`` and
   the network allows; it writes source 1.

The root is the ``root`` argument, else ``$PAPERLIB_DATA``, else ``./data``.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .atomic import write_atomic

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
#: Per-channel normalization (REFERENCE §6).
MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
STD: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DataNotFoundError(FileNotFoundError):
    """CIFAR-10 is not under the data root and could not be downloaded."""


@dataclass
class CIFAR10Data:
    """CIFAR-10, normalized, as tensors on one device."""

    x_train: Tensor
    """training images, ``[N, 3, 32, 32]`` float32, normalized with MEAN/STD"""
    y_train: Tensor
    """training labels, ``[N]`` int64 in 0..9"""
    x_test: Tensor
    """test images, ``[M, 3, 32, 32]`` float32, normalized"""
    y_test: Tensor
    """test labels, ``[M]`` int64"""
    source: str
    """identity of the data set: CIFAR-10, CIFAR-10 (JPEG copy) or CIFAR-10 (image folder)"""

    def describe(self) -> str:
        """The data set and its size, for captions: "CIFAR-10 (JPEG copy), 50000 train / 10000 test images"."""
        return f"{self.source}, {len(self.y_train)} train / {len(self.y_test)} test images"

    def to(self, device: torch.device | str) -> "CIFAR10Data":
        """The same data on ``device``."""
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> "CIFAR10Data":
        """A stratified, seeded subset: ``train``/``test`` images (``None`` keeps all)."""
        out = self
        if train is not None and train < len(self.y_train):
            idx = stratified_indices(self.y_train, train, seed).to(self.y_train.device)
            out = replace(out, x_train=self.x_train[idx], y_train=self.y_train[idx])
        if test is not None and test < len(self.y_test):
            idx = stratified_indices(self.y_test, test, seed).to(self.y_test.device)
            out = replace(out, x_test=self.x_test[idx], y_test=self.y_test[idx])
        return out


def stratified_indices(labels: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` indices into ``labels`` with the classes as balanced as possible, seeded, sorted.

    Each class gets ``n // k`` items, and the first ``n % k`` classes one more.
    """
    if n < 1:
        raise ValueError(f"a subset needs at least 1 image, got {n}")
    labels = labels.cpu()
    classes = torch.unique(labels)
    g = torch.Generator().manual_seed(seed)
    per_class = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    picks = []
    for c, k in zip(classes.tolist(), per_class):
        members = torch.nonzero(labels == c).flatten()
        if k > len(members):
            raise ValueError(f"class {c} has only {len(members)} images, cannot take {k}")
        picks.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.sort(torch.cat(picks)).values


def normalize(images: np.ndarray | Tensor) -> Tensor:
    """uint8 images ``[N, 3, 32, 32]`` -> float32 normalized with MEAN/STD."""
    x = torch.as_tensor(images).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(x: Tensor, generator: torch.Generator | None = None, padding: int = 4) -> Tensor:
    """Random crop (zero padding) and horizontal flip of a normalized batch, on its device.

    Batched equivalent of torchvision's ``RandomCrop(32, padding=4)`` and
    ``RandomHorizontalFlip()`` applied per image before ``ToTensor`` and
    ``Normalize``: padded pixels are black, i.e. ``-MEAN/STD`` after
    normalization. ``x``: ``[B, C, H, W]``; returns a new tensor of that shape.
    ``generator`` must live on ``x.device``.
    """
    b, c, h, w = x.shape
    fill = (-torch.tensor(MEAN) / torch.tensor(STD)).to(x).view(1, c, 1, 1)
    padded = fill.expand(b, c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, :, padding:padding + h, padding:padding + w] = x
    off = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=x.device)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    rows = (off[0].view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, w)
    cols = torch.where(flip.view(b, 1), w - 1 - cols, cols)  # flip = read columns backwards
    cols = (off[1].view(b, 1) + cols).view(b, 1, 1, w)
    return padded[torch.arange(b, device=x.device).view(b, 1, 1, 1), torch.arange(c, device=x.device).view(1, c, 1, 1), rows, cols]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$PAPERLIB_DATA``, else ``./data``."""
    return Path(root if root is not None else os.environ.get("PAPERLIB_DATA", "data")).expanduser()


def _missing_message(root: Path, why: str) -> str:
    return (
        f"CIFAR-10 was not found under {root} ({why}). Provide it in one of three ways: "
        "(1) let torchvision download it (load_cifar10(download=True) on a machine with network access); "
        f"(2) put the python release folder 'cifar-10-batches-py' in {root}; "
        f"(3) put an image-folder tree train/<class>/*.jpg, test/<class>/*.jpg (or a .tar.gz of it, "
        "e.g. cifar10-jpeg.tar.gz) there. Choose the root with root=... or the PAPERLIB_DATA environment variable."
    )


def load_cifar10(
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    train_subset: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> CIFAR10Data:
    """Load CIFAR-10 as normalized tensors.

    Args:
        root: data root (see module docstring); a folder, or a ``.tar.gz`` of
            an image-folder tree.
        download: try torchvision's download when nothing is found.
        train_subset: keep a stratified, seeded subset of this many training images.
        seed: seed of the subset.
        device: where the tensors live (keep them on the training device).

    Raises:
        DataNotFoundError: no data under ``root`` and no download possible.
    """
    root = data_root(root)
    images = _read_any(root)
    if images is None:
        if not download:
            raise DataNotFoundError(_missing_message(root, "and download=False"))
        images = _download(root)
    (xtr, ytr), (xte, yte), source = images
    data = CIFAR10Data(normalize(xtr), torch.as_tensor(ytr, dtype=torch.long),
                       normalize(xte), torch.as_tensor(yte, dtype=torch.long), source)
    return data.subset(train=train_subset, seed=seed).to(device)


Split = tuple[np.ndarray, np.ndarray]
Images = tuple[Split, Split, str]  # train, test, source label


def _read_any(root: Path) -> Images | None:
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _cached(root, _read_tar)
    if (root / "cifar-10-batches-py").is_dir():
        return read_batches_py(root / "cifar-10-batches-py")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _cached(root, read_image_folder)
    return None


def read_batches_py(folder: Path) -> Images:
    """Read the python release: ``data_batch_1..5`` and ``test_batch`` (uint8 ``[N, 3, 32, 32]``, labels)."""
    def load(names: list[str]) -> Split:
        xs, ys = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DataNotFoundError(f"{path} is missing: a cifar-10-batches-py folder needs data_batch_1..5 and test_batch")
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry["labels"], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)
    return load([f"data_batch_{i}" for i in range(1, 6)]), load(["test_batch"]), "CIFAR-10"


def _decode(raw: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (32, 32, 3):
        raise ValueError(f"expected 32x32 RGB images, got shape {arr.shape}")
    return arr.transpose(2, 0, 1)


def _collect(items: list[tuple[str, str, str, bytes | Path]]) -> Images:
    """(split, class, file name, raw bytes or path) -> arrays sorted by class and file name.

    The source label is "CIFAR-10 (JPEG copy)" when any image is a JPEG.
    """
    splits = []
    for split in ("train", "test"):
        rows = sorted((CLASSES.index(c), name, raw) for s, c, name, raw in items if s == split)
        if not rows:
            raise DataNotFoundError(f"no {split} images found in the image-folder tree")
        xs = np.stack([_decode(raw.read_bytes() if isinstance(raw, Path) else raw) for _, _, raw in rows])
        splits.append((xs, np.array([r[0] for r in rows], dtype=np.int64)))
    jpeg = any(Path(name).suffix.lower() in (".jpg", ".jpeg") for _, _, name, _ in items)
    return splits[0], splits[1], "CIFAR-10 (JPEG copy)" if jpeg else "CIFAR-10 (image folder)"


def read_image_folder(root: Path) -> Images:
    """Decode ``root/{train,test}/<class>/*`` (class folders named as :data:`CLASSES`)."""
    items = []
    for split in ("train", "test"):
        for cls_dir in sorted((root / split).iterdir()):
            if not cls_dir.is_dir():
                continue
            if cls_dir.name not in CLASSES:
                raise ValueError(f"unknown class folder {cls_dir}; expected one of {', '.join(CLASSES)}")
            items += [(split, cls_dir.name, p.name, p) for p in cls_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    return _collect(items)


def _read_tar(archive: Path) -> Images:
    """Decode an image-folder tree straight from a tar archive (any leading folder)."""
    items = []
    with tarfile.open(archive) as tar:
        for member in tar:
            path = Path(member.name)
            if not member.isfile() or len(path.parts) < 3 or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            split, cls, name = path.parts[-3:]
            if split in ("train", "test") and cls in CLASSES:
                items.append((split, cls, name, tar.extractfile(member).read()))
    return _collect(items)


def cache_dir() -> Path:
    """Where decoded image folders are cached: ``$PAPERLIB_CACHE``, else ``~/.cache/paperlib``."""
    return Path(os.environ.get("PAPERLIB_CACHE", Path.home() / ".cache" / "paperlib")).expanduser()


def _cached(source: Path, reader) -> Images:
    """Decode ``source`` once; cache the uint8 arrays, keyed by path, size and modification time.

    The cache is written to a temporary file and renamed, so a half-written
    file is never read; an unreadable one is decoded again.
    """
    st = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|v1".encode()).hexdigest()[:16]
    path = cache_dir() / f"cifar10-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return (z["xtr"], z["ytr"]), (z["xte"], z["yte"]), str(z["source"])
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable cache: decode again and overwrite it
    (xtr, ytr), (xte, yte), label = reader(source)
    write_atomic(path, lambda f: np.savez(f, xtr=xtr, ytr=ytr, xte=xte, yte=yte, source=np.array(label)))
    return (xtr, ytr), (xte, yte), label


def _download(root: Path) -> Images:
    try:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # no network, DNS failure, HTTP error, disk full ...
        raise DataNotFoundError(_missing_message(root, f"and the download failed: {exc}")) from exc
    return read_batches_py(root / "cifar-10-batches-py")
