"""Smoke runs of every numbered notebook (CI tier two): nbval in lax mode at the ``smoke`` profile.

The notebooks run on a generated, learnable data set (:func:`conftest.make_learnable_release`: ten plain
colours plus pixel noise, on which LeNet-5 reaches 100% in one epoch), never on the real archive, so the
stored outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` can hold numbers of the run (rounded so they
cannot flip between machines) and nbval compares them. Every other cell must run without error. Each
notebook writes into a figures folder of its own, and the test checks the exact files it writes, their
captions, and that no run failed. A notebook whose runs fail must stop and write nothing.
"""
import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_learnable_release

from paperlib.paper.notebooks import JOBS

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.notebooks

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: What each notebook writes at its default parameters (its Session.save / save_table calls).
#: What each notebook writes at its default parameters (02: VGG-11), as the main job declares it.
WRITES = {Path(j.notebook).stem: list(j.writes) for j in JOBS if j.name != "02-resnet18"}
#: Columns of accuracies that must be finite wherever a CSV has them (a failed run leaves NaN there).
ACCURACY_COLUMNS = ("accuracy", "clean_accuracy", "peak_acc", "acc_mean")


def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _parameters(notebook: Path) -> list[str]:
    """The names the notebook's ``parameters`` cell assigns, in order."""
    cell = next(c for c in _cells(notebook) if "parameters" in c.get("metadata", {}).get("tags", []))
    return [t.id for node in ast.parse(_source(cell)).body for t in node.targets]


