"""The zoo: the trained networks behind the committed figures, loaded in one line (docs/zoo.md).

    >>> from paperlib import zoo
    >>> zoo.names("quick")[:2]                 # e.g. ['quick/lenet5-4bit-dynamic-seed0', ...]
    >>> model = zoo.load("quick/lenet5-8bit-s8-seed0")    # eval mode, ready for noise_sweep or your own noise
    >>> x, y = zoo.eval_images("quick/lenet5-8bit-s8-seed0")  # the test images its accuracy was measured on

Each network is one weights file in the safetensors format (tensors only: no code is executed when it is read)
with an entry in ``manifest.json`` beside this module: its :class:`~paperlib.runs.spec.RunSpec` and cache key,
its clean accuracy and ``sigma_mid`` (with the calibrated error) as the figures show them, the code fingerprint
and revision that trained it, and the file's size and sha256. :func:`load` checks size and sha256 before it reads
a byte of weights, so a truncated or corrupt file is one :class:`ZooIntegrityError`, never a silently wrong model.

Where the files are (``where`` in the manifest):

- ``repository``: in ``paperlib/zoo/weights/``, shipped with the package (small networks: LeNet-5).
- ``release``: a release asset ``<base_url><file>`` (larger networks: VGG-11, ResNet-18), fetched once on first
  use into ``$PAPERLIB_ZOO_CACHE`` (default ``~/.cache/paperlib/zoo``), checked like a shipped file, and reused.
  ``$PAPERLIB_ZOO_URL`` replaces the manifest's base URL (a mirror, or ``file:///folder/`` of copied files).
  Offline, a missing file is one :class:`ZooOfflineError` that says where to put it.

``python -m paperlib.paper.zoo`` builds the zoo from a result cache (:mod:`paperlib.paper.zoo`).
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..atomic import write_atomic
from ..data import CIFAR10Data, load_cifar10
from ..models import build_model
from ..runs.spec import SUBSET_SEED, RunSpec

#: The manifest of the zoo shipped with this package.
MANIFEST = Path(__file__).with_name("manifest.json")
#: Where the shipped weights files are.
WEIGHTS_DIR = Path(__file__).with_name("weights")
#: The manifest format this module reads.
FORMAT = 1
#: Environment variable: the folder release assets are downloaded to.
ENV_CACHE = "PAPERLIB_ZOO_CACHE"
#: Environment variable: replaces the manifest's ``base_url`` for release assets.
ENV_URL = "PAPERLIB_ZOO_URL"


class ZooError(Exception):
    """A zoo network cannot be given: unknown name, bad manifest, damaged or unreachable file."""


class ZooIntegrityError(ZooError):
    """A weights file is not the file the manifest describes (truncated, corrupt, or another network's)."""


class ZooOfflineError(ZooError, ConnectionError):
    """A release asset is not on this machine and cannot be downloaded."""


@dataclass(frozen=True)
class ZooEntry:
    """One network of the zoo, as its manifest entry describes it."""

    name: str
    """``<profile>/<arch>-<variant>[-noisy<sigma>]-seed<n>``, e.g. ``quick/lenet5-8bit-s8-seed0``"""
    file: str
    """the weights file's name (safetensors)"""
    where: str
    """``repository`` (shipped in ``paperlib/zoo/weights``) or ``release`` (fetched from ``base_url``)"""
    size: int
    """the file's size in bytes"""
    sha256: str
    """the file's sha256 (64 hex)"""
    spec: RunSpec
    """the run that trained it (architecture, bits, scale, training noise, epochs, seed, data subsets, data digest)"""
    key: str
    """its train key in the result cache"""
    profile: str
    """the profile whose committed figures show it"""
    figures: tuple[str, ...]
    """the notebooks (main-job names, e.g. ``01``) whose figures show it"""
    clean_accuracy: float
    """clean test accuracy (fraction) on the spec's test images, as recorded when it was trained"""
    sigma_mid: float | None
    """noise level at which the accuracy falls halfway to chance (calibrated fit); None when the fit failed"""
    sigma_mid_err: float | None
    """the calibrated standard error of ``sigma_mid``"""
    code: str
    """the code fingerprint (16 hex) of the paperlib that trained it"""
    revision: str
    """the git revision that trained it"""

    @property
    def size_mb(self) -> float:
        """The file's size in MiB."""
        return self.size / 2**20


def _read_manifest(path: Path = MANIFEST) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"format": FORMAT, "base_url": None, "networks": {}}
    except (OSError, ValueError) as exc:
        raise ZooError(f"the zoo manifest {path} is unreadable ({exc}); reinstall paperlib or restore the "
                       "file") from None
    if manifest.get("format") != FORMAT:
        raise ZooError(f"the zoo manifest {path} has format {manifest.get('format')!r}; this paperlib reads format "
                       f"{FORMAT}: update paperlib")
    return manifest


def _entry(name: str, raw: dict) -> ZooEntry:
    fields = {k: raw[k] for k in ("file", "where", "size", "sha256", "key", "profile", "clean_accuracy",
                                  "sigma_mid", "sigma_mid_err", "code", "revision")}
    return ZooEntry(name=name, spec=RunSpec.from_dict(raw["spec"]), figures=tuple(raw["figures"]), **fields)


def names(profile: str | None = None, arch: str | None = None, manifest: Path = MANIFEST) -> list[str]:
    """The zoo's network names, sorted; only those of ``profile`` and/or ``arch`` when given."""
    nets = _read_manifest(manifest)["networks"]
    return sorted(n for n, e in nets.items()
                  if (profile is None or e["profile"] == profile) and (arch is None or e["spec"]["arch"] == arch))


