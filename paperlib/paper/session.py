"""What a notebook needs around its experiments: the parameters resolved, sweeps, captions, saved figures.

Every numbered notebook starts with ``session = Session.from_parameters(...)``
on its ``parameters`` cell, runs its specs with :meth:`Session.sweep` and saves
each figure with :meth:`Session.save`, which writes PNG, PDF and the tidy CSV
with a caption line of provenance (profile, epochs, images, seeds, data set,
bit widths, git revision).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import guards
from ..device import resolve_device
from ..models import ARCH_NAMES
from ..runs import progress
from ..runs.check_figures import fingerprint_line
from ..runs.experiment import RunSpec
from ..runs.profile import Profile, load_profile
from ..runs.provenance import git_revision
from ..runs.summary import label
from ..runs.sweep import dask_executor, run_sweep
from .plots import save_table, savefig


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root above ``start`` (default: the working directory), found by its ``paperlib`` and
    ``notebooks`` folders; the working directory when there is none (a notebook copied elsewhere)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "paperlib").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return here


def _failed_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of runs that raised: an error, but not a diverged training (a result, ``docs/protocol.md`` §11)."""
    if "error" not in df or "diverged" not in df:
        return pd.Series(False, index=df.index)
    return df["error"].notna() & ~df["diverged"].fillna(False).astype(bool)


def failed_runs(df: pd.DataFrame) -> int:
    """How many runs of the sweep table ``df`` raised (each has one row with its error; diverged runs do not count)."""
    return int(_failed_mask(df).sum())


def packed_networks(df: pd.DataFrame) -> str:
    """For a caption: how many networks of the sweep table ``df`` were trained in packs (``pack`` column of
    :func:`paperlib.run_sweep`), e.g. "24 of 26 networks trained in packs of up to 12"; empty when none was."""
    if "pack" not in df:
        return ""
    runs = df.drop_duplicates("key") if "key" in df else df
    sizes = pd.to_numeric(runs["pack"], errors="coerce").dropna()
    packed = sizes[sizes > 1]
    if packed.empty:
        return ""
    largest = int(packed.max())
    return f"{len(packed)} of {len(sizes)} networks trained in packs of up to {largest} (docs/protocol.md §12)"


def accelerator_kernels(df: pd.DataFrame) -> str:
    """For a caption: the accelerators that trained the networks of the sweep table ``df`` and whether their kernels
    were deterministic (``device`` and ``deterministic`` columns of :func:`paperlib.run_sweep`), e.g. "trained on
    cuda, deterministic kernels"; empty when every network was trained on the CPU (deterministic there, §12)."""
    if "device" not in df or "deterministic" not in df:
        return ""
    runs = df.drop_duplicates("key") if "key" in df else df
    gpu = runs[runs.device.notna() & ~runs.device.astype(str).str.startswith("cpu")]
    if gpu.empty:
        return ""
    det = gpu.deterministic
    n_true, n_false = int((det == True).sum()), int((det == False).sum())  # noqa: E712 (None counts as neither)
    n_unknown = len(gpu) - n_true - n_false
    if n_true == len(gpu):
        how = "deterministic kernels"
    elif n_false == len(gpu):
        how = "NOT deterministic kernels (opted out)"
    else:
        how = (f"{n_true} of {len(gpu)} networks with deterministic kernels"
               + (f", {n_unknown} not recorded" if n_unknown else ""))
    where = ", ".join(sorted(gpu.device.astype(str).unique()))
    if "torch" in gpu and gpu.torch.notna().any():
        where += f" (torch {', '.join(sorted(gpu.torch.dropna().astype(str).unique()))})"
    return f"trained on {where}, {how}"