def _env(root: Path, data: Path) -> dict[str, str]:
    """A smoke run's environment without a figures folder; this interpreter's folder first on PATH (kernel python3)."""
    return {"PAPERLIB_PROFILE": "smoke", "PAPERLIB_DATA": str(data), "PAPERLIB_RESULTS": str(root / "results"),
            "PAPERLIB_CACHE": str(root / "cache"),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


@pytest.fixture(scope="session")
def notebook_env(tmp_path_factory) -> dict[str, str]:
    """Environment of the smoke runs: the generated, learnable data set and one result cache for all notebooks."""
    root = tmp_path_factory.mktemp("notebooks")
    return _env(root, make_learnable_release(root / "data"))


def check_outputs(figures: Path, expected: list[str]) -> None:
    """Exactly the files ``expected`` in ``figures``; each CSV with a data set and >= 1 noise draw in its caption,
    no failed run and finite accuracies."""
    written = sorted(p.name for p in figures.iterdir()) if figures.is_dir() else []
    assert written == sorted(expected), f"{figures} holds {written}, expected {sorted(expected)}"
    for name in expected:
        if not name.endswith(".csv"):
            continue
        caption = (figures / name).read_text().splitlines()[0]
        assert caption.startswith("# profile smoke") and "paperlib rev" in caption, f"{name}: {caption}"
        assert "CIFAR-10" in caption, f"{name}: the caption names no data set: {caption}"
        draws = [int(n) for n in re.findall(r"(\d+) noise draw", caption)]
        assert draws and min(draws) >= 1, f"{name}: the caption gives no noise draw per sigma: {caption}"
        table = pd.read_csv(figures / name, comment="#")
        if "error" in table:
            assert table["error"].isna().all(), f"{name} holds failed runs: {table['error'].dropna().iloc[0]}"
        if "failed" in table:
            assert (table["failed"] == 0).all(), f"{name} counts failed runs: {table['failed'].tolist()}"
        for col in ACCURACY_COLUMNS:
            if col in table:
                assert np.isfinite(table[col].to_numpy(float)).all(), f"{name}: column {col} is not finite everywhere"


def test_every_notebook_is_tested():
    assert [p.stem for p in NOTEBOOKS] == list(WRITES)
    main_job = (REPO / "Makefile").read_text()
    main_job += (REPO / "paperlib" / "paper" / "notebooks.py").read_text()
    missing = [p.name for p in NOTEBOOKS if p.name not in main_job]
    assert not missing, f"make figures does not run {missing}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_used_and_failures_are_a_parameter(notebook):
    params = _parameters(notebook)
    assert "allow_failures" in params, f"{notebook.name}: the parameters cell has no allow_failures"
    code = "\n".join(_source(c) for c in _cells(notebook)
                     if c["cell_type"] == "code" and "parameters" not in c.get("metadata", {}).get("tags", []))
    read = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    unused = [p for p in params if p not in read]
    assert not unused, f"{notebook.name}: parameter(s) {unused} are never used"
    assert re.search(r"from_parameters\([^)]*\ballow_failures\b", code), f"{notebook.name}: allow_failures not passed"


#: The setup cell of every numbered notebook: the first code cell after ``parameters``, exactly these lines.
SETUP = [
    "from paperlib import paper",
    "session = paper.Session.from_parameters(profile, device, data_root, results_dir, figures_dir, executor, "
    "allow_failures)",
]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_are_clean_and_one_checked_output_follows_the_runs(notebook):
    cells = [c for c in _cells(notebook) if c["cell_type"] == "code"]
    for c in cells:
        for out in c.get("outputs", []):
            assert out.get("name") != "stderr", f"{notebook.name}: stored stderr {''.join(out['text'])[:200]!r}"
            data = out.get("data", {})
            text = "".join(out.get("text", "")) + "".join(data.get("text/plain", "")) + "".join(
                data.get("text/markdown", ""))
            assert not re.search(r"(/work/|/tmp/|/home/|[A-Z]:\\)", text), f"{notebook.name}: absolute path in {text!r}"
            assert not re.search(r"Warning|warn\(", text), f"{notebook.name}: a stored warning {text[:300]!r}"
    after = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])) + 1
    setup = [line.rstrip() for line in _source(cells[after]).strip().splitlines()]
    expected = SETUP if "seeds = " not in _source(cells[after - 1]) else [  # seeds live on the session
        SETUP[0], SETUP[1].replace("allow_failures)", "allow_failures, seeds)")]
    assert setup == expected, f"{notebook.name}: the setup cell after parameters is {setup}, expected {expected}"
    imports = [line.strip() for c in cells for line in _source(c).splitlines()
               if line.strip().startswith(("import ", "from "))]
    assert imports == [SETUP[0]], f"{notebook.name} imports {imports}; the library shows and says the rest"
    first_run = next(i for i, c in enumerate(cells)  # a sweep, or a library call on the session that runs one
                     if re.search(r"session\.(sweep|run)\(|\(session\b", _source(c)))
    checked = [i for i, c in enumerate(cells) if "# NBVAL_CHECK_OUTPUT" in _source(c) and c.get("outputs")]
    assert any(i >= first_run for i in checked), f"{notebook.name}: no checked output depends on the runs"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke(notebook, notebook_env, tmp_path):
    figures = tmp_path / "figures"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", str(notebook)],
                          env={**os.environ, **notebook_env, "PAPERLIB_FIGURES": str(figures)},
                          capture_output=True, text=True, cwd=notebook.parent)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    check_outputs(figures, WRITES[notebook.stem])


def test_table_i_takes_resnet18_as_parameter(notebook_env, tmp_path):
    """papermill notebooks/02_tableI.ipynb out.ipynb -p arch resnet18"""
    papermill = pytest.importorskip("papermill")
    notebook = REPO / "notebooks" / "02_tableI.ipynb"
    figures = tmp_path / "figures"
    old = dict(os.environ)
    os.environ.update({**notebook_env, "PAPERLIB_FIGURES": str(figures)})
    try:
        papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), parameters={"arch": "resnet18"},
                                   cwd=str(notebook.parent), kernel_name="python3", progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(old)
    check_outputs(figures, ["table1_resnet18.csv", "table1_resnet18_curves.csv", "table1_resnet18_curves.pdf",
                            "table1_resnet18_curves.png"])
    table = pd.read_csv(figures / "table1_resnet18.csv", comment="#").set_index("variant")
    ours = ["fp32", "8-bit dynamic", "8-bit s=1"]  # the smoke profile's variants
    assert set(ours) <= set(table.index) and "8-bit s=10" in table.index  # ours and the paper's rows
    measured = pd.to_numeric(table.loc[ours, "peak acc. (%)"].str.split().str[0], errors="coerce")
    assert measured.between(0, 100).all(), f"our rows hold no measured accuracy: {table.loc[ours].to_dict()}"


