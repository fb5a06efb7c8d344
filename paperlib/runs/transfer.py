"""Carry result-cache entries between machines: train on a GPU server, render the figures on a laptop.

:func:`export_entries` packs chosen entries of a results folder (:mod:`paperlib.runs.cache`) into one archive;
:func:`import_entries` checks an archive whole and only then adds its entries to another results folder. The
paper layer (:mod:`paperlib.paper.transfer`) chooses the entries by notebook. Command line::

    python -m paperlib.runs.transfer export --results results --out results.tar.gz [--weights] KEY...
    python -m paperlib.runs.transfer import results.tar.gz --results results [--replace-other-code]

The archive is a tar file, gzip-compressed unless its name ends in ``.tar`` (``.tar.gz`` is the usual name; plain
``.tar`` saves the compression time when it holds mostly weights, which hardly compress). Its members::

    runs/<train key>/record.json          the entry's record
    runs/<train key>/curve-<...>.csv      every noise curve of the entry
    runs/<train key>/weights.pt           only when exported with weights=True (and the entry has them)
    manifest.json                         written last: what the archive holds, see below

``manifest.json``: ``format`` (:data:`FORMAT`), ``format_version`` (:data:`FORMAT_VERSION`), ``revision`` (the
paperlib revision that exported it, :func:`paperlib.runs.provenance.git_revision`), ``created_utc``, ``weights``,
and ``entries``: per entry ``key``, ``fingerprint`` (the record's code fingerprint; None for a record made before
fingerprints) and ``files``: per file ``path`` (relative to the entry folder), ``size`` (bytes) and ``sha256``.

An entry exported without its weights gets ``"weights": false`` and ``"weights_not_exported": true`` in its
archived record (else the cache would take the entry for a damaged one; ``RunResult.load_model`` then says why
there are none); every other file is archived byte for byte. The archive is written into a temporary
file and renamed into place, so a half-written archive never carries the final name.

Import reads the archive twice: first it checks everything (the manifest, that every member is listed and every
listed file is there, each file's size and sha256, that every path stays inside its entry folder) and writes
nothing when anything is wrong; then it adds the entries. Per entry: a key the results folder lacks is written
into a temporary folder under ``runs/`` and renamed into place (as :func:`paperlib.runs.cache.write_entry`); an
entry made by the same code (:func:`paperlib.runs.fingerprint.same_code`) is kept, and only gets the curve files
it lacks and the weights when it has none ("kept"); an entry made by other code is refused, unless
``replace_other_code=True``: then it is moved to ``stale/`` (:func:`paperlib.runs.cache.move_aside`) and the
archived entry takes its place.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

from ..atomic import FILE_MODE, write_atomic
from .cache import _RECORD_KEYS, ResultsNotWritableError, locked_if_writable, move_aside, results_root, write_record
from .fingerprint import same_code
from .provenance import git_revision
from .spec import RunSpec

#: The ``format`` of every manifest this module writes.
FORMAT = "paperlib-results"
#: Bumped when the archive layout or the manifest changes so that an older import cannot read it.
FORMAT_VERSION = 1
#: Name of the manifest member.
MANIFEST = "manifest.json"
#: A train key: 16 lowercase hex.
KEY_RE = re.compile(r"^[0-9a-f]{16}$")
#: The files of an entry that travel: the record, the noise curves, the weights.
FILE_RE = re.compile(r"^(record\.json|weights\.pt|curve-[A-Za-z0-9_.-]+\.csv)$")
#: Largest manifest read (bytes): a larger one is not a manifest this module wrote.
MANIFEST_LIMIT = 64 * 2**20
_CHUNK = 2**20


class ArchiveError(ValueError):
    """An archive that cannot be imported: damaged, truncated, not written by :func:`export_entries`."""


# --- reports -----------------------------------------------------------------------------------------------------

def _describe(item: str | RunSpec) -> str:
    """A requested key as it is; a spec by the fields that tell specs apart."""
    if isinstance(item, str):
        return f"key {item}"
    bits = "fp32" if item.bits is None else f"{item.bits}-bit" + ("" if item.scale is None else f" s={item.scale:g}")
    extra = [f"{k}={v}" for k, v in (("sigma_sampling", item.sigma_sampling), ("noise_kind", item.noise_kind))
             if v != "fixed" and v != "additive"]
    return (f"spec {item.arch} {bits} sigma_train={item.sigma_train:g} seed={item.seed} epochs={item.epochs}"
            + "".join(f" {e}" for e in extra))


def _size(n: float) -> str:
    """Bytes as ``1.2 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _listed(items: list[str], most: int = 5) -> str:
    """``a, b, c`` with at most ``most`` items, then ``and N more``."""
    head = ", ".join(items[:most])
    return head + (f" and {len(items) - most} more" if len(items) > most else "")


