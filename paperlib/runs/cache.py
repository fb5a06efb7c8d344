"""The content-addressed result cache: nothing computed twice, nothing lost, nothing stale (docs/protocol.md §12).

This module reads and writes the cache; :func:`paperlib.runs.experiment.run`
decides what to train and evaluate, and :class:`~paperlib.runs.spec.RunSpec`
makes the keys. Layout under the results directory (``results_dir``, else
``$PAPERLIB_RESULTS``, else ``./results``)::

    runs/<train key>/record.json          spec, history, clean accuracy, provenance, code fingerprint
    runs/<train key>/weights.pt           state dict (see "Weights" below)
    runs/<train key>/curve-<eval key>-<fingerprint id>.csv
                                          sigma, repeat, accuracy, all made by one code fingerprint
    partial/<train key>/checkpoint.pt     a run in progress (resumed after an interruption) ...
    partial/<train key>/fingerprint.json  ... and the fingerprint of the code that writes it
    stale/<train key>-<time>/             entries made by other code, moved aside (never deleted)
    stale/partial-<train key>-<time>/     checkpoints made by other code, moved aside
    corrupt/<train key>-<time>/           unreadable entries, moved aside (never deleted)
    corrupt/<train key>-weights.pt-<time> an unreadable weights file, moved aside (the entry keeps its numbers)

The train key hashes only the fields that determine training, so adding
sigma points or repeats evaluates the cached weights and never retrains. An
entry is written into a temporary folder and renamed into place, so it appears
whole or not at all; when two processes finish the same spec, the first rename
wins and the second process uses its entry. Curve files are rewritten
atomically under a file lock.

Code fingerprint (docs/protocol.md §12): every record stores
:func:`paperlib.runs.fingerprint.code_fingerprint` (a hash per module that makes
numbers, their combined ``code`` hash, the versions of torch, torchvision,
brevitas and numpy). An entry made by other code (``code`` or a package
version differs; an entry from before fingerprints counts as other code) is
never reused silently: by default it is moved to ``stale/`` with a
:class:`CacheWarning` naming the changed modules, and the run is trained and
evaluated afresh. ``run(..., reuse_stale=True)`` (or ``PAPERLIB_REUSE_STALE=1``)
reuses it with such a warning, for a change known to leave the numbers as they
were; its curve points are then taken as they are when they cover the grid,
else the whole grid is evaluated into the current code's curve file (points
of two fingerprints are never merged). A partial checkpoint of other code is
moved aside, not resumed.

Keys made before floats were canonical (docs/protocol.md §12): a train key
hashes its floats rounded to 12 significant digits (:func:`paperlib.runs.spec.canonical`),
and curve points are read with their sigmas rounded the same way. An entry
written under a key of the unrounded floats is renamed to its canonical key by
:func:`migrate_keys` (run by :func:`paperlib.run` before it would train), with
its record saying ``migrated_from``; nothing is retrained.

Weights: kept up to ``weights_limit_mb`` (:data:`DEFAULT_WEIGHTS_LIMIT_MB`, fp32);
above it, networks trained without noise are kept anyway and noisy-trained
ones are not (:func:`keeps_weights`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..atomic import write_atomic
from ..models import build_model
from ..training import remove_checkpoint
from .fingerprint import changed_modules, same_code
from .spec import CACHE_VERSION, RunSpec, _hash, canonical

#: Weights above this size (MiB, fp32) are not kept (VGG-11: 107 MiB).
DEFAULT_WEIGHTS_LIMIT_MB = 64.0
#: Keys every record holds; a record without one of them is unreadable.
_RECORD_KEYS = {"cache_version", "key", "spec", "accuracy", "diverged", "error", "history", "weights", "provenance"}


class CacheWarning(UserWarning):
    """A cache entry was unreadable or made by other code, or weights had to be retrained."""


class ResultsNotWritableError(OSError):
    """The results folder cannot be created or written."""


# --- the results folder ------------------------------------------------------------------------------------------

def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """The results directory: ``results_dir``, else ``$PAPERLIB_RESULTS``, else ``./results``."""
    return Path(results_dir if results_dir is not None else os.environ.get("PAPERLIB_RESULTS", "results")).expanduser()


def check_writable(root: Path) -> Path:
    """``root``, created when missing; one clear error when it cannot be written (nothing left behind)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".write-test-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ResultsNotWritableError(
            f"results folder {root} is not writable ({exc.strerror or exc}); "
            f"pass results_dir=... or set PAPERLIB_RESULTS"
        ) from None
    return root


