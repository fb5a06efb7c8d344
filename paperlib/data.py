"""CIFAR-10 as tensors, from three sources, with batched on-device augmentation (docs/protocol.md §6).

Sources, tried in this order under the data root:

1. ``<root>/cifar-10-batches-py``: the python release (what torchvision downloads);
2. an image-folder tree ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``
   (like ``cifar10-jpeg.tar.gz``; ``root`` may also be such a ``.tar.gz``
   itself, or a folder holding exactly one such archive), decoded once and
   cached as uint8 arrays (one process decodes, others wait for its cache);
3. torchvision's ``CIFAR10(root, download=True)`` when ``download=True`` and
   the network allows; it writes source 1.

The root is the ``root`` argument, else ``$PAPERLIB_DATA``, else ``./data``.

Identity by content (docs/protocol.md §12): every loaded data set carries a
``digest``, a sha256 over its uint8 images and int64 labels (see
:func:`images_digest`), so two data sets with the same label but other pixels
(the tiny generated test data and the real CIFAR-10) never share a cache key.
The digest is computed once per content and cached: in the decoded-image
cache for an image folder or archive, in a small ``.digest`` file for the python release.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import tarfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import guards
from .atomic import write_atomic

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
#: Per-channel normalization (docs/protocol.md §6).
MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
STD: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


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
    """human label of the data set, for captions: CIFAR-10, CIFAR-10 (JPEG copy) or CIFAR-10 (image folder)"""
    digest: str | None = None
    """content identity: :func:`images_digest` of the full data set (16 hex; a subset keeps it); None = unknown
    (hand-built data, see :meth:`content_digest`)"""

    def describe(self) -> str:
        """The data set and its size, for captions: "CIFAR-10 (JPEG copy), 50000 train / 10000 test images"."""
        return f"{self.source}, {len(self.y_train)} train / {len(self.y_test)} test images"

    def content_digest(self) -> str:
        """:attr:`digest`, else (hand-built data) a sha256 (16 hex) over the float32 tensors and int64 labels."""
        if self.digest is not None:
            return self.digest
        h = hashlib.sha256(b"paperlib-tensors-v1")
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            a = np.ascontiguousarray(t.detach().cpu().numpy())
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
        return h.hexdigest()[:16]

    def to(self, device: torch.device | str) -> CIFAR10Data:
        """The same data on ``device``."""
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> CIFAR10Data:
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
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


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
    found = _read_any(root)
    if found is None:
        if not download:
            raise DataNotFoundError(_missing_message(root, "and download=False"))
        found = _download(root)
    ((xtr, ytr), (xte, yte), source), digest = found
    data = CIFAR10Data(
        normalize(xtr),
        torch.as_tensor(ytr, dtype=torch.long),
        normalize(xte),
        torch.as_tensor(yte, dtype=torch.long),
        source,
        digest,
    )
    return data.subset(train=train_subset, seed=seed).to(device)


Split = tuple[np.ndarray, np.ndarray]
Images = tuple[Split, Split, str]  # train, test, source label

#: Version of the content keys of the decoded-image cache; bump when what they cover changes.
_CACHE_KEY_VERSION = "v2"


def images_digest(images: Images) -> str:
    """Content identity of a data set: sha256 (first 16 hex digits) over its arrays (docs/protocol.md §12).

    Hashes a version tag, then for train images, train labels, test images and
    test labels in turn their shape and their bytes (images uint8
    ``[N, 3, 32, 32]``, labels little-endian int64), in the order the reader
    returns them. The source label is not hashed: the same pixels in the same
    order have one digest whichever way they were stored.
    """
    (xtr, ytr), (xte, yte), _ = images
    h = hashlib.sha256(b"paperlib-cifar10-digest-v1")
    for arr, dtype in ((xtr, np.uint8), (ytr, "<i8"), (xte, np.uint8), (yte, "<i8")):
        a = np.ascontiguousarray(arr, dtype=dtype)
        h.update(str(a.shape).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def _read_any(root: Path) -> tuple[Images, str] | None:
    """The images under ``root`` and their digest; None when ``root`` holds none of the three layouts."""
    guards.image_folder(root)
    if root.is_file() and root.name.endswith(ARCHIVE_SUFFIXES):
        return _cached(_archive_key(root), root, _read_tar)
    if (root / "cifar-10-batches-py").is_dir():
        return _batches_with_digest(root / "cifar-10-batches-py")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _cached(_folder_key(root), root, read_image_folder)
    archives = sorted(p for p in root.glob("*") if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES))
    if len(archives) > 1:
        raise DataNotFoundError(
            f"{root} holds {len(archives)} archives ({', '.join(p.name for p in archives)}); "
            "set the data root to the one to use (root=... or PAPERLIB_DATA=<file>)"
        )
    if archives:
        return _cached(_archive_key(archives[0]), archives[0], _read_tar)
    return None


def read_batches_py(folder: Path) -> Images:
    """Read the python release: ``data_batch_1..5`` and ``test_batch`` (uint8 ``[N, 3, 32, 32]``, labels)."""

    def load(names: list[str]) -> Split:
        xs, ys = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DataNotFoundError(
                    f"{path} is missing: a cifar-10-batches-py folder needs data_batch_1..5 and test_batch"
                )
            try:
                with open(path, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(entry["labels"], dtype=np.int64))
            except Exception as exc:  # truncated, not a pickle, wrong content
                raise ValueError(
                    f"{path} is not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc}); "
                    "replace it with the file from the python release cifar-10-python.tar.gz"
                ) from exc
        return np.concatenate(xs), np.concatenate(ys)

    return load([f"data_batch_{i}" for i in range(1, 6)]), load(["test_batch"]), "CIFAR-10"


def _decode(raw: bytes, where: str) -> np.ndarray:
    """One image file's bytes -> uint8 ``[3, 32, 32]``; ``where`` names the file in errors."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # PIL raises several types for truncated or foreign files
        raise ValueError(
            f"{where} is not a readable image ({type(exc).__name__}: {exc}); "
            "an image-folder tree must hold only 32x32 RGB images in its class folders"
        ) from exc
    if arr.shape != (32, 32, 3):
        raise ValueError(f"{where} is {arr.shape[1]}x{arr.shape[0]} pixels; CIFAR-10 images must be 32x32 RGB")
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
        xs = np.stack(
            [
                _decode(raw.read_bytes(), str(raw))
                if isinstance(raw, Path)
                else _decode(raw, f"{split}/{CLASSES[c]}/{name} in the archive")
                for c, name, raw in rows
            ]
        )
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
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                path = Path(member.name)
                if not member.isfile() or len(path.parts) < 3 or path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                split, cls, name = path.parts[-3:]
                if split in ("train", "test") and cls in CLASSES:
                    items.append((split, cls, name, tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:  # not a tar, truncated, bad gzip stream
        raise ValueError(
            f"{archive} is not a readable tar archive ({type(exc).__name__}: {exc}); "
            "give a .tar.gz of an image-folder tree train/<class>/*, test/<class>/*"
        ) from exc
    return _collect(items)


def cache_dir() -> Path:
    """Where decoded image folders are cached: ``$PAPERLIB_CACHE``, else ``~/.cache/paperlib``."""
    return Path(os.environ.get("PAPERLIB_CACHE", Path.home() / ".cache" / "paperlib")).expanduser()


def _stat_line(path: Path, name: str) -> str:
    st = path.stat()
    return f"{name}|{st.st_size}|{st.st_mtime_ns}"


def _folder_key(root: Path) -> str:
    """Content key of an image-folder tree: its path and every file's relative name, size and mtime_ns.

    Any file under ``train/`` or ``test/`` that is added, removed, renamed or
    rewritten changes the key (an os.scandir walk: no file is read).
    """
    lines = [f"folder|{root.resolve()}|{_CACHE_KEY_VERSION}"]

    def walk(folder: Path, rel: str) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.is_dir():
                walk(Path(e.path), f"{rel}/{e.name}")
            else:
                st = e.stat()
                lines.append(f"{rel}/{e.name}|{st.st_size}|{st.st_mtime_ns}")

    for split in ("train", "test"):
        walk(root / split, split)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _archive_key(archive: Path) -> str:
    """Content key of an archive: its path, size, mtime_ns and a sha256 of its bytes."""
    h = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    text = f"archive|{archive.resolve()}|{_stat_line(archive, '')}|{h.hexdigest()}|{_CACHE_KEY_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cached(key: str, source: Path, reader) -> tuple[Images, str]:
    """Decode ``source`` once; cache the uint8 arrays and their digest under its content ``key``.

    The cache is written to a temporary file and renamed, so a half-written
    file is never read; an unreadable one is decoded again.
    """
    path = cache_dir() / f"cifar10-{key}.npz"
    guards.decoded_cache(path)
    found = _read_npz(path)
    if found is not None:
        return found
    with _exclusive(path.with_suffix(".lock")):  # a notebook and its Dask workers: one decodes, the others wait
        found = _read_npz(path)
        if found is not None:
            return found
        return _decode_and_cache(path, source, reader)


def _read_npz(path: Path) -> tuple[Images, str] | None:
    """The cached images and digest in ``path``; None when missing or unreadable (then decoded again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return ((z["xtr"], z["ytr"]), (z["xte"], z["yte"]), str(z["source"])), str(z["digest"])
    except (OSError, ValueError, KeyError, EOFError):
        return None


@contextlib.contextmanager
def _exclusive(lock: Path):
    """Hold an exclusive lock on the file ``lock`` (POSIX ``flock``); no lock without ``fcntl`` or a writable folder."""
    try:
        import fcntl

        f = open(lock, "a")
    except (ImportError, OSError):
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _decode_and_cache(path: Path, source: Path, reader) -> tuple[Images, str]:
    images = reader(source)
    (xtr, ytr), (xte, yte), label = images
    digest = images_digest(images)
    try:
        write_atomic(
            path,
            lambda f: np.savez(f, xtr=xtr, ytr=ytr, xte=xte, yte=yte, source=np.array(label), digest=np.array(digest)),
        )
    except OSError as exc:  # read-only or full disk: go on without the cache
        warnings.warn(
            f"could not cache the decoded images in {path} ({exc}); they are decoded again on every "
            "load (set PAPERLIB_CACHE to a writable folder)",
            stacklevel=3,
        )
    return images, digest


def _batches_with_digest(folder: Path) -> tuple[Images, str]:
    """The python release and its digest; the digest alone is cached, keyed by every batch file's size and mtime_ns."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    lines = [f"batches|{folder.resolve()}|{_CACHE_KEY_VERSION}"]
    for name in names:  # stat before reading: a file rewritten meanwhile gets a new key next time
        try:
            lines.append(_stat_line(folder / name, name))
        except OSError:
            lines.append(f"{name}|missing")  # read_batches_py says what is wrong
    images = read_batches_py(folder)
    text = "|".join(lines)
    path = cache_dir() / f"cifar10-{hashlib.sha256(text.encode()).hexdigest()[:16]}.digest"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        digest = path.read_text().strip()
        if len(digest) == 16 and all(c in "0123456789abcdef" for c in digest):
            return images, digest
    digest = images_digest(images)
    with contextlib.suppress(OSError):  # read-only cache: the digest is computed again next time
        write_atomic(path, lambda f: f.write(digest.encode()))
    return images, digest


def _download(root: Path) -> tuple[Images, str]:
    try:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # no network, DNS failure, HTTP error, disk full ...
        raise DataNotFoundError(_missing_message(root, f"and the download failed: {exc}")) from exc
    return _batches_with_digest(root / "cifar-10-batches-py")