@dataclass
class ExportReport:
    """What :func:`export_entries` wrote; ``str()`` gives a short text."""

    archive: Path
    """the archive written"""
    entries: list[str] = field(default_factory=list)
    """train keys of the exported entries, in archive order"""
    files: int = 0
    """files exported (records, curves, weights)"""
    total_bytes: int = 0
    """their size before compression (bytes)"""
    archive_bytes: int = 0
    """size of the archive (bytes)"""
    weights: bool = False
    """whether weights were asked for"""
    weights_files: int = 0
    """weights files exported"""
    missing: list[str | RunSpec] = field(default_factory=list)
    """requested keys and specs that no entry of the results folder matches"""

    def __str__(self) -> str:
        lines = [f"exported {len(self.entries)} entries ({self.files} files, {_size(self.total_bytes)}; "
                 f"{'with' if self.weights else 'without'} weights"
                 + (f", {self.weights_files} weights files" if self.weights else "")
                 + f") to {self.archive} ({_size(self.archive_bytes)})"]
        if self.missing:
            lines.append(f"not in the results folder ({len(self.missing)}): "
                         + _listed([_describe(m) for m in self.missing]))
        return "\n".join(lines)


@dataclass
class ImportReport:
    """What :func:`import_entries` did, entry by entry; ``str()`` gives a short text."""

    archive: Path
    """the archive read"""
    results_dir: Path
    """the results folder written"""
    added: list[str] = field(default_factory=list)
    """keys of the entries added (the results folder lacked them)"""
    replaced: dict[str, Path] = field(default_factory=dict)
    """key -> where the entry of other code went (``stale/``): entries replaced by the archive's (replace_other_code)"""
    kept: dict[str, list[str]] = field(default_factory=dict)
    """key -> files added to it: entries of the same code kept, completed with curves and weights they lacked"""
    refused: dict[str, str] = field(default_factory=dict)
    """key -> why: entries not imported (made by other code, unless replace_other_code)"""

    def __str__(self) -> str:
        completed = {k: v for k, v in self.kept.items() if v}
        lines = [f"imported {self.archive} into {self.results_dir}: {len(self.added)} added, "
                 f"{len(self.replaced)} replaced, {len(self.kept)} kept ({len(completed)} completed), "
                 f"{len(self.refused)} refused"]
        for key, dest in self.replaced.items():
            lines.append(f"  replaced {key}: the entry of other code is now {dest}")
        for key, files in completed.items():
            lines.append(f"  completed {key}: added {', '.join(files)}")
        for key, why in self.refused.items():
            lines.append(f"  refused {key}: {why}")
        if self.refused:
            lines.append("  (--replace-other-code / replace_other_code=True moves those entries to stale/ and "
                         "imports the archive's)")
        return "\n".join(lines)


# --- export ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Indexed:
    """One readable entry of a results folder."""

    key: str
    """its train key (folder name)"""
    spec: dict
    """``record["spec"]`` (the training fields as written at training time), read back through RunSpec"""