def reuse_stale_default(reuse_stale: bool | None = None) -> bool:
    """``reuse_stale``, or when None the environment variable ``PAPERLIB_REUSE_STALE`` (1/true/yes = reuse)."""
    if reuse_stale is not None:
        return bool(reuse_stale)
    return os.environ.get("PAPERLIB_REUSE_STALE", "").strip().lower() in ("1", "true", "yes", "on")


# --- stale and unreadable entries --------------------------------------------------------------------------------

def move_aside(root: Path, src: Path, folder: str, prefix: str = "") -> Path:
    """Move ``src`` to ``root/<folder>/<prefix><name>-<time>-<random>`` (never deleted); returns the destination."""
    dest = root / folder / f"{prefix}{src.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):  # another process moved it first
        os.rename(src, dest)
    return dest


def quarantine(root: Path, entry: Path, why: str) -> None:
    """Move an unreadable entry to ``corrupt/`` with a :class:`CacheWarning` saying ``why``."""
    dest = move_aside(root, entry, "corrupt")
    warnings.warn(
        f"cache entry {entry} was unreadable ({why}); moved to {dest} and recomputing", CacheWarning, stacklevel=3
    )


def fingerprint_id(fingerprint: dict | None) -> str | None:
    """16 hex over the code hash and the package versions; None for a record made before fingerprints."""
    if not fingerprint:
        return None
    return _hash({"code": fingerprint.get("code"), "packages": fingerprint.get("packages")})


def made_elsewhere(record: dict, fingerprint: dict, device: torch.device | None) -> bool:
    """Whether ``record`` is this code's result on another kind of device, trained with other package versions
    (e.g. on a GPU machine with its own torch, imported here): its code hash is this checkout's and the device
    type it was trained on (``cuda``, ``cpu``) is not ``device``'s. Such a result cannot be made again here (a
    retraining would be another device's result), so the cache keeps it, and captions name where it was trained
    and with which torch (docs/protocol.md §12)."""
    old = record.get("fingerprint") or {}
    trained_on = str((record.get("provenance") or {}).get("device") or "")
    return (device is not None and bool(trained_on) and old.get("code") == fingerprint["code"]
            and torch.device(trained_on).type != device.type)


def check_fingerprint(root: Path, entry: Path, record: dict, fingerprint: dict, reuse_stale: bool,
                      device: torch.device | None = None) -> dict | None:
    """``record`` when made by this code (or on another kind of device by this code, :func:`made_elsewhere`, or
    reused as asked); None after moving an entry of other code aside."""
    if same_code(record.get("fingerprint"), fingerprint) or made_elsewhere(record, fingerprint, device):
        return record
    changed = ", ".join(changed_modules(record.get("fingerprint"), fingerprint))
    rev = record["provenance"].get("revision")
    made = f"cache entry {entry.name} was made by other code (changed: {changed}; rev {rev})"
    if reuse_stale:
        warnings.warn(f"{made}; reusing it as asked (reuse_stale / PAPERLIB_REUSE_STALE=1)", CacheWarning, stacklevel=3)
        return record
    dest = move_aside(root, entry, "stale")
    warnings.warn(
        f"{made}; moved it to {dest} and computing it afresh (reuse_stale=True or PAPERLIB_REUSE_STALE=1 "
        f"reuses it when the change cannot change results)",
        CacheWarning,
        stacklevel=3,
    )
    return None


# --- records and entries -----------------------------------------------------------------------------------------

def read_record(root: Path, entry: Path) -> dict | None:
    """The entry's record, or None (missing; or unreadable: moved aside with a warning)."""
    if not entry.exists():
        return None
    try:
        record = json.loads((entry / "record.json").read_text())
        missing = _RECORD_KEYS - set(record)
        if missing:
            raise ValueError(f"record.json lacks {', '.join(sorted(missing))}")
        if record["weights"] and not (entry / "weights.pt").is_file():
            raise ValueError("weights.pt is missing")
        return record
    except (OSError, ValueError) as exc:
        quarantine(root, entry, str(exc))
        return None


