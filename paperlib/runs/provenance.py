"""What made a result: git revision, code hash, package versions, device, time (docs/protocol.md §12)."""
from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch

from .fingerprint import code_fingerprint

PACKAGES: tuple[str, ...] = ("paperlib", "torch", "torchvision", "brevitas", "numpy", "scipy", "pandas")


#: What ``+dirty`` looks at: the package and its pins. Figures, executed notebooks and docs that a run writes or
#: that are being edited do not change the code that made a result.
CODE_PATHS: tuple[str, ...] = (":(top)paperlib", ":(top)pyproject.toml")


def git_revision(path: str | Path | None = None) -> str:
    """Short git revision of the repository holding ``path`` (default: this package), ``+dirty`` when the package
    or pyproject.toml (:data:`CODE_PATHS`) has uncommitted changes; ``unknown`` outside a git checkout."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS], cwd=cwd,
            capture_output=True, text=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that determine our numbers."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu() -> dict:
    """The CPU: its model (``/proc/cpuinfo``'s ``model name``, else ``platform.processor()``) and the instruction set
    torch's CPU kernels use (``AVX2``, ``AVX512``, ...): the last bits of CPU results may depend on it
    (docs/protocol.md §12), so a record says where it was made."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"model": model or "unknown", "capability": torch.backends.cpu.get_cpu_capability()}


def provenance(device: str) -> dict:
    """Git revision, code hash (:func:`paperlib.runs.fingerprint.code_fingerprint`), package versions, device, host,
    CPU (:func:`cpu`), Python and UTC time. The revision says which checkout ran; the code hash says which code made
    the numbers (a revision with ``+dirty`` alone cannot)."""
    return {
        "revision": git_revision(),
        "code": code_fingerprint()["code"],
        "packages": package_versions(),
        "device": device,
        "host": platform.node(),
        "cpu": cpu(),
        "python": platform.python_version(),
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
