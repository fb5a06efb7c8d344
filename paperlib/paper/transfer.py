"""Carry a profile's results between machines, chosen by notebook (``make export`` / ``make import``).

:func:`specs_for` gives the run specs that the numbered notebooks run at a profile, built by the same calls the
notebooks make (``seeds=0``: the profile's number of networks); :func:`export_notebooks` packs their cache
entries into one archive with :func:`paperlib.runs.transfer.export_entries`, and ``import`` hands an archive to
:func:`paperlib.runs.transfer.import_entries`, which checks it whole before it writes anything. Command line::

    python -m paperlib.paper.transfer export --profile quick [--weights] [--results results] --out FILE [NOTEBOOK...]
    python -m paperlib.paper.transfer import FILE [--results results] [--replace-other-code]

Notebooks are named as the main job names them (:data:`paperlib.paper.notebooks.JOBS`: ``01``, ``02-vgg11``,
``02-resnet18``, ``03`` ... ``07``); none named means all of them. A Table I job of an architecture outside the
profile's ``archs`` runs nothing (the main job skips it), so it exports nothing. Notebook 05 (walking noise)
evaluates networks of the sweeps it runs first (the QAT networks of 01/02 and the fp32 noisy-trained networks of
03), and its noise-site curves are cached in those networks' entries: exported with them, a laptop renders it
without evaluating anything; export it with ``--weights`` when the laptop should evaluate new points. The
results folder defaults to the notebooks'
(``$PAPERLIB_RESULTS``, else ``<repo>/results``).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable

from ..runs.profile import Profile, load_profile
from ..runs.spec import RunSpec
from ..runs.transfer import ExportReport, add_import_arguments, export_entries, import_entries
from . import fig2, fig3, noise_kinds, table1, table2, variance_aware, walking_noise
from .notebooks import JOBS
from .session import project_root

#: The notebooks (main-job names) whose specs :func:`specs_for` knows, in the main job's order.
NOTEBOOKS: tuple[str, ...] = tuple(job.name for job in JOBS)
#: Architecture of the notebooks that take one as a parameter when the main job passes none (06: ``arch``).
DEFAULT_ARCH = "lenet5"


def _notebook_specs(profile: Profile, name: str) -> list[RunSpec]:
    """The specs notebook job ``name`` sweeps at ``profile``: its figure module's ``specs`` with ``seeds=0``."""
    job = next(j for j in JOBS if j.name == name)
    arch = job.parameters.get("arch")
    if arch is not None and arch not in profile.archs:  # the main job skips it (notebooks.skip_reason)
        return []
    if name == "01":
        return fig2.specs(profile)
    if name.startswith("02-"):
        return table1.specs(profile, arch=arch)
    if name == "03":
        return fig3.specs(profile)
    if name == "04":
        return table2.specs(profile)
    if name == "05":  # the sweeps that pick its networks; the noise-site curves live in the same entries
        return walking_noise.specs(profile)
    if name == "06":
        return variance_aware.specs(profile, arch=arch or DEFAULT_ARCH)
    if name == "07":
        return noise_kinds.specs(profile)
    if name == "08":  # trains and caches nothing: it runs the zoo's networks (paperlib.zoo)
        return []
    raise AssertionError(f"no specs known for notebook {name}")  # NOTEBOOKS and this function disagree


def specs_for(profile: Profile, notebooks: Iterable[str] | None = None) -> list[RunSpec]:
    """The run specs that ``notebooks`` (main-job names; None: all of :data:`NOTEBOOKS`) run at ``profile``.

    Each spec once, in the notebooks' order. The specs leave ``dataset`` and ``data_digest`` None, as the
    notebooks do; :func:`paperlib.runs.transfer.select_entries` matches them to entries on any data set.

    Raises:
        ValueError: an unknown notebook name (the message lists the known ones).
    """
    names = list(NOTEBOOKS if notebooks is None else notebooks)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook(s) {', '.join(map(repr, unknown))}; choose from {', '.join(NOTEBOOKS)}")
    out: list[RunSpec] = []
    seen: set[RunSpec] = set()
    for name in names:
        for spec in _notebook_specs(profile, name):
            if spec not in seen:
                seen.add(spec)
                out.append(spec)
    return out


def default_results_dir() -> str:
    """The notebooks' results folder: ``$PAPERLIB_RESULTS``, else ``<repo>/results`` (see ``Session``)."""
    return os.environ.get("PAPERLIB_RESULTS") or str(project_root() / "results")


def export_notebooks(profile: Profile | str, out_file: str | os.PathLike, notebooks: Iterable[str] | None = None,
                     results_dir: str | os.PathLike | None = None, weights: bool = False) -> ExportReport:
    """Pack the cache entries of ``notebooks`` at ``profile`` (:func:`specs_for`) into the archive ``out_file``.

    Args:
        profile: a :class:`Profile`, a profile name or a YAML file.
        out_file: the archive (``.tar.gz``; ``.tar``: uncompressed).
        notebooks: main-job names; None: every notebook.
        results_dir: the results folder; None: :func:`default_results_dir`.
        weights: also pack the weights (notebook 05 loads networks; the others need only records and curves).

    Returns:
        The :class:`~paperlib.runs.transfer.ExportReport`; its ``missing`` lists the specs not run yet.
    """
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    results = results_dir if results_dir is not None else default_results_dir()
    return export_entries(results, specs_for(prof, notebooks), out_file, weights=weights)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``export`` / ``import``; prints the report, or exits 1 with one line on error."""
    parser = argparse.ArgumentParser(prog="python -m paperlib.paper.transfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="pack the results of notebooks at a profile into one archive")
    exp.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                     help=f"main-job names ({', '.join(NOTEBOOKS)}; default: all)")
    exp.add_argument("--profile", default=os.environ.get("PAPERLIB_PROFILE") or "quick",
                     help="profile name or YAML file (default: $PAPERLIB_PROFILE, else quick)")
    exp.add_argument("--out", required=True, help="the archive (.tar.gz; .tar: uncompressed)")
    exp.add_argument("--weights", action="store_true", help="include the weights (default: records and curves)")
    imp = sub.add_parser("import", help="check an archive whole, then add its entries to the results folder")
    add_import_arguments(imp)
    for p in (exp, imp):
        p.add_argument("--results", default=None,
                       help="results folder (default: $PAPERLIB_RESULTS, else <repo>/results)")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            report: object = export_notebooks(args.profile, args.out, args.notebooks or None, args.results,
                                              weights=args.weights)
        else:
            results = args.results if args.results is not None else default_results_dir()
            report = import_entries(args.archive, results, replace_other_code=args.replace_other_code)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


__all__ = ["NOTEBOOKS", "default_results_dir", "export_notebooks", "specs_for"]

if __name__ == "__main__":
    sys.exit(main())