def index_entries(results_dir: str | os.PathLike | None) -> list[_Indexed]:
    """Every entry of ``<results_dir>/runs`` whose record can be read (unreadable ones are left out, untouched)."""
    runs = results_root(results_dir) / "runs"
    out = []
    for entry in sorted(runs.iterdir()) if runs.is_dir() else []:
        if entry.name.startswith(".") or not KEY_RE.match(entry.name):
            continue
        try:
            record = json.loads((entry / "record.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("spec"), dict):
            out.append(_Indexed(entry.name, _read_back(record["spec"])))
    return out


def _read_back(recorded: dict) -> dict:
    """A record's training fields as this code makes them (a record written before a change of how fields are
    normalized, e.g. floats made canonical, still matches); as they are when they no longer make a spec."""
    try:
        return RunSpec.from_dict(dict(recorded)).training_fields()
    except (TypeError, ValueError):
        return dict(recorded)


def _same_training(spec: RunSpec, want: dict, have: dict) -> bool:
    """``want`` (``spec.training_fields()``) against read-back fields ``have``, leaving out what ``spec`` leaves
    None of ``dataset`` and ``data_digest``."""
    drop = {name for name in ("dataset", "data_digest") if getattr(spec, name) is None}
    return {k: v for k, v in want.items() if k not in drop} == {k: v for k, v in have.items() if k not in drop}


def spec_matches(spec: RunSpec, recorded: dict) -> bool:
    """Whether a record's ``spec`` (training fields at training time) is ``spec``'s training.

    ``dataset`` and ``data_digest`` are compared only when ``spec`` sets them: a spec built by a profile leaves them
    None (run() resolves them from the data), so it matches its entry on any data set. The recorded fields are
    read back through :class:`RunSpec` first, so a record written before a change of how fields are normalized
    (e.g. floats made canonical) still matches; fields this code does not know are compared as they are.
    """
    return _same_training(spec, spec.training_fields(), _read_back(recorded))


def select_entries(results_dir: str | os.PathLike | None,
                   keys_or_specs: Iterable[str | RunSpec]) -> tuple[list[str], list[str | RunSpec]]:
    """The train keys of the entries that ``keys_or_specs`` name, and the requested items that none matches.

    A key (16 hex) names the entry ``runs/<key>``; a :class:`RunSpec` every entry whose record's spec
    :func:`spec_matches` (one per data set it ran on). The folder's records are read once.

    Raises:
        ValueError: an item that is neither a spec nor a 16-hex key.
    """
    root = results_root(results_dir)
    items = list(keys_or_specs)
    for item in items:
        if not isinstance(item, RunSpec) and not (isinstance(item, str) and KEY_RE.match(item)):
            raise ValueError(f"{item!r} is neither a train key (16 hex digits, the folder name under "
                             f"{root / 'runs'}) nor a RunSpec")
    index = index_entries(root) if any(isinstance(i, RunSpec) for i in items) else []
    keys: list[str] = []
    missing: list[str | RunSpec] = []
    for item in items:
        if isinstance(item, RunSpec):
            want = item.training_fields()
            found = [e.key for e in index if _same_training(item, want, e.spec)]
        else:
            found = [item] if (root / "runs" / item / "record.json").is_file() else []
        if not found:
            missing.append(item)
        keys += [k for k in found if k not in keys]
    return keys, missing


class _Hashing(io.RawIOBase):
    """A read-only file that hashes what is read through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.sha.update(data)
        self.n += len(data)
        return data


def _member(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    """The header of a regular file member (mode 0o644)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info


def _add_entry(tar: tarfile.TarFile, entry: Path, weights: bool) -> dict:
    """Add one entry's files to ``tar``; returns its manifest item."""
    raw = (entry / "record.json").read_bytes()
    record = json.loads(raw)
    names = sorted(p.name for p in entry.iterdir() if p.is_file() and FILE_RE.match(p.name) and p.name != "record.json"
                   and (weights or p.name != "weights.pt"))
    if record.get("weights") and "weights.pt" not in names:  # a record must never promise weights it lacks
        raw = json.dumps({**record, "weights": False, "weights_not_exported": True}, indent=1, default=float).encode()
    files = [{"path": "record.json", "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}]
    tar.addfile(_member(f"runs/{entry.name}/record.json", len(raw), (entry / "record.json").stat().st_mtime),
                io.BytesIO(raw))
    for name in names:
        with open(entry / name, "rb") as f:  # one open file: the size and the bytes of one version of it
            st = os.fstat(f.fileno())
            reader = _Hashing(f)
            tar.addfile(_member(f"runs/{entry.name}/{name}", st.st_size, st.st_mtime), reader)
        if reader.n != st.st_size:
            raise OSError(f"{entry / name} changed size while it was exported; export again")
        files.append({"path": name, "size": st.st_size, "sha256": reader.sha.hexdigest()})
    return {"key": entry.name, "fingerprint": record.get("fingerprint"), "files": files}


def export_entries(results_dir: str | os.PathLike | None, keys_or_specs: Iterable[str | RunSpec],
                   out_file: str | os.PathLike, weights: bool = False) -> ExportReport:
    """Write the entries that ``keys_or_specs`` select (:func:`select_entries`) into the archive ``out_file``.

    Args:
        results_dir: the results folder (None: ``$PAPERLIB_RESULTS``, else ``./results``).
        keys_or_specs: train keys (16 hex) and :class:`RunSpec` s (``dataset``/``data_digest`` None match any).
        out_file: the archive; gzip-compressed tar unless the name ends in ``.tar`` (see the module docstring).
        weights: also pack ``weights.pt`` of the entries that kept them (default: records and curves only).

    Returns:
        An :class:`ExportReport`: the entries, files and bytes written, and the requested items not found.

    Raises:
        ValueError: nothing requested, an item that is neither key nor spec, or none of them found (nothing written).
    """
    root = results_root(results_dir)
    items = list(keys_or_specs)
    if not items:
        raise ValueError("nothing to export: name at least one train key or spec")
    keys, missing = select_entries(root, items)
    if not keys:
        raise ValueError(f"nothing to export: none of the {len(items)} requested keys/specs has an entry in "
                         f"{root / 'runs'} (is that the results folder that ran them?); no archive written")
    out = Path(out_file)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "revision": git_revision(),
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"), "weights": bool(weights),
                "entries": []}

    def write(f: BinaryIO) -> None:
        plain = out.name.endswith(".tar")
        with contextlib.ExitStack() as stack:
            sink: IO[bytes] = f if plain else stack.enter_context(
                gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=6))
            tar = stack.enter_context(tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT))
            for key in keys:
                manifest["entries"].append(_add_entry(tar, root / "runs" / key, weights))
            raw = json.dumps(manifest, indent=1).encode()
            tar.addfile(_member(MANIFEST, len(raw), datetime.now(UTC).timestamp()), io.BytesIO(raw))

    write_atomic(out, write)
    files = [f for e in manifest["entries"] for f in e["files"]]
    return ExportReport(archive=out, entries=keys, files=len(files), total_bytes=sum(f["size"] for f in files),
                        archive_bytes=out.stat().st_size, weights=bool(weights),
                        weights_files=sum(f["path"] == "weights.pt" for f in files), missing=missing)


# --- import: checking the archive --------------------------------------------------------------------------------

@dataclass
class _Entry:
    """One entry of a checked archive."""

    key: str
    """its train key"""
    fingerprint: dict | None
    """its record's code fingerprint"""
    files: dict[str, tuple[int, str]]
    """path in the entry -> (size, sha256), from the manifest"""
    record: bytes = b""
    """the archived record.json (checked)"""


#: What reading a truncated or damaged archive raises (gzip's BadGzipFile is an OSError).
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


@contextlib.contextmanager
def _members(archive: Path) -> Iterator[Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]]:
    """The members of ``archive`` in order, each with its file (None for a member that is not a regular file)."""
    with tarfile.open(archive, mode="r:*") as tar:
        yield ((m, tar.extractfile(m) if m.isreg() else None) for m in tar)


