"""The main job: run the numbered notebooks through papermill, with progress in the terminal.

``make figures`` (and each per-notebook target of the Makefile) calls::

    python -m paperlib.paper.notebooks --profile quick --out results/notebooks/quick 01 02-vgg11 ...

For each notebook it prints what it runs, then one line per finished run of
the notebook's sweeps (cached or trained, how many are left, an estimate of
the time left; see :mod:`paperlib.progress`), then the wall time. A failing
notebook is named with its cell and error in one line, and the executed
notebook stays where the line says. Figures go where the notebooks put them
(``figures/<profile>/`` by default).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..device import resolve_device
from ..runs import progress
from ..runs.profile import load_profile

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class Job:
    """One notebook run of the main job."""

    name: str
    """the job's name on the command line and in the Makefile (``01``, ``02-vgg11`` ...)"""
    notebook: str
    """the notebook's file name in ``notebooks/``"""
    output: str
    """file name of the executed copy"""
    what: str
    """what it reproduces, for the terminal"""
    writes: tuple[str, ...] = ()
    """the figure files it writes to ``figures/<profile>/`` (PNG, PDF and CSV; checked by the notebook tests)"""
    parameters: dict[str, Any] = field(default_factory=dict)
    """papermill parameters beside profile and device"""


#: Every notebook run of ``make figures``, in an order that respects their dependencies (see the Makefile).
def _figure(*names: str) -> tuple[str, ...]:
    """A figure's three files (``name`` -> PNG, PDF, CSV); a ``.csv`` name is a table alone."""
    files = [(n,) if n.endswith(".csv") else (f"{n}.csv", f"{n}.pdf", f"{n}.png") for n in names]
    return tuple(sorted(f for group in files for f in group))


JOBS: tuple[Job, ...] = (
    Job("01", "01_fig2_lenet_qat.ipynb", "01_fig2_lenet_qat.ipynb",
        "Fig. 2: LeNet-5, 4/8-bit QAT, dynamic vs constant scaling",
        _figure("fig2_lenet5_qat", "fig2_lenet5_summary.csv")),
    Job("02-vgg11", "02_tableI.ipynb", "02_tableI_vgg11.ipynb", "Table I, VGG-11",
        _figure("table1_vgg11.csv", "table1_vgg11_curves"), {"arch": "vgg11"}),
    Job("02-resnet18", "02_tableI.ipynb", "02_tableI_resnet18.ipynb", "Table I, ResNet-18",
        _figure("table1_resnet18.csv", "table1_resnet18_curves"), {"arch": "resnet18"}),
    Job("03", "03_fig3_noisy_training.ipynb", "03_fig3_noisy_training.ipynb", "Fig. 3: noisy training",
        _figure("fig3_noisy_training", "fig3_summary.csv")),
    Job("04", "04_tableII.ipynb", "04_tableII.ipynb", "Table II: the architectures compared",
        _figure("table2.csv", "table2_midpoints")),
    Job("05", "05_walking_noise.ipynb", "05_walking_noise.ipynb", "beyond the paper: walking noise",
        _figure("walking_noise", "walking_noise_extremes.csv")),
    Job("06", "06_variance_aware.ipynb", "06_variance_aware.ipynb", "beyond the paper: variance-aware noisy training",
        _figure("variance_aware_lenet5", "variance_aware_lenet5_fits.csv")),
    Job("07", "07_noise_kinds.ipynb", "07_noise_kinds.ipynb", "beyond the paper: noise kinds",
        _figure("noise_kinds_lenet5", "noise_kinds_lenet5_summary.csv")),
    Job("08", "08_pcm_device.ipynb", "08_pcm_device.ipynb", "beyond the paper: the zoo on a PCM device model",
        _figure("pcm_lenet5", "pcm_lenet5_ranking.csv")),
)
_BY_NAME = {j.name: j for j in JOBS}


def _profile_parameter(profile: str) -> str:
    """A profile name stays a name; the path of a YAML file becomes absolute (papermill runs in notebooks/)."""
    path = Path(profile).expanduser()
    return str(path.resolve()) if path.suffix in (".yaml", ".yml") or path.is_file() else profile


def _tail(path: Path, stop: threading.Event) -> None:
    """Print the lines appended to ``path`` until ``stop`` is set (and then the rest)."""
    pos = 0
    while True:
        done = stop.wait(0.5)
        try:
            with open(path, encoding="utf-8") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
        except OSError:
            chunk = ""
        for line in chunk.splitlines():
            print(f"   {line}", flush=True)
        if done:
            return


def skip_reason(job: Job, profile: str) -> str | None:
    """Why ``job`` does not run at ``profile`` (a Table I architecture outside the profile's ``archs``); else None."""
    from ..runs.profile import load_profile

    arch = job.parameters.get("arch")
    archs = load_profile(profile).archs
    if arch is not None and arch not in archs:
        return f"{arch} is not in the profile's archs ({', '.join(archs)}); see the profile's comment for why"
    return None


