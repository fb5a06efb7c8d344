"""The main job's runner (`python -m paperlib.paper.notebooks`, what `make figures` calls) and its progress lines."""
import json
import re
from pathlib import Path

import pytest

from paperlib.paper import notebooks
from paperlib.runs import progress
from paperlib.runs.spec import RunSpec
from paperlib.runs.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_is_a_job_and_every_job_a_make_target():
    assert sorted({j.notebook for j in notebooks.JOBS}) == sorted(p.name for p in (ROOT / "notebooks").glob("0*.ipynb"))
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"\$\(NOTEBOOK\) (\S+)", makefile)
    assert sorted(targets) == sorted(j.name for j in notebooks.JOBS)


def test_an_unknown_job_is_one_clear_error(capsys):
    with pytest.raises(SystemExit):
        notebooks.main(["09"])
    assert "unknown job(s) 09; choose from 01, 02-vgg11" in capsys.readouterr().err


def test_a_profile_file_becomes_an_absolute_path_and_a_name_stays_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("epochs: 1\n")
    assert notebooks._profile_parameter("quick") == "quick"
    assert notebooks._profile_parameter("mine.yaml") == str(tmp_path / "mine.yaml")


def test_a_sweep_reports_cached_and_trained_runs_to_the_progress_file(tiny_root, tmp_path, monkeypatch):
    log = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(log))
    spec = RunSpec(arch="lenet5", epochs=1, sigmas=(0.1, 1.0), repeats=1, test_subset=20)
    for _ in range(2):
        run_sweep([spec], data_root=tiny_root, results_dir=tmp_path / "r", device="cpu", progress=False)
    lines = log.read_text().splitlines()
    assert lines[0] == "sweep of 1 run(s)"
    assert lines[1].startswith("run 1/1 lenet5 fp32 seed 0: trained (1 trained, 0 cached, 0 failed, 0 to go")
    assert lines[3].startswith("run 1/1 lenet5 fp32 seed 0: from the cache (0 trained, 1 cached")


def test_a_sweeps_time_left_is_the_mean_time_of_its_trained_runs_times_the_runs_to_go(tmp_path, monkeypatch):
    from paperlib.runs import sweep

    log = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(log))
    clock = iter([0.0, 600.0, 900.0])  # start, after a trained run, after a cached one
    monkeypatch.setattr(sweep.time, "perf_counter", lambda: next(clock))
    pace = sweep._Pace(4)
    spec = RunSpec(arch="lenet5")
    pace.done(spec, [{"key": "a", "trained": True}])
    pace.done(spec, [{"key": "b", "trained": False}])
    lines = log.read_text().splitlines()
    assert lines[1].endswith("(1 trained, 0 cached, 0 failed, 3 to go; about 30 min left)"), lines
    assert lines[2].endswith("(1 trained, 1 cached, 0 failed, 2 to go; about 30 min left)"), lines


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    progress.report("nothing")
    assert list(tmp_path.iterdir()) == []
    assert [progress.duration(s) for s in (42, 180, 9000)] == ["42 s", "3 min", "2.5 h"]


def test_the_executor_reaches_the_notebooks(monkeypatch, tmp_path):
    seen = []
    def run_job(job, profile, device, out, executor=""):
        seen.append(executor)
        return True

    monkeypatch.setattr(notebooks, "run_job", run_job)
    assert notebooks.main(["--profile", "smoke", "--executor", "local:2", "--out", str(tmp_path), "01"]) == 0
    assert seen == ["local:2"]


def test_every_job_names_a_notebook_that_exists():
    missing = [j.notebook for j in notebooks.JOBS if not (notebooks.NOTEBOOK_DIR / j.notebook).is_file()]
    assert not missing, f"jobs name notebooks missing from {notebooks.NOTEBOOK_DIR}: {missing}"


def test_a_table_i_architecture_outside_the_profile_is_skipped_with_the_reason():
    by_name = {j.name: j for j in notebooks.JOBS}
    why = notebooks.skip_reason(by_name["02-vgg11"], "quick")
    assert why is not None and "vgg11 is not in the profile's archs (lenet5, resnet18)" in why
    assert notebooks.skip_reason(by_name["02-resnet18"], "quick") is None
    assert notebooks.skip_reason(by_name["02-vgg11"], "smoke") is None
    assert notebooks.skip_reason(by_name["01"], "quick") is None


def _tiny_notebook(path: Path, *cells: str) -> None:
    """A notebook with the main job's parameters cell and ``cells``."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    params = nbformat.v4.new_code_cell('profile = "smoke"\ndevice = "cpu"\nexecutor = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)


def test_an_executed_notebook_names_no_folder_of_the_machine_that_ran_it(tmp_path, monkeypatch):
    _tiny_notebook(tmp_path / "fine.ipynb", "x = 1")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path)
    monkeypatch.chdir(tmp_path)
    job = notebooks.Job("99", "fine.ipynb", "fine_out.ipynb", "a notebook that runs", ())
    assert notebooks.run_job(job, "smoke", "cpu", tmp_path / "figures" / "notebooks") is True
    dest = tmp_path / "figures" / "notebooks" / "fine_out.ipynb"
    meta = json.loads(dest.read_text())["metadata"]["papermill"]
    assert (meta["input_path"], meta["output_path"]) == ("notebooks/fine.ipynb", "figures/notebooks/fine_out.ipynb")
    assert str(tmp_path) not in dest.read_text()


def test_a_notebook_cut_short_keeps_its_own_error_not_one_from_rewriting_its_metadata(tmp_path, monkeypatch, capsys):
    papermill = pytest.importorskip("papermill")

    def dies(input_path, output_path, **kwargs):
        Path(output_path).write_text("{half a notebook")
        raise RuntimeError("Kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", dies)
    job = notebooks.Job("99", "fine.ipynb", "fine_out.ipynb", "a notebook whose kernel dies", ())
    with pytest.raises(RuntimeError, match="Kernel died"):
        notebooks.run_job(job, "smoke", "cpu", tmp_path)
    assert "metadata was left as written" in capsys.readouterr().out


def test_a_failing_notebook_is_one_line_naming_the_cell_and_the_error_and_its_executed_notebook_stays(
        tmp_path, monkeypatch, capsys):
    _tiny_notebook(tmp_path / "broken.ipynb", "x = 1", 'raise ValueError("sigma must be >= 0,\\n got -1")')
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path)
    job = notebooks.Job("99", "broken.ipynb", "broken_out.ipynb", "a notebook that fails", ())
    assert notebooks.run_job(job, "smoke", "cpu", tmp_path / "out") is False
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAILED")]
    dest = tmp_path / "out" / "broken_out.ipynb"
    # cell 4 as the executed notebook numbers it: papermill adds the injected-parameters cell after ours
    assert lines == [f"FAILED 99 (broken.ipynb) in cell 4: ValueError: sigma must be >= 0, got -1; "
                     f"the executed notebook is at {dest}"], lines
    assert dest.is_file() and "ValueError" in dest.read_text()
