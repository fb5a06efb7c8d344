"""Refresh the stored outputs of the committed notebooks: execute them IN PLACE at the ``smoke`` profile.

    PYTHONPATH=. python tests/refresh_notebooks.py            # every numbered notebook
    PYTHONPATH=. python tests/refresh_notebooks.py 01 03      # those whose names start so

Each notebook runs as tests/test_notebooks.py runs it (``PAPERLIB_PROFILE=smoke`` on the generated, learnable
data set of :func:`conftest.make_learnable_release`; results, cache and figures in a temporary folder that is
removed afterwards; progress lines go to a file there, not into the outputs), so the outputs nbval checks
(``# NBVAL_CHECK_OUTPUT``) are the ones the tests will see.
The notebooks run with nbclient on their own ``parameters`` cell: the stored parameters stay the defaults and no
``injected-parameters`` cell is added. The notebooks share one result cache, in their order (03 and 04 reuse the
networks of 01 and 02). A notebook that fails is left unchanged and the script exits with status 1.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from paperlib.paper.notebooks import kernel_manager_class

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from conftest import make_learnable_release  # noqa: E402
from test_notebooks import _env  # noqa: E402

from paperlib.runs import progress  # noqa: E402


def notebooks(prefixes: list[str]) -> list[Path]:
    """The numbered notebooks whose file names start with one of ``prefixes`` (all when empty), in order."""
    found = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in found if not prefixes or any(p.name.startswith(x) for x in prefixes)]
    unknown = [x for x in prefixes if not any(p.name.startswith(x) for p in found)]
    if unknown:
        raise SystemExit(f"no notebook starts with {unknown}; the notebooks are {[p.stem for p in found]}")
    return chosen


def refresh(notebook: Path, env: dict[str, str], timeout: int = 1200) -> None:
    """Execute ``notebook`` in ``notebooks/`` with ``env`` set and write it back with its new outputs."""
    nb = nbformat.read(notebook, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       kernel_manager_class=kernel_manager_class(),
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    nbformat.write(nb, notebook)


def main(argv: list[str]) -> int:
    failed = []
    with tempfile.TemporaryDirectory(prefix="refresh-notebooks-") as tmp:
        root = Path(tmp)
        env = _env(root, make_learnable_release(root / "data"))
        env[progress.ENV] = str(root / "progress.log")  # progress lines go there, not into the stored outputs
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        for notebook in notebooks(argv):
            print(f"{notebook.name} ...", flush=True)
            try:
                refresh(notebook, {**env, "PAPERLIB_FIGURES": str(root / "figures" / notebook.stem)})
            except CellExecutionError as exc:
                failed.append(notebook.name)
                print(f"{notebook.name} failed, left unchanged: {str(exc).strip().splitlines()[-1]}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