def info(name: str, manifest: Path = MANIFEST) -> ZooEntry:
    """The manifest entry of network ``name``.

    Raises:
        ZooError: no network has this name (the message lists the profiles and a few names).
    """
    nets = _read_manifest(manifest)["networks"]
    if name not in nets:
        some = ", ".join(sorted(nets)[:4]) or "none: the zoo is empty"
        raise ZooError(f"the zoo has no network {name!r}; paperlib.zoo.names() lists the {len(nets)} it has "
                       f"(e.g. {some})")
    return _entry(name, nets[name])


def cache_dir() -> Path:
    """Where release assets are kept: ``$PAPERLIB_ZOO_CACHE``, else ``~/.cache/paperlib/zoo``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "paperlib" / "zoo").expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(entry: ZooEntry, path: Path) -> Path:
    """``path`` if it is the file ``entry`` describes (size, then sha256); else :class:`ZooIntegrityError`."""
    size = path.stat().st_size
    if size != entry.size:
        how = "truncated" if size < entry.size else "longer than it should be"
        raise ZooIntegrityError(f"zoo file {path} of {entry.name} is {how} ({size:,} bytes, the manifest says "
                                f"{entry.size:,}); delete it and fetch or reinstall it")
    digest = _sha256(path)
    if digest != entry.sha256:
        raise ZooIntegrityError(f"zoo file {path} of {entry.name} is corrupt or another file (sha256 {digest[:12]}…, "
                                f"the manifest says {entry.sha256[:12]}…); delete it and fetch or reinstall it")
    return path


def _fetch(entry: ZooEntry, dest: Path, base_url: str | None) -> None:
    base = os.environ.get(ENV_URL) or base_url
    if not base:
        raise ZooOfflineError(f"{entry.name} is a release asset but the manifest names no base URL; set "
                              f"{ENV_URL} to where its file {entry.file} can be downloaded from")
    url = base.rstrip("/") + "/" + entry.file
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ZooOfflineError(f"{entry.name} ({entry.size_mb:.1f} MiB) is not on this machine and could not be "
                              f"downloaded from {url} ({reason}); download it elsewhere and put it at {dest}, or "
                              f"set {ENV_URL} to a reachable copy") from None
    write_atomic(dest, lambda f: f.write(body))  # a partial download never sits where a file is looked for


def path(name: str, *, fetch: bool = True, manifest: Path = MANIFEST) -> Path:
    """The checked local file of network ``name`` (a release asset is downloaded first unless ``fetch`` is False)."""
    entry = info(name, manifest)
    if entry.where == "repository":
        local = manifest.parent / "weights" / entry.file
        if not local.is_file():
            raise ZooError(f"zoo file {local} of {name} is missing from this installation; reinstall paperlib "
                           f"(the file ships with it)")
        return verify(entry, local)
    if entry.where != "release":
        raise ZooError(f"{name}: the manifest places it {entry.where!r}; expected 'repository' or 'release'")
    local = cache_dir() / entry.file
    if not local.is_file():
        if not fetch:
            raise ZooOfflineError(f"{name} is not downloaded yet (expected at {local}); call with fetch=True")
        _fetch(entry, local, _read_manifest(manifest).get("base_url"))
    try:
        return verify(entry, local)
    except ZooIntegrityError:
        local.replace(local.with_name(local.name + ".bad"))  # a bad download is not kept as if it were the file
        raise


def load(name: str, device: str | torch.device = "cpu", *, manifest: Path = MANIFEST) -> nn.Module:
    """Network ``name`` in eval mode on ``device``, its file checked against the manifest first.

    Returns:
        The model of :func:`paperlib.build_model` for its spec (fp32 or Brevitas QAT, with the noise modules
        after every layer, silent until :func:`paperlib.set_noise`), with the zoo's weights.

    Raises:
        ZooError: unknown name; :class:`ZooIntegrityError`: the file is not the manifest's;
        :class:`ZooOfflineError`: a release asset that cannot be downloaded.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    entry = info(name, manifest)
    file = path(name, manifest=manifest)
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:  # only reachable when the manifest itself is wrong
        raise ZooIntegrityError(f"zoo file {file} of {name} is not a readable safetensors file ({exc})") from None
    model = build_model(entry.spec.arch, entry.spec.bits, entry.spec.scale)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ZooIntegrityError(f"zoo file {file} does not fit {name}'s architecture ({first})") from None
    return model.to(device).eval()


def eval_images(name: str, data_root: str | os.PathLike | None = None, *, data: CIFAR10Data | None = None,
                manifest: Path = MANIFEST) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images ``[N, 3, 32, 32]`` (normalized) and labels ``[N]`` on which ``name``'s recorded clean
    accuracy was measured: its spec's stratified test subset of CIFAR-10 (all 10,000 when the spec has none).

    Raises:
        ValueError: the data set found is not the one the network was evaluated on (another content digest).
    """
    entry = info(name, manifest)
    data = data if data is not None else load_cifar10(data_root)
    digest = data.content_digest()
    if entry.spec.data_digest is not None and digest != entry.spec.data_digest:
        raise ValueError(f"{name} was evaluated on data with digest {entry.spec.data_digest} "
                         f"({entry.spec.dataset}); the data found has digest {digest} ({data.source}): point "
                         f"data_root at that data set")
    sub = data.subset(test=entry.spec.test_subset, seed=SUBSET_SEED)
    return sub.x_test, sub.y_test