def _damaged(archive: Path, exc: BaseException) -> ArchiveError:
    """The error of an archive that cannot be read to its end."""
    return ArchiveError(f"archive {archive} cannot be read to its end ({type(exc).__name__}: {exc}): it is truncated "
                        f"or damaged, not a whole archive written by `python -m paperlib.runs.transfer export`; copy "
                        f"it again or export it anew (nothing was written)")


def _entry_and_file(name: str) -> tuple[str, str] | None:
    """(key, file name) of a member ``runs/<key>/<file>``; None for any other name."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "runs" and KEY_RE.match(parts[1]) and FILE_RE.match(parts[2]):
        return parts[1], parts[2]
    return None


def _parse_manifest(archive: Path, raw: bytes) -> dict[str, _Entry]:
    """The entries of a manifest, checked for form; :class:`ArchiveError` naming what is wrong."""
    def bad(what: str) -> ArchiveError:
        return ArchiveError(f"archive {archive}: its {MANIFEST} {what}; an archive written by `python -m "
                            f"paperlib.runs.transfer export` has a well-formed one (nothing was written)")

    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise bad(f"is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise bad(f"does not say format {FORMAT!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArchiveError(f"archive {archive} has format version {version!r}; this paperlib reads version "
                           f"{FORMAT_VERSION} (export it with the same paperlib version, or update this checkout)")
    if not isinstance(manifest.get("entries"), list):
        raise bad("has no list of entries")
    entries: dict[str, _Entry] = {}
    for item in manifest["entries"]:
        key = item.get("key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise bad(f"names an entry {key!r} that is not a train key (16 hex digits)")
        if key in entries:
            raise bad(f"lists entry {key} twice")
        fp = item.get("fingerprint")
        if fp is not None and not isinstance(fp, dict):
            raise bad(f"gives entry {key} a fingerprint that is not a mapping")
        files: dict[str, tuple[int, str]] = {}
        for f in item.get("files") if isinstance(item.get("files"), list) else []:
            path = f.get("path") if isinstance(f, dict) else None
            if not isinstance(path, str) or not FILE_RE.match(path):
                raise ArchiveError(
                    f"archive {archive}: its {MANIFEST} lists file {path!r} for entry {key}, which is not a file "
                    f"name inside runs/{key}/ (expected record.json, weights.pt or curve-*.csv; a path with a "
                    f"folder in it would escape the entry folder); nothing was written")
            size, sha = f.get("size"), f.get("sha256")
            if not (isinstance(size, int) and size >= 0 and isinstance(sha, str) and re.fullmatch("[0-9a-f]{64}", sha)):
                raise bad(f"gives runs/{key}/{path} no valid size and sha256")
            if path in files:
                raise bad(f"lists runs/{key}/{path} twice")
            files[path] = (size, sha)
        if "record.json" not in files:
            raise bad(f"lists no record.json for entry {key}")
        entries[key] = _Entry(key, fp, files)
    return entries


def _check_record(archive: Path, entry: _Entry) -> None:
    """The archived record of ``entry`` is a cache record of that key, with the manifest's fingerprint."""
    where = f"archive {archive}: runs/{entry.key}/record.json"
    try:
        record = json.loads(entry.record)
    except ValueError as exc:
        raise ArchiveError(f"{where} is not JSON ({exc}); a cache record is (nothing was written)") from None
    missing = _RECORD_KEYS - set(record) if isinstance(record, dict) else _RECORD_KEYS
    if missing:
        raise ArchiveError(f"{where} lacks {', '.join(sorted(missing))}, which every cache record holds "
                           f"(nothing was written)")
    if record["key"] != entry.key:
        raise ArchiveError(f"{where} is the record of {record['key']!r}, not of {entry.key} (nothing was written)")
    if record.get("fingerprint") != entry.fingerprint:
        raise ArchiveError(f"{where} has another code fingerprint than the manifest says (nothing was written)")
    if record["weights"] and "weights.pt" not in entry.files:
        raise ArchiveError(f"{where} promises weights that the archive lacks; an exported record without "
                           f"weights says \"weights\": false (nothing was written)")