#: Loaded by Python at start-up (PYTHONPATH): every training run raises, as if the training code were broken.
FAILING_TRAINING = textwrap.dedent('''
    import os
    if os.environ.get("PAPERLIB_TEST_BREAK_TRAINING"):
        import paperlib.runs.experiment, paperlib.training

        def train(*args, **kwargs):
            raise RuntimeError("training broken on purpose by the test")

        paperlib.training.train = paperlib.runs.experiment.train = train
''')


def test_a_notebook_whose_runs_fail_stops_and_writes_nothing(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(FAILING_TRAINING)
    figures = tmp_path / "figures"
    data = make_learnable_release(tmp_path / "data", n_train=3000, n_test=100)  # the smoke profile's subsets
    env = {**os.environ, **_env(tmp_path, data), "PAPERLIB_FIGURES": str(figures), "PAPERLIB_TEST_BREAK_TRAINING": "1",
           "PYTHONPATH": os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")])}
    notebook = REPO / "notebooks" / "01_fig2_lenet_qat.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", "--cwd", str(notebook.parent), str(notebook),
                           str(tmp_path / "out.ipynb")], env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"papermill succeeded although every run failed:\n{output[-3000:]}"
    assert re.search(r"RuntimeError: \d+ of \d+ run\(s\) failed; first error: RuntimeError: training broken on purpose",
                     output), output[-3000:]
    assert "allow_failures" in output, output[-3000:]
    assert not figures.exists() or not any(figures.iterdir()), f"{sorted(figures.iterdir())} written"


def test_figures_default_to_a_folder_per_profile(monkeypatch, tmp_path):
    from paperlib.paper import Session

    monkeypatch.chdir(REPO / "notebooks")
    monkeypatch.delenv("PAPERLIB_FIGURES", raising=False)
    assert Session.from_parameters("smoke").figures_dir == REPO / "figures" / "smoke"
    assert Session.from_parameters("quick").figures_dir == REPO / "figures" / "quick"
    assert Session.from_parameters("smoke", figures_dir=str(tmp_path)).figures_dir == tmp_path
    monkeypatch.setenv("PAPERLIB_FIGURES", str(tmp_path / "env"))
    assert Session.from_parameters("smoke").figures_dir == tmp_path / "env"


def test_a_sweep_with_failed_runs_raises_unless_failures_are_allowed(monkeypatch, tmp_path):
    import paperlib.runs.experiment
    from paperlib import load_profile
    from paperlib.paper import Session

    def train(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(paperlib.runs.experiment, "train", train)
    data = make_learnable_release(tmp_path / "data", n_train=50, n_test=20)
    specs = [load_profile("smoke").spec("lenet5", train_subset=None, test_subset=None, seed=s) for s in (0, 1)]
    strict = Session.from_parameters("smoke", "cpu", str(data), str(tmp_path / "results"), str(tmp_path / "figures"))
    with pytest.raises(RuntimeError, match=r"^2 of 2 run\(s\) failed; first error: RuntimeError: broken on purpose\. "
                                           r".*allow_failures = True"):
        strict.sweep(specs)
    lenient = Session.from_parameters("smoke", "cpu", str(data), str(tmp_path / "results"), str(tmp_path / "figures"),
                                    allow_failures=True)
    with pytest.warns(UserWarning, match=r"2 of 2 run\(s\) failed"):
        df = lenient.sweep(specs)
    assert df.attrs["failed_runs"] == 2 and df["accuracy"].isna().all()
    assert "2 run(s) failed and are left out" in lenient.caption(df)  # the figure says so
    with pytest.raises(ValueError, match="allow_failures must be True or False"):
        Session.from_parameters("smoke", allow_failures="yes")
