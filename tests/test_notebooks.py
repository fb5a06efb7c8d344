"""Smoke runs of every numbered notebook (CI tier two): nbval in lax mode at the ``smoke`` profile.

nbval compares the stored outputs of the cells marked ``# NBVAL_CHECK_OUTPUT``
(model statistics, noisy-layer counts, the paper's tables) and requires every
other cell to run without error. Results and figures go to a temporary folder,
never to the committed ``figures/``.
"""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ARCHIVE, make_release

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def notebook_env(tmp_path_factory) -> dict[str, str]:
    """Environment of a smoke run: the JPEG archive when it is at hand, else a generated tiny data set;
    this interpreter's folder first on PATH, so a kernel named ``python3`` runs in this environment."""
    root = tmp_path_factory.mktemp("notebooks")
    data = Path(os.environ.get("PAPERLIB_TEST_ARCHIVE", ARCHIVE))
    if not data.is_file():
        make_release(root, per_batch=40, n_test=100)
        data = root / "release"
    return {"PAPERLIB_PROFILE": "smoke", "PAPERLIB_DATA": str(data), "PAPERLIB_RESULTS": str(root / "results"),
            "PAPERLIB_FIGURES": str(root / "figures"),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def test_every_notebook_is_tested():
    assert [p.name for p in NOTEBOOKS] == ["01_fig2_lenet_qat.ipynb", "02_tableI.ipynb", "03_fig3_noisy_training.ipynb",
                                           "04_tableII.ipynb", "05_walking_noise.ipynb", "06_variance_aware.ipynb",
                                           "07_noise_kinds.ipynb"]
    makefile = (NOTEBOOKS[0].parents[1] / "Makefile").read_text()
    assert all(f"notebooks/{p.name}" in makefile for p in NOTEBOOKS)  # make figures runs every one


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke(notebook, notebook_env):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", str(notebook)],
                          env={**os.environ, **notebook_env}, capture_output=True, text=True, cwd=notebook.parent)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    figures = Path(notebook_env["PAPERLIB_FIGURES"])
    written = sorted(figures.glob("*.csv"))
    assert written, f"{notebook.name} wrote no CSV to {figures}"
    for csv in written:
        caption = csv.read_text().splitlines()[0]
        assert caption.startswith("# profile smoke") and "paperlib rev" in caption, caption


def test_table_i_takes_resnet18_as_parameter(notebook_env, tmp_path):
    """papermill notebooks/02_tableI.ipynb out.ipynb -p arch resnet18"""
    papermill = pytest.importorskip("papermill")
    notebook = next(p for p in NOTEBOOKS if p.name == "02_tableI.ipynb")
    old = dict(os.environ)
    os.environ.update(notebook_env)
    try:
        papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), parameters={"arch": "resnet18"},
                                   cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(old)
    table = pd.read_csv(Path(notebook_env["PAPERLIB_FIGURES"]) / "table1_resnet18.csv", comment="#")
    assert "fp32" in set(table["variant"]) and "8-bit s=10" in set(table["variant"])  # ours and the paper's rows
