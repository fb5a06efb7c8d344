"""Checks of bad input, and repairs of damaged cache files, that never change a number (docs/protocol.md §12).

Each function here either returns None, raises one error whose sentence says
what is wrong and what would be right, or sets a damaged cache file aside so
that it is rebuilt from its source; none reads or advances a random number
generator, changes a tensor or a model, or returns anything
(``tests/test_guards.py`` checks this contract). So a run that completes
computes the same numbers with or without them, and the code fingerprint
(:mod:`paperlib.runs.fingerprint`) leaves out the statements of the modules it
hashes that only call them (``guards.<name>(...)`` and ``from . import
guards``): a new check of bad input does not make every cached network stale.

They are called where the work starts, before anything expensive:
:func:`sweep_inputs` by :func:`paperlib.evaluate.evaluate_pairs` (and so
``noise_sweep``, ``layer_sensitivity`` and :func:`paperlib.run`),
:func:`image_folder` and :func:`decoded_cache` by
:func:`paperlib.load_cifar10`, :func:`seeds` by the paper layer's spec builders.
"""
from __future__ import annotations

import os
import time
import uuid
import warnings
import zipfile
from pathlib import Path

import numpy as np
from torch import Tensor, nn

#: Members a decoded-image cache file (``cifar10-<key>.npz``) holds.
NPZ_MEMBERS: frozenset[str] = frozenset({"xtr.npy", "ytr.npy", "xte.npy", "yte.npy", "source.npy", "digest.npy"})
#: The input the paper's architectures take: CIFAR-10 images, channels x height x width.
PAPER_INPUT: tuple[int, int, int] = (3, 32, 32)


def _shape(t: object) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]" if hasattr(t, "shape") else type(t).__name__


def sweep_inputs(model: nn.Module, x: Tensor, y: Tensor) -> None:
    """Raise ``ValueError`` unless ``y`` holds one label per input of ``x`` (``[N]`` labels for ``[N, ...]``) and,
    for a model with convolutions, ``x`` is a batch of images ``[N, C, H, W]`` whose channels its first convolution
    takes; the paper's architectures (:func:`paperlib.build_model`) take CIFAR-10's ``[N, 3, 32, 32]`` exactly
    (LeNet-5's first linear layer is sized for 32 x 32). Any other model takes what it takes. Nothing is run.
    """
    from .models import VGG11, LeNet5, ResNet18

    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ValueError(f"x and y must be tensors (images [N, 3, 32, 32] and labels [N]), got {type(x).__name__} "
                         f"and {type(y).__name__}")
    if y.dim() != 1 or len(x) != len(y):
        raise ValueError(f"x and y must hold one label per image: x is {_shape(x)} and y is {_shape(y)}; give y as "
                         f"[{len(x)}] labels (or cut x to the labels you have)")
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and x.dim() != 4:
        raise ValueError(f"x must be a batch of images [N, C, H, W] (CIFAR-10: [N, 3, 32, 32]), got {_shape(x)}")
    if isinstance(model, (LeNet5, VGG11, ResNet18)) and tuple(x.shape[1:]) != PAPER_INPUT:
        raise ValueError(f"images are {_shape(x)} but {type(model).__name__} takes CIFAR-10 images "
                         f"[N, {', '.join(map(str, PAPER_INPUT))}]; resize or pad them to 32 x 32 RGB")
    if conv is not None and x.shape[1] != conv.in_channels:
        raise ValueError(f"images have {x.shape[1]} channel(s) ({_shape(x)}) but the model's first convolution takes "
                         f"{conv.in_channels}; give images [N, {conv.in_channels}, H, W]")


def image_folder(root: Path) -> None:
    """Raise :class:`paperlib.data.DataNotFoundError` when ``root`` holds one of ``train/`` and ``test/`` but not the
    other (and no ``cifar-10-batches-py``): an image-folder tree needs both."""
    from .data import DataNotFoundError

    if (root / "cifar-10-batches-py").is_dir() or not root.is_dir():
        return
    if any(p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar")) for p in root.iterdir()):
        return  # the loader takes the archive beside it
    have = {split: (root / split).is_dir() for split in ("train", "test")}
    if have["train"] != have["test"]:
        found, lacking = ("train", "test") if have["train"] else ("test", "train")
        raise DataNotFoundError(
            f"{root} holds {found}/ but no {lacking}/: an image-folder tree needs both train/<class>/* and "
            f"test/<class>/* (or give the .tar.gz or the cifar-10-batches-py folder instead)"
        )


def decoded_cache(path: Path) -> None:
    """Set aside the decoded-image cache file ``path`` (``cifar10-<key>.npz``) when it is damaged (truncated, not a
    zip file, a member missing or unreadable), with a warning, so that the images are decoded again and the cache
    rebuilt; it goes to ``corrupt/`` beside it (never deleted). A missing or sound file is left as it is."""
    if not path.is_file():
        return
    try:
        with zipfile.ZipFile(path) as z:
            missing = NPZ_MEMBERS - set(z.namelist())
            if missing:
                raise ValueError(f"lacks {', '.join(sorted(missing))}")
        with np.load(path) as z:  # reads every array: a damaged member raises here, not in the loader
            for name in NPZ_MEMBERS:
                z[name.removesuffix(".npy")]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        dest = path.parent / "corrupt" / f"{path.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, dest)
        except FileNotFoundError:
            return  # another process set it aside first
        except OSError:
            return  # a read-only cache: the loader decodes the images again without it
        warnings.warn(f"the decoded-image cache {path} was damaged ({type(exc).__name__}: {exc}); moved it to {dest} "
                      f"and decoding the images again", stacklevel=3)


def seeds(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a number of networks per variant: 0 (as many as the profile says)
    or a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"seeds must be 0 (as many networks as the profile says) or a positive number of networks "
                         f"per variant, got {value!r}")