def check_archive(archive: str | os.PathLike) -> dict[str, _Entry]:
    """Read ``archive`` to its end and check it whole; nothing is written.

    Checks: it is a readable tar (gzip or plain); its manifest is well formed and of :data:`FORMAT_VERSION`;
    every member is a regular file ``runs/<key>/<record.json|weights.pt|curve-*.csv>`` or the manifest, listed
    once; every listed file is there, with the size and sha256 the manifest gives; every record is a cache record
    of its key with the manifest's fingerprint.

    Returns:
        Key -> the entry (manifest items and the archived record).

    Raises:
        ArchiveError: (a ``ValueError``) one sentence naming the first problem and what a good archive holds.
    """
    path = Path(archive)
    if not path.is_file():
        raise ArchiveError(f"archive {path} does not exist (give the file that `export` wrote)")
    seen: dict[str, tuple[int, str]] = {}
    manifest_raw: bytes | None = None
    records: dict[str, bytes] = {}
    try:
        with _members(path) as members:
            for member, f in members:
                name = member.name
                if name in seen or (name == MANIFEST and manifest_raw is not None):
                    raise ArchiveError(f"archive {path} holds {name} twice; an exported archive holds every file "
                                       f"once (nothing was written)")
                if f is None:
                    raise ArchiveError(f"archive {path} holds {name!r}, which is not a regular file (a link or "
                                       f"folder); an exported archive holds only files (nothing was written)")
                if name == MANIFEST:
                    if member.size > MANIFEST_LIMIT:
                        raise ArchiveError(f"archive {path}: its {MANIFEST} is {member.size} bytes, too large for "
                                           f"a manifest (nothing was written)")
                    manifest_raw = f.read()
                    continue
                where = _entry_and_file(name)
                if where is None:
                    raise ArchiveError(
                        f"archive {path} holds {name!r}, which is not a file of an entry folder (expected "
                        f"runs/<16-hex key>/record.json, weights.pt or curve-*.csv, and {MANIFEST}); nothing was "
                        f"written")
                sha, n = hashlib.sha256(), 0
                keep = where[1] == "record.json"
                kept = []
                while chunk := f.read(_CHUNK):
                    sha.update(chunk)
                    n += len(chunk)
                    if keep:
                        kept.append(chunk)
                seen[name] = (n, sha.hexdigest())
                if keep:
                    records[where[0]] = b"".join(kept)
    except (*_READ_ERRORS, OSError) as exc:  # nothing is written here: any OSError is a read error
        raise _damaged(path, exc) from None
    if manifest_raw is None:
        raise ArchiveError(f"archive {path} has no {MANIFEST}: it is truncated, or not written by `python -m "
                           f"paperlib.runs.transfer export` (nothing was written)")
    entries = _parse_manifest(path, manifest_raw)
    listed = {f"runs/{e.key}/{p}": sf for e in entries.values() for p, sf in e.files.items()}
    extra = sorted(set(seen) - set(listed))
    if extra:
        raise ArchiveError(f"archive {path} holds {_listed(extra, 3)}, which its {MANIFEST} does not list; an "
                           f"exported archive lists every file it holds (nothing was written)")
    absent = sorted(set(listed) - set(seen))
    if absent:
        raise ArchiveError(f"archive {path} lacks {_listed(absent, 3)}, which its {MANIFEST} lists: it is "
                           f"truncated or was changed after export (nothing was written)")
    for name, (size, sha) in listed.items():
        got_size, got_sha = seen[name]
        if got_size != size:
            raise ArchiveError(f"archive {path}: {name} has {got_size} bytes, its {MANIFEST} says {size}: the file "
                               f"was damaged or changed after export (nothing was written)")
        if got_sha != sha:
            raise ArchiveError(f"archive {path}: {name} has sha256 {got_sha[:16]}..., its {MANIFEST} says "
                               f"{sha[:16]}...: the file was damaged in transfer or changed after export; copy "
                               f"the archive again or export it anew (nothing was written)")
    for entry in entries.values():
        entry.record = records[entry.key]
        _check_record(path, entry)
    return entries