def write_record(path: Path, record: dict) -> None:
    """Rewrite a record file atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(record, indent=1, default=float).encode()))


def write_entry(root: Path, entry: Path, record: dict, model: nn.Module | None) -> dict:
    """Write a new entry (``record`` and, when ``model`` is given, its weights) whole or not at all.

    Returns:
        The record of the entry now in place: ``record``, or, when another
        process finished the same spec first, that process's record.
    """
    key = entry.name
    tmp = root / "runs" / f".{key}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    if model is not None:
        torch.save(model.state_dict(), tmp / "weights.pt")
    (tmp / "record.json").write_text(json.dumps(record, indent=1, default=float))
    try:
        os.rename(tmp, entry)
    except OSError:  # another process finished this spec first: use its entry
        shutil.rmtree(tmp, ignore_errors=True)
        record = read_record(root, entry) or record
    return record


# --- weights -----------------------------------------------------------------------------------------------------

def weights_mb(model: nn.Module) -> float:
    """Size of ``model``'s parameters in MiB at fp32."""
    return sum(p.numel() for p in model.parameters()) * 4 / 2**20


def trained_without_noise(spec: RunSpec) -> bool:
    """Whether ``spec`` trains without noise (no fixed and no random training sigma)."""
    return spec.sigma_train == 0 and spec.sigma_theta == 0


def keeps_weights(spec: RunSpec, size_mb: float, diverged: bool, weights_limit_mb: float) -> bool:
    """Whether an entry keeps its weights: not diverged, and at most ``weights_limit_mb`` or trained without noise."""
    return not diverged and (size_mb <= weights_limit_mb or trained_without_noise(spec))


def load_weights(entry: Path | None, spec: RunSpec, device: torch.device) -> nn.Module | None:
    """The entry's network in eval mode on ``device``; None when it has no weights (unreadable ones: a warning)."""
    if entry is None or not (entry / "weights.pt").is_file():
        return None
    model = build_model(spec.arch, spec.bits, spec.scale)
    try:
        model.load_state_dict(torch.load(entry / "weights.pt", map_location="cpu", weights_only=True))
    except Exception as exc:  # truncated or foreign file
        why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'}"
        dest = set_weights_aside(entry, why)
        warnings.warn(
            f"weights {entry / 'weights.pt'} unreadable ({why}); "
            + (f"moved to {dest}; " if dest else "")
            + "the entry keeps its numbers, and the network is retrained from its seed (and its weights kept) "
            "when weights are needed",
            CacheWarning,
            stacklevel=3,
        )
        return None
    return model.to(device).eval()


def set_weights_aside(entry: Path, why: str) -> Path | None:
    """Move an entry's unreadable ``weights.pt`` to ``corrupt/`` and mark its record ``weights_lost`` (so that the
    record no longer promises weights and the next run that needs them retrains and keeps them); returns where the
    file went, None when it could not be moved (a read-only folder)."""
    root = entry.parent.parent
    try:
        dest = move_aside(root, entry / "weights.pt", "corrupt", prefix=f"{entry.name}-")
        record = json.loads((entry / "record.json").read_text())
        record.update(weights=False, weights_lost={"why": why, "moved_to": str(dest.relative_to(root))})
        write_record(entry / "record.json", record)
    except (OSError, ValueError):
        return None
    return dest


def save_weights(entry: Path, model: nn.Module) -> None:
    """Write ``model``'s weights into an existing entry atomically (write the record after it)."""
    write_atomic(entry / "weights.pt", lambda f: torch.save(model.state_dict(), f))


# --- curves ------------------------------------------------------------------------------------------------------

def curve_path(entry: Path, spec: RunSpec, fingerprint: dict | None) -> Path:
    """The curve file of ``spec``'s noise kind with points made by code ``fingerprint`` (None: before fingerprints)."""
    fid = fingerprint_id(fingerprint)
    return entry / (f"curve-{spec.eval_key()}.csv" if fid is None else f"curve-{spec.eval_key()}-{fid}.csv")


def empty_curve() -> pd.DataFrame:
    """A curve without points: columns sigma, repeat, accuracy."""
    return pd.DataFrame(
        {"sigma": pd.Series(dtype=float), "repeat": pd.Series(dtype=int), "accuracy": pd.Series(dtype=float)}
    )


def read_curve(path: Path) -> pd.DataFrame:
    """A cached curve; empty when missing or unreadable (with a warning)."""
    if not path.is_file():
        return empty_curve()
    try:
        curve = pd.read_csv(path)
        if list(curve.columns) != ["sigma", "repeat", "accuracy"] or curve.isna().any().any():
            raise ValueError("unexpected columns or missing values")
        curve["sigma"] = [canonical(s) for s in curve.sigma]  # points written before sigmas were canonical (§12)
        return curve
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        warnings.warn(
            f"noise curve {path} was unreadable ({exc}); re-evaluating its points", CacheWarning, stacklevel=3
        )
        return empty_curve()