def kernel_manager_class():
    """The kernel manager of the main job: CurveZMQ-encrypted kernel sockets where pyzmq supports them.

    ipykernel >= 7.3 warns on every start of a kernel whose TCP sockets are not encrypted; the kernel runs on
    this machine, so encrypting them (jupyter_client's ``transport_encryption = "auto"``: when the kernelspec
    declares support) removes the warning from the terminal at no cost. Without CurveZMQ: the default manager.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    if not zmq.has("curve") or "transport_encryption" not in AsyncKernelManager.class_trait_names():
        return AsyncKernelManager

    class EncryptedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport_encryption = "auto"

    return EncryptedKernelManager


def _drop_machine_paths(dest: Path, job: Job) -> None:
    """Replace papermill's absolute input and output paths in ``dest``'s metadata by paths in the repository.

    An executed notebook is committed beside its figures and read on other machines: it names the notebook it ran
    (``notebooks/<file>``) and itself relative to the working folder, never this machine's folders.
    """
    import nbformat

    nb = nbformat.read(dest, as_version=4)
    meta = nb.metadata.get("papermill")
    if meta is None:
        return
    meta["input_path"] = f"notebooks/{job.notebook}"
    try:
        meta["output_path"] = str(dest.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:  # written outside the working folder
        meta["output_path"] = dest.name
    write_atomic(dest, lambda f: f.write(nbformat.writes(nb).encode()))


def run_job(job: Job, profile: str, device: str, out: Path, executor: str = "") -> bool:
    """Run one notebook; print its progress; return whether it succeeded.

    ``executor`` is the notebooks' parameter of that name: ``""`` runs in the
    kernel, ``"local"`` / ``"local:N"`` on a Dask LocalCluster (every core: each run
    uses one thread, docs/protocol.md §12), else a Dask scheduler address.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out.mkdir(parents=True, exist_ok=True)
    dest = out / job.output
    params = {"profile": _profile_parameter(profile), "device": device, "executor": executor, **job.parameters}
    print(f"== {job.name}: {job.what} (profile {profile}) -> {dest}", flush=True)
    log = Path(tempfile.mkstemp(prefix="paperlib-progress-", suffix=".log")[1])
    stop = threading.Event()
    tail = threading.Thread(target=_tail, args=(log, stop), daemon=True)
    saved = os.environ.get(progress.ENV)
    os.environ[progress.ENV] = str(log)  # the kernel inherits it
    t0 = time.perf_counter()
    tail.start()
    try:
        papermill.execute_notebook(
            str(NOTEBOOK_DIR / job.notebook),
            str(dest),
            parameters=params,
            cwd=str(NOTEBOOK_DIR),
            kernel_name="python3",
            kernel_manager_class=kernel_manager_class(),
            progress_bar=False,
        )
    except PapermillExecutionError as exc:
        stop.set()
        tail.join()
        error = " ".join(f"{exc.ename}: {exc.evalue}".split())
        print(
            f"FAILED {job.name} ({job.notebook}) in cell {exc.exec_count or exc.cell_index}: {error[:300]}; "
            f"the executed notebook is at {dest}",
            flush=True,
        )
        return False
    finally:
        stop.set()
        tail.join()
        log.unlink(missing_ok=True)
        if dest.is_file():
            try:
                _drop_machine_paths(dest, job)
            except (OSError, ValueError) as exc:  # a notebook cut short by a dead kernel: keep the first error
                print(f"   (its papermill metadata was left as written: {exc})", flush=True)
        if saved is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = saved
    print(f"   done in {progress.duration(time.perf_counter() - t0)}", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m paperlib.paper.notebooks [--profile P] [--device D] [--out DIR] JOB ...``."""
    parser = argparse.ArgumentParser(prog="python -m paperlib.paper.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "jobs", nargs="*", metavar="JOB", help=f"notebooks to run: {', '.join(_BY_NAME)} or all (default: all)"
    )
    parser.add_argument("--profile", default="quick", help="smoke, quick, paper, ... or the path of a YAML profile")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--out", default=None, help="folder for the executed notebooks (default results/notebooks/<profile>)"
    )
    parser.add_argument("--executor", default="",
                        help="'' (in the notebook's kernel), local, local:N (a Dask LocalCluster) or a scheduler "
                        "address")
    parser.add_argument("--list", action="store_true", help="list the jobs and exit")
    args = parser.parse_args(argv)
    if args.list:
        for j in JOBS:
            print(f"{j.name:12} {j.notebook:32} {j.what}")
        return 0
    names = list(_BY_NAME) if not args.jobs or args.jobs == ["all"] else args.jobs
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        parser.error(f"unknown job(s) {', '.join(unknown)}; choose from {', '.join(_BY_NAME)} or all")
    try:  # a device this machine lacks, or a bad profile: one line now, not a failed notebook later
        resolve_device(args.device)
        load_profile(args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    out = Path(args.out) if args.out else Path("results") / "notebooks" / Path(args.profile).stem
    t0 = time.perf_counter()
    for name in names:
        why = skip_reason(_BY_NAME[name], args.profile)
        if why:
            print(f"== {name}: {_BY_NAME[name].what}: not run at profile {args.profile}: {why}", flush=True)
            continue
        if not run_job(_BY_NAME[name], args.profile, args.device, out, args.executor):
            return 1
    if len(names) > 1:
        print(
            f"== {len(names)} notebooks in {progress.duration(time.perf_counter() - t0)}; executed notebooks in {out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