@dataclass(frozen=True)
class Session:
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
    """``""``: runs in this process; ``"local"`` or ``"local:N"``: a Dask LocalCluster (N workers);
    else a Dask scheduler address"""
    allow_failures: bool = False
    """False: a sweep with failed runs raises; True: it warns, leaves them out and the captions count them"""
    seeds: int = 0
    """networks per variant in every figure's specs (:meth:`run`); 0 = the profile's number"""

    @classmethod
    def from_parameters(
        cls,
        profile: str = "",
        device: str = "auto",
        data_root: str = "",
        results_dir: str = "",
        figures_dir: str = "",
        executor: str = "",
        allow_failures: bool = False,
        seeds: int = 0,
    ) -> Session:
        """Resolve a notebook's ``parameters`` cell; empty strings mean the defaults.

        Defaults: profile ``$PAPERLIB_PROFILE``, else ``quick``; data
        ``$PAPERLIB_DATA``, else ``<repo>/data``; results ``$PAPERLIB_RESULTS``,
        else ``<repo>/results``; figures ``$PAPERLIB_FIGURES``, else
        ``<repo>/figures/<profile name>`` (one folder per profile, so a smoke run
        never overwrites the quick figures; ``<repo>`` is found from the working directory).
        ``allow_failures``: see :meth:`sweep`; ``seeds``: see :meth:`run`. Prints :meth:`describe`'s line.
        """
        root = project_root()
        env = os.environ.get
        if not isinstance(allow_failures, bool):
            raise ValueError(f"allow_failures must be True or False, got {allow_failures!r}")
        guards.seeds(seeds)
        resolved = load_profile(profile or env("PAPERLIB_PROFILE") or "quick")
        resolve_device(device)  # a device this machine lacks is an error now, before any data is loaded
        session = cls(
            profile=resolved,
            device=device,
            data_root=data_root or env("PAPERLIB_DATA") or str(root / "data"),
            results_dir=results_dir or env("PAPERLIB_RESULTS") or str(root / "results"),
            figures_dir=Path(figures_dir or env("PAPERLIB_FIGURES") or root / "figures" / resolved.name),
            executor=executor,
            allow_failures=allow_failures,
            seeds=seeds,
        )
        print(session.describe())
        return session

    def describe(self) -> str:
        """One line: the profile and where results and figures go, never as an absolute path (a stored notebook
        output must not hold one): relative to the working directory inside the repository, else the folder's name
        and "outside the repository"."""
        root = project_root()

        def where(path: str | os.PathLike) -> str:
            full = Path(path).resolve()
            if full == root or root in full.parents:
                return os.path.relpath(full)
            return f"…/{full.name} (outside the repository)"

        results, figures = where(self.results_dir), where(self.figures_dir)
        return f"profile {self.profile.name}; results in {results}; figures in {figures}"

    @contextlib.contextmanager
    def _executor(self) -> Iterator:
        if not self.executor:
            yield None
            return
        name, _, n = self.executor.partition(":")
        if name == "local":
            if n and not n.isdigit():
                raise ValueError(
                    f"executor {self.executor!r}: use 'local' or 'local:N' with N workers, or a Dask scheduler address"
                )
            ex = dask_executor(n_workers=int(n) if n else None)
        else:
            ex = dask_executor(self.executor)
        with ex:
            yield ex

    def sweep(self, specs: list[RunSpec]) -> pd.DataFrame:
        """Run ``specs`` (the cache skips what is done; see :func:`paperlib.run_sweep`) and return the tidy table.

        A run that raised (not one that diverged, see ``docs/protocol.md`` §11)
        stops the notebook: this raises a ``RuntimeError`` naming how many runs
        failed and the first error, before anything is plotted or saved. With
        ``allow_failures=True`` it warns instead; the failed runs stay in the
        table as rows with NaN accuracy and their error, and their number is in
        ``df.attrs["failed_runs"]`` (see :func:`failed_runs`).
        """
        quiet = bool(os.environ.get(progress.ENV))  # run by `make figures`: progress goes to its terminal instead
        with self._executor() as ex:
            df = run_sweep(
                specs,
                ex,
                data_root=self.data_root,
                results_dir=self.results_dir,
                device=self.device,
                progress=not quiet,
            )
        n = failed_runs(df)
        df.attrs["failed_runs"] = n
        if n:
            first = str(df.loc[_failed_mask(df), "error"].iloc[0]).strip().splitlines()[0]
            what = f"{n} of {len(specs)} run(s) failed; first error: {first}"
            if not self.allow_failures:
                raise RuntimeError(
                    f"{what}. Fix the cause and rerun (finished runs are cached), or set the notebook "
                    "parameter allow_failures = True (papermill -p allow_failures True) "
                    "to go on without them."
                )
            warnings.warn(f"{what}; they are left out (allow_failures = True)", stacklevel=2)
        return df

    def run(self, figure, **params) -> pd.DataFrame:
        """Sweep the specs of a figure's module (``paper.fig2``, ``paper.table1``, ...): its
        ``specs(profile, seeds, **params)`` at this session's profile and :attr:`seeds`, through :meth:`sweep`.

        ``params``: what the figure takes beside them, e.g. ``arch="resnet18"`` for Table I.
        """
        return self.sweep(figure.specs(self.profile, self.seeds, **params))

    def check(self, df: pd.DataFrame, by: tuple[str, ...] = ("arch", "variant", "regime")) -> None:
        """Print, per curve of the sweep table ``df``, its accuracy at the smallest and the largest sigma, coarse
        enough to read the same on every machine (10 points; "chance" up to 30%): the line nbval checks.

        In the ``smoke`` profile VGG-11 and ResNet-18 train for one step and learn nothing: only their noisy end
        is printed as a number.
        """
        def level(acc: float) -> str:
            return "chance" if acc <= 0.3 else f"{round(acc, 1):.0%}"

        runs = df if "variant" in df else label(df)
        for key, g in runs.groupby(list(by), sort=False):
            lo, hi = (g[g.sigma == s].accuracy.mean() for s in (g.sigma.min(), g.sigma.max()))
            learned = g.arch.iloc[0] == "lenet5" or self.profile.name != "smoke"
            print(f"{' '.join(map(str, key))}: at sigma {g.sigma.min():g} {level(lo) if learned else '(not learned)'}, "
                  f"at sigma {g.sigma.max():g} {level(hi)}")

    def caption(self, df: pd.DataFrame, note: str = "") -> str:
        """One line of provenance for results ``df``: profile, per-arch training budget, seeds, data set, bits, and the
        git revision(s) and code hash(es) that made these results (``revision``/``code`` columns of
        :func:`paperlib.run_sweep`), not the checkout's; e.g. ``paperlib rev a1b2c3d, code 1234abcd``. ``note``: what
        else the figure needs said (e.g. a device model and its draws), after the data set."""
        parts = [f"profile {self.profile.name}"]
        for arch, g in df.groupby("arch", sort=False):
            subsets = "/".join(
                f"{int(v):,}" if pd.notna(v) else "all" for v in (g.train_subset.iloc[0], g.test_subset.iloc[0])
            )
            draws = int(g["repeat"].max()) + 1 if g["repeat"].max() >= 0 else 0
            epochs = "/".join(str(e) for e in sorted(g.epochs.unique()))
            parts.append(
                f"{ARCH_NAMES.get(arch, arch)}: {epochs} epoch(s), {subsets} train/test images, "
                f"{g.seed.nunique()} seed(s), {draws} noise draw(s)/sigma"
            )
        bits = sorted(int(b) for b in df.bits.dropna().unique())
        parts.append("fp32" + "".join(f", {b}-bit" for b in bits))
        parts.append(", ".join(str(d) for d in df.dataset.dropna().unique()) or "no data")
        if note:
            parts.append(note)
        if failed_runs(df):  # only with allow_failures=True (see sweep)
            parts.append(f"{failed_runs(df)} run(s) failed and are left out")
        for how in (accelerator_kernels(df), packed_networks(df)):
            if how:
                parts.append(how)
        if not {"revision", "code"} <= set(df.columns):
            parts.append(f"paperlib rev {git_revision()} (this checkout: the table names no revision of its results)")
            return " · ".join(parts)
        made = df[["revision", "code"]].dropna(how="all").fillna("unknown").drop_duplicates()
        if made.empty:
            parts.append("paperlib rev none (no results)")
        elif len(made) == 1:
            parts.append(f"paperlib rev {made.revision.iloc[0]}, code {made.code.iloc[0]}")
        else:  # in order of appearance
            parts.append("paperlib revs " + ", ".join(f"{r} (code {c})" for r, c in made.itertuples(index=False)))
        return " · ".join(parts)

    def fingerprint_line(self, results: pd.DataFrame, modules: tuple[str, ...] = ()) -> str:
        """The ``# fingerprint:`` line of a figure made from ``results``, whose numbers also depend on ``modules``
        (``paperlib/<name>.py``, beside the usual ones; see :mod:`paperlib.runs.check_figures`)."""
        codes = [str(c) for c in results["code"].dropna().unique()] if "code" in results else []
        return fingerprint_line(codes, modules)

    def save_table(self, table: pd.DataFrame, name: str, results: pd.DataFrame, by=None,
                   modules: tuple[str, ...] = (), note: str = "") -> Path:
        """Write ``figures/<name>.csv`` with the provenance caption of ``results`` (and ``note``) as its first
        (comment) line and the fingerprint of the code that made its numbers as its second: the core modules, those
        of ``by`` (the figure's module, e.g. ``paper.fig2``: its ``MODULES``) and ``modules``."""
        return save_table(table, self.figures_dir / f"{name}.csv", self.caption(results, note),
                          (self.fingerprint_line(results, _own(by, modules)),))

    def save(self, fig, name: str, table: pd.DataFrame, results: pd.DataFrame | None = None, by=None,
             modules: tuple[str, ...] = (), note: str = "") -> list[Path]:
        """Write ``figures/<name>.png``, ``.pdf`` and ``.csv`` (``table``) with the caption of ``results``
        (default: ``table``; ``note`` added, see :meth:`caption`) and the fingerprint line (the core modules, those
        of ``by``, the figure's module, and ``modules``); prints the caption (the executed notebook records it)."""
        results = table if results is None else results
        caption = self.caption(results, note)
        print(f"{name}: {caption}")
        return savefig(fig, name, caption, table, self.figures_dir,
                       (self.fingerprint_line(results, _own(by, modules)),))


def _own(by, modules: tuple[str, ...]) -> tuple[str, ...]:
    """The modules a figure records beyond the core: its module's ``MODULES`` (``by``: e.g. ``paper.fig2``) and
    ``modules``; a ``by`` without ``MODULES`` is an error (it would record less than made the figure)."""
    if by is not None and not isinstance(getattr(by, "MODULES", None), tuple):
        raise ValueError(f"by must be a figure's module with MODULES (e.g. paper.fig2), got {by!r}")
    return tuple(modules) + (by.MODULES if by is not None else ())