def write_curve(path: Path, curve: pd.DataFrame) -> None:
    """Rewrite a curve file atomically (hold :func:`locked_if_writable` on the entry's curve lock)."""
    write_atomic(path, lambda f: f.write(curve.to_csv(index=False).encode()))


@contextlib.contextmanager
def locked_if_writable(path: Path) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (created when missing) for the block, yielding True; yields False,
    without a lock, when the lock file cannot be opened for writing (a read-only results folder, where cached
    results can still be read but nothing may be written)."""
    try:
        f = open(path, "a")
    except OSError:
        yield False
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- keys of the unrounded floats (before docs/protocol.md §12's canonical floats) -----------------------------

#: Results folder -> the modification time of its ``runs/`` when :func:`migrate_keys` last scanned it.
_SCANNED: dict[str, int] = {}


def canonical_key(record: dict) -> str | None:
    """The train key of the spec a record was trained for, from its stored training fields; None when they no
    longer make a spec (a field this code does not know)."""
    try:
        return RunSpec.from_dict(dict(record["spec"])).train_key()
    except (KeyError, TypeError, ValueError):
        return None


def migrate_keys(root: Path, *, force: bool = False) -> list[tuple[str, str]]:
    """Rename every entry of ``root/runs`` keyed by the unrounded floats of its spec (made before keys rounded
    them, docs/protocol.md §12) to its canonical key; returns the (old, new) pairs renamed. Scans once per process
    and state of the folder (an entry added or renamed since rescans) unless ``force``.

    Only an entry whose folder name is the key of its record's own training fields is renamed (anything else was
    keyed otherwise and is left alone); one whose canonical key exists already stays (with a
    :class:`CacheWarning`). Safe beside other processes: a rename that another process made first is skipped.
    """
    runs = root / "runs"
    renamed: list[tuple[str, str]] = []
    if not runs.is_dir():
        return renamed
    state = runs.stat().st_mtime_ns
    if not force and _SCANNED.get(str(runs.resolve())) == state:
        return renamed
    _SCANNED[str(runs.resolve())] = state
    for entry in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            record = json.loads((entry / "record.json").read_text())
            spec = dict(record["spec"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # read_record quarantines it when it is asked for
        key = canonical_key(record)
        if key is None or key == entry.name or _hash({"v": CACHE_VERSION, **spec}) != entry.name:
            continue
        target = runs / key
        if target.exists():
            warnings.warn(f"cache entry {entry.name} has the canonical key {key}, which is taken already; left as it "
                          f"is", CacheWarning, stacklevel=2)
            continue
        try:
            os.rename(entry, target)
        except OSError:  # another process renamed it first, or the folder is read-only
            continue
        record.update(key=key, spec=RunSpec.from_dict(spec).training_fields(), migrated_from=entry.name)
        write_record(target / "record.json", record)
        renamed.append((entry.name, key))
    return renamed


# --- partial checkpoints -----------------------------------------------------------------------------------------

def open_partial(root: Path, key: str, fingerprint: dict) -> Path:
    """The checkpoint path of run ``key`` in ``partial/<key>``, stamped with ``fingerprint``.

    A checkpoint made by other code is moved to ``stale/`` with a
    :class:`CacheWarning` (training starts from the beginning), never resumed.
    """
    partial = root / "partial" / key
    partial.mkdir(parents=True, exist_ok=True)
    ckpt, stamp = partial / "checkpoint.pt", partial / "fingerprint.json"
    if ckpt.exists():
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            old = None  # written before checkpoints carried a fingerprint
        if not same_code(old, fingerprint):
            dest = move_aside(root, partial, "stale", prefix="partial-")
            warnings.warn(
                f"the partial checkpoint of run {key} was made by other code (changed: "
                f"{', '.join(changed_modules(old, fingerprint))}); moved it to {dest} and training from "
                f"the start",
                CacheWarning,
                stacklevel=4,
            )
            partial.mkdir(parents=True, exist_ok=True)
    write_atomic(stamp, lambda f: f.write(json.dumps(fingerprint).encode()))
    return ckpt


def drop_partial(root: Path, key: str) -> None:
    """Remove ``partial/<key>`` after its entry is written (another process may still train into it: no rmtree)."""
    partial = root / "partial" / key
    for name in ("checkpoint.pt", "fingerprint.json"):
        remove_checkpoint(partial / name)  # and the temporary files of a write that was killed
    with contextlib.suppress(OSError):
        partial.rmdir()