# --- import: writing ---------------------------------------------------------------------------------------------

def _same_code(old: object, new: object) -> bool:
    """:func:`same_code` of two recorded fingerprints; False when either is missing or malformed."""
    return (isinstance(old, dict) and isinstance(new, dict) and "code" in new and "packages" in new
            and same_code(old, new))


def _plan(root: Path, entries: dict[str, _Entry], replace_other_code: bool,
          report: ImportReport) -> dict[str, tuple[str, list[str]]]:
    """Key -> (``add`` | ``replace`` | ``complete``, files to write) for the entries to write; refusals into the report.

    Reads the results folder only.
    """
    plan: dict[str, tuple[str, list[str]]] = {}
    for key, entry in entries.items():
        dest = root / "runs" / key
        if not dest.exists():
            plan[key] = ("add", list(entry.files))
            continue
        try:
            old = json.loads((dest / "record.json").read_text())
            old_fp = old.get("fingerprint") if isinstance(old, dict) else None
            unreadable = None
        except (OSError, ValueError) as exc:
            old_fp, unreadable = None, str(exc)
        if unreadable is None and _same_code(old_fp, entry.fingerprint):
            have = {p.name for p in dest.iterdir() if p.is_file()}
            lacking = [p for p in entry.files if p.startswith("curve-") and p not in have]
            if "weights.pt" in entry.files and "weights.pt" not in have:
                lacking.append("weights.pt")
            plan[key] = ("complete", lacking)
            report.kept[key] = []
        elif replace_other_code:
            plan[key] = ("replace", list(entry.files))
        else:
            why = (f"this folder's entry is unreadable ({unreadable})" if unreadable is not None else
                   "made by other code than this folder's entry (its code fingerprint differs: "
                   f"{_code(entry.fingerprint)} in the archive, {_code(old_fp)} here)")
            report.refused[key] = why
    return plan


