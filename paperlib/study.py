"""What a notebook needs around its experiments: the parameters resolved, sweeps, captions, saved figures.

Every numbered notebook starts with ``study = Study.from_parameters(...)``
on its ``parameters`` cell, runs its specs with :meth:`Study.sweep` and saves
each figure with :meth:`Study.save`, which writes PNG, PDF and the tidy CSV
with a caption line of provenance (profile, epochs, images, seeds, data set,
bit widths, git revision).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from .experiment import RunSpec
from .models import ARCH_NAMES
from .plotting import save_table, savefig
from .profiles import Profile, load_profile
from .provenance import git_revision
from .sweep import dask_executor, run_sweep

def project_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root above ``start`` (default: the working directory), found by its ``paperlib`` and
    ``notebooks`` folders; the working directory when there is none (a notebook copied elsewhere)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "paperlib").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return here


@dataclass(frozen=True)
class Study:
    """The resolved parameters of one notebook run."""

    profile: Profile
    """what to run (``smoke``, ``quick``, ``paper`` or a YAML file)"""
    device: str
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``"""
    data_root: str
    """where CIFAR-10 is (folder, ``cifar-10-batches-py`` or the JPEG ``.tar.gz``); downloaded there when missing"""
    results_dir: str
    """the result cache"""
    figures_dir: Path
    """where figures, captions and CSVs go"""
    executor: str
    """``""``: runs in this process; ``"local"`` or ``"local:N"``: a Dask LocalCluster (N workers); else a Dask scheduler address"""

    @classmethod
    def from_parameters(cls, profile: str = "", device: str = "auto", data_root: str = "", results_dir: str = "",
                        figures_dir: str = "", executor: str = "") -> "Study":
        """Resolve a notebook's ``parameters`` cell; empty strings mean the defaults.

        Defaults: profile ``$PAPERLIB_PROFILE``, else ``quick``; data
        ``$PAPERLIB_DATA``, else ``<repo>/data``; results ``$PAPERLIB_RESULTS``,
        else ``<repo>/results``; figures ``$PAPERLIB_FIGURES``, else
        ``<repo>/figures`` (``<repo>`` is found from the working directory).
        """
        root = project_root()
        env = os.environ.get
        return cls(profile=load_profile(profile or env("PAPERLIB_PROFILE") or "quick"), device=device,
                   data_root=data_root or env("PAPERLIB_DATA") or str(root / "data"),
                   results_dir=results_dir or env("PAPERLIB_RESULTS") or str(root / "results"),
                   figures_dir=Path(figures_dir or env("PAPERLIB_FIGURES") or root / "figures"), executor=executor)

    @contextlib.contextmanager
    def _executor(self) -> Iterator:
        if not self.executor:
            yield None
            return
        name, _, n = self.executor.partition(":")
        if name == "local":
            if n and not n.isdigit():
                raise ValueError(f"executor {self.executor!r}: use 'local' or 'local:N' with N workers, or a Dask scheduler address")
            ex = dask_executor(n_workers=int(n) if n else None)
        else:
            ex = dask_executor(self.executor)
        with ex:
            yield ex

    def sweep(self, specs: list[RunSpec]) -> pd.DataFrame:
        """Run ``specs`` (the cache skips what is done; see :func:`paperlib.run_sweep`) and return the tidy table.

        Runs that failed are reported in a warning and kept as rows with NaN
        accuracy and their error; the notebook goes on with the others.
        """
        with self._executor() as ex:
            df = run_sweep(specs, ex, data_root=self.data_root, results_dir=self.results_dir, device=self.device)
        failed = df.loc[df["error"].notna() & ~df["diverged"].astype(bool), "error"].unique()
        if len(failed):
            warnings.warn(f"{len(failed)} run(s) failed and are left out; first error: {failed[0]}", stacklevel=2)
        return df

    def caption(self, df: pd.DataFrame) -> str:
        """One line of provenance for results ``df``: profile, per-arch training budget, seeds, data set, bits, revision."""
        parts = [f"profile {self.profile.name}"]
        for arch, g in df.groupby("arch", sort=False):
            subsets = "/".join(f"{int(v):,}" if pd.notna(v) else "all" for v in (g.train_subset.iloc[0], g.test_subset.iloc[0]))
            draws = int(g["repeat"].max()) + 1 if g["repeat"].max() >= 0 else 0
            epochs = "/".join(str(e) for e in sorted(g.epochs.unique()))
            parts.append(f"{ARCH_NAMES.get(arch, arch)}: {epochs} epoch(s), {subsets} train/test images, "
                         f"{g.seed.nunique()} seed(s), {draws} noise draw(s)/sigma")
        bits = sorted(int(b) for b in df.bits.dropna().unique())
        parts.append("fp32" + "".join(f", {b}-bit" for b in bits))
        parts.append(", ".join(str(d) for d in df.dataset.dropna().unique()) or "no data")
        parts.append(f"paperlib rev {git_revision()}")
        return " · ".join(parts)

    def save_table(self, table: pd.DataFrame, name: str, results: pd.DataFrame) -> Path:
        """Write ``figures/<name>.csv`` with the provenance caption of ``results`` as its first (comment) line."""
        return save_table(table, self.figures_dir / f"{name}.csv", self.caption(results))

    def save(self, fig, name: str, table: pd.DataFrame, results: pd.DataFrame | None = None) -> list[Path]:
        """Write ``figures/<name>.png``, ``.pdf`` and ``.csv`` (``table``) with the caption of ``results`` (default: ``table``)."""
        return savefig(fig, name, self.caption(table if results is None else results), table, self.figures_dir)
