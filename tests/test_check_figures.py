"""`make check-figures`: a figure made by other code fails, naming the module; a figure of this code passes."""
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from paperlib.paper.plots import save_table
from paperlib.runs import check_figures as cf
from paperlib.runs.fingerprint import code_fingerprint


def _figure(folder, results_codes, name="fig"):
    table = pd.DataFrame({"variant": ["fp32"], "sigma_mid": [0.3]})
    return save_table(table, folder / f"{name}.csv", "profile smoke · paperlib rev abc, code 123",
                      (cf.fingerprint_line(results_codes),))


def test_a_figure_made_by_this_code_passes(tmp_path):
    _figure(tmp_path, [code_fingerprint()["code"]])
    assert cf.check(tmp_path) == []
    assert cf.main([str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "fig.csv", comment="#")  # the comment lines do not get in the table's way
    assert list(table.columns) == ["variant", "sigma_mid"]


def test_a_figure_made_by_other_code_fails_naming_the_module(tmp_path, capsys):
    path = _figure(tmp_path, [code_fingerprint()["code"]])
    lines = path.read_text().splitlines()
    saved = json.loads(lines[1].removeprefix(cf.PREFIX))
    saved["modules"]["training"] = "0" * 16  # as if training.py had other code when the figure was made
    lines[1] = cf.PREFIX + json.dumps(saved)
    path.write_text("\n".join(lines) + "\n")
    problems = cf.check(tmp_path)
    assert len(problems) == 1 and "fig.csv" in problems[0] and "training" in problems[0]
    assert cf.main([str(tmp_path)]) == 1
    assert "training" in capsys.readouterr().out


def test_a_figure_s_own_modules_are_checked_too(tmp_path, monkeypatch):
    """A figure that depends on a module beyond CORE_MODULES (the PCM figure on ``pcm``) records it; another
    figure does not, so changing that module stales only the first."""
    code = code_fingerprint()["code"]
    line = cf.fingerprint_line([code], ("pcm",))
    own = save_table(pd.DataFrame({"a": [1]}), tmp_path / "own.csv", "caption", (line,))
    _figure(tmp_path, [code], name="plain")
    assert "pcm" in cf.read_fingerprint(own)["modules"]
    assert "pcm" not in cf.read_fingerprint(tmp_path / "plain.csv")["modules"]
    assert cf.check(tmp_path) == []
    real = cf.compute_fingerprint

    def edited(modules, *args, **kwargs):  # as if pcm.py had been edited since the figure was made
        fp = real(modules, *args, **kwargs)
        if "pcm" in fp["modules"]:
            fp["modules"]["pcm"] = "0" * 16
        return fp

    monkeypatch.setattr(cf, "compute_fingerprint", edited)
    (problem,) = cf.check(tmp_path)
    assert "own.csv" in problem and "pcm" in problem


def test_a_figure_made_by_a_module_that_is_gone_or_without_the_core_fails(tmp_path):
    """A figure recorded ``paper/beyond`` (split into one module per notebook since): stale, naming it; a figure
    whose fingerprint lacks a core module (``midpoint``) records less than made it: stale too. A figure of
    ``paper/fig2``'s modules is not staled by a change to another figure's module (``paper/walking_noise``)."""
    code = code_fingerprint()["code"]
    for name, drop, add in (("gone", None, "paper/beyond"), ("partial", "midpoint", None)):
        path = _figure(tmp_path, [code], name=name)
        lines = path.read_text().splitlines()
        saved = json.loads(lines[1].removeprefix(cf.PREFIX))
        if add:
            saved["modules"][add] = "0123456789abcdef"
        if drop:
            del saved["modules"][drop]
        lines[1] = cf.PREFIX + json.dumps(saved)
        path.write_text("\n".join(lines) + "\n")
    problems = cf.check(tmp_path)
    assert len(problems) == 2
    assert "gone.csv" in problems[0] and "paper/beyond" in problems[0]
    assert "partial.csv" in problems[1] and "midpoint" in problems[1]
    from paperlib.paper import fig2

    line = cf.fingerprint_line([code], fig2.MODULES)
    other = tmp_path / "fig2" / "fig2.csv"
    other.parent.mkdir()
    save_table(pd.DataFrame({"a": [1]}), other, "caption", (line,))
    assert cf.check(other.parent) == [] and "paper/walking_noise" not in cf.read_fingerprint(other)["modules"]


def test_a_figure_of_cached_results_from_other_code_fails(tmp_path):
    _figure(tmp_path, ["feedfacefeedface"])
    (problem,) = cf.check(tmp_path)
    assert "feedfacefeedface" in problem and "other code" in problem


def test_a_figure_of_networks_trained_in_packs_by_this_code_passes(tmp_path):
    packed = code_fingerprint(packed=True)["code"]  # a pack-made result's own code hash (docs/protocol.md §12)
    _figure(tmp_path, [code_fingerprint()["code"], packed])
    _notebook(tmp_path, f"paperlib revs abc (code {packed}), def (code {code_fingerprint()['code']})")
    assert packed != code_fingerprint()["code"] and cf.check(tmp_path) == []
    _figure(tmp_path, [packed, "feedfacefeedface"], name="old")
    (problem,) = cf.check(tmp_path)
    assert "old.csv" in problem and "feedfacefeedface" in problem and packed in problem  # names both current codes


@pytest.mark.parametrize("content", ["# profile smoke\nvariant\nfp32\n", "variant\nfp32\n"])
def test_a_figure_without_a_fingerprint_fails(tmp_path, content):
    (tmp_path / "old.csv").write_text(content)
    (problem,) = cf.check(tmp_path)
    assert "records no code fingerprint" in problem


def test_an_image_without_its_csv_fails(tmp_path):
    _figure(tmp_path, [code_fingerprint()["code"]], name="fig")
    (tmp_path / "fig.png").write_bytes(b"png")
    (tmp_path / "lonely.pdf").write_bytes(b"pdf")
    (problem,) = cf.check(tmp_path)
    assert "lonely.pdf" in problem


def test_a_missing_folder_is_one_clear_problem(tmp_path):
    assert cf.check(tmp_path / "nope") == [f"{tmp_path / 'nope'} is not a folder of figures"]


def test_every_module_a_figure_depends_on_exists():
    """A renamed or moved module would silently drop out of the fingerprint (missing files are skipped)."""
    from paperlib.paper import FIGURES
    from paperlib.runs.fingerprint import PACKAGE_DIR

    named = {m for fig in FIGURES.values() for m in fig.MODULES} | set(cf.CORE_MODULES)
    missing = [m for m in sorted(named) if not (PACKAGE_DIR / f"{m}.py").is_file()]
    assert not missing, f"CORE_MODULES or a figure's MODULES names modules that do not exist: {missing}"


def _notebook(folder, *texts, name="01_fig.ipynb"):
    """An executed notebook whose stored outputs are ``texts`` (stream outputs, one per code cell)."""
    cells = [{"cell_type": "code", "source": "session.save(fig, 'fig', df)", "metadata": {}, "execution_count": i,
              "outputs": [{"output_type": "stream", "name": "stdout", "text": [t]}]} for i, t in enumerate(texts)]
    path = folder / "notebooks" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_an_executed_notebook_of_this_code_passes_and_of_other_code_fails(tmp_path):
    code = code_fingerprint()["code"]
    _notebook(tmp_path, f"profile quick · LeNet-5: 8 epoch(s) · paperlib rev abc1234, code {code}\n")
    _notebook(tmp_path, f"profile quick · paperlib revs abc (code {code}), def (code {code})", name="02.ipynb")
    assert cf.check(tmp_path) == []
    _notebook(tmp_path, f"paperlib revs abc (code {code}), def (code feedfacefeedface)", name="03_old.ipynb")
    (problem,) = cf.check(tmp_path)
    assert "03_old.ipynb" in problem and "feedfacefeedface" in problem and "other code" in problem


def test_an_executed_notebook_that_names_a_folder_of_the_machine_that_ran_it_fails(tmp_path):
    code = code_fingerprint()["code"]
    path = _notebook(tmp_path, f"profile quick · paperlib rev abc1234, code {code}\n")
    nb = json.loads(path.read_text())
    nb["metadata"]["papermill"] = {"input_path": "notebooks/01_fig.ipynb", "output_path": "figures/x/01_fig.ipynb"}
    path.write_text(json.dumps(nb))
    assert cf.check(tmp_path) == []
    nb["metadata"]["papermill"]["input_path"] = "/home/me/paperlib/notebooks/01_fig.ipynb"
    path.write_text(json.dumps(nb))
    (problem,) = cf.check(tmp_path)
    assert "01_fig.ipynb" in problem and "input_path /home/me/paperlib/notebooks/01_fig.ipynb" in problem


def test_an_executed_notebook_that_names_no_results_code_fails(tmp_path):
    _notebook(tmp_path, "sweep: 100% 12/12 runs\n")
    (problem,) = cf.check(tmp_path)
    assert "01_fig.ipynb" in problem and "name no code" in problem


def test_every_figure_the_readme_and_docs_show_is_committed_and_checked():
    """The README's and docs' images and figure links point at files in ``figures/``, and at a folder that
    ``make check-figures`` checks (a committed profile), so what a reader sees is what the current code produces."""
    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    committed = re.search(r"^COMMITTED_FIGURES := (.+)$", makefile, re.M).group(1).split()
    shown = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", doc.read_text()):
            path = (doc.parent / target).resolve()
            if (root / "figures") in path.parents:
                shown.append(path)
                assert path.is_file(), f"{doc.name} links {target}, which is not in the repository"
                assert any(root / c in path.parents for c in committed), \
                    f"{doc.name} shows {target}, outside the checked folders {committed}"
    assert any(p.suffix == ".png" for p in shown), "the README and docs show no figure at all"