def _code(fp: object) -> str:
    """``code 1234abcd...`` of a fingerprint, or why there is none."""
    return f"code {fp.get('code')}" if isinstance(fp, dict) else "none (made before code fingerprints)"


def _copy_checked(src: IO[bytes], dest: Path, size: int, sha256: str) -> None:
    """Copy ``src`` into the new file ``dest``, checking size and sha256 (the archive may change between reads)."""
    sha, n = hashlib.sha256(), 0
    with open(dest, "xb") as out:
        while chunk := src.read(_CHUNK):
            sha.update(chunk)
            n += len(chunk)
            out.write(chunk)
    os.chmod(dest, FILE_MODE)
    if n != size or sha.hexdigest() != sha256:
        raise ArchiveError(f"{dest.name} changed in the archive while it was imported (size or sha256 differs "
                           f"from the manifest now); import it again")


def import_entries(archive: str | os.PathLike, results_dir: str | os.PathLike | None,
                   replace_other_code: bool = False) -> ImportReport:
    """Add the entries of ``archive`` (written by :func:`export_entries`) to the results folder ``results_dir``.

    The archive is checked whole first (:func:`check_archive`); when anything is wrong, one
    :class:`ArchiveError` (a ``ValueError``) says what, and nothing is written. Then, per entry:

    - ``runs/<key>`` missing: added (written into a temporary folder under ``runs/``, renamed into place);
    - present, made by the same code (:func:`~paperlib.runs.fingerprint.same_code`): kept as it is, plus the
      curve files it lacks and the weights when it has none (its record then says ``"weights": true``);
    - present, made by other code (or unreadable): refused; with ``replace_other_code=True`` moved to
      ``stale/`` (:func:`~paperlib.runs.cache.move_aside`) and replaced by the archive's.

    Returns:
        An :class:`ImportReport`: added, replaced, kept (with the files added) and refused entries.
    """
    path = Path(archive)
    entries = check_archive(path)
    root = results_root(results_dir)
    report = ImportReport(archive=path, results_dir=root)
    plan = _plan(root, entries, replace_other_code, report)
    todo = {k: v for k, v in plan.items() if v[1]}
    if not todo:
        return report
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    staging = {key: runs / f".{key}.{uuid.uuid4().hex}.tmp" for key in todo}
    try:
        for tmp in staging.values():
            tmp.mkdir()
        try:
            with _members(path) as members:
                for member, f in members:
                    where = _entry_and_file(member.name)
                    if where is None or where[0] not in todo or where[1] not in todo[where[0]][1]:
                        continue
                    key, name = where
                    if name == "record.json":
                        (staging[key] / name).write_bytes(entries[key].record)
                        os.chmod(staging[key] / name, FILE_MODE)
                    else:
                        _copy_checked(f, staging[key] / name, *entries[key].files[name])
        except _READ_ERRORS as exc:
            raise _damaged(path, exc) from None
        for key, (action, names) in todo.items():
            _place(root, key, action, names, staging[key], report)
    finally:
        for tmp in staging.values():
            shutil.rmtree(tmp, ignore_errors=True)
    return report


@contextlib.contextmanager
def _curve_lock(entry: Path) -> Iterator[None]:
    """The lock the cache holds while it rewrites a curve file (:func:`paperlib.runs.cache.locked_if_writable` on
    ``entry/.curve.lock``); an entry that cannot be locked cannot be written either: an error."""
    with locked_if_writable(entry / ".curve.lock") as writable:
        if not writable:
            raise ResultsNotWritableError(f"{entry} cannot be written (its .curve.lock cannot be opened); make the "
                                          f"results folder writable")
        yield


def _place(root: Path, key: str, action: str, names: list[str], tmp: Path, report: ImportReport) -> None:
    """Move the staged files of one entry into place and note it in ``report``."""
    dest = root / "runs" / key
    if action == "replace":
        report.replaced[key] = move_aside(root, dest, "stale")
    if action in ("add", "replace"):
        try:
            os.rename(tmp, dest)
        except OSError:  # another process wrote this entry meanwhile: leave it
            report.replaced.pop(key, None)
            report.refused[key] = "another process wrote this entry while the archive was imported; kept that one"
            return
        if action == "add":
            report.added.append(key)
        return
    with _curve_lock(dest):
        for name in names:
            if name.startswith("curve-") and not (dest / name).exists():
                os.replace(tmp / name, dest / name)
                report.kept[key].append(name)
    if "weights.pt" in names and not (dest / "weights.pt").exists():
        os.replace(tmp / "weights.pt", dest / "weights.pt")
        report.kept[key].append("weights.pt")
        record = json.loads((dest / "record.json").read_text())
        if not record.get("weights") or "weights_lost" in record:  # after weights.pt, as the cache does
            write_record(dest / "record.json", {**{k: v for k, v in record.items()
                                                   if k not in ("weights_lost", "weights_not_exported")},
                                                "weights": True})


# --- command line ------------------------------------------------------------------------------------------------

def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of an ``import`` command (beside ``--results``)."""
    parser.add_argument("archive", help="the archive written by export")
    parser.add_argument("--replace-other-code", action="store_true",
                        help="move entries made by other code to stale/ and import the archive's (default: refuse)")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``export`` / ``import``; prints the report, or exits 1 with one line on error."""
    parser = argparse.ArgumentParser(prog="python -m paperlib.runs.transfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="pack entries of a results folder into one archive")
    exp.add_argument("keys", nargs="+", metavar="KEY", help="train keys (folder names under <results>/runs)")
    exp.add_argument("--out", required=True, help="the archive (.tar.gz; .tar: uncompressed)")
    exp.add_argument("--weights", action="store_true", help="include the weights (default: records and curves)")
    imp = sub.add_parser("import", help="check an archive whole, then add its entries to a results folder")
    add_import_arguments(imp)
    for p in (exp, imp):
        p.add_argument("--results", default=None, help="results folder (default: $PAPERLIB_RESULTS, else ./results)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            report: object = export_entries(args.results, args.keys, args.out, weights=args.weights)
        else:
            report = import_entries(args.archive, args.results, replace_other_code=args.replace_other_code)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


__all__ = ["FORMAT", "FORMAT_VERSION", "ArchiveError", "ExportReport", "ImportReport", "check_archive",
           "export_entries", "import_entries", "index_entries", "select_entries", "spec_matches"]

if __name__ == "__main__":
    sys.exit(main())
