"""The paper layer by figure: one module per notebook, one shape, each figure recording every module it is made of,
no module over about 400 lines (issue: the paper layer sorted by figure, not by kind)."""
import ast
import importlib
import json
from pathlib import Path

import pytest

from paperlib.paper import FIGURES, epochs_curve
from paperlib.runs.check_figures import CORE_MODULES

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "paperlib" / "paper"
#: Toolbox and engine modules a figure may import without recording them: they choose what runs (specs, profiles,
#: the cache) or where (devices), never how a number is computed from the results; or they are core already.
NOT_NUMBERS = {"runs/experiment", "runs/profile", "runs/spec", "runs/progress", "runs/__init__", "device", "guards",
               "atomic", "paper/session", "paper/__init__"}


def _imports(name: str) -> set[str]:
    """The ``paperlib`` modules ``paperlib/<name>.py`` imports, as paths below ``paperlib/`` (``paper/plots``)."""
    path = ROOT / "paperlib" / f"{name}.py"
    package = Path(name).parent.parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - (node.level - 1)] if node.level > 1 else package)
            parts = base + (node.module.split(".") if node.module else [])
            if node.module:
                out.add("/".join(parts))
            else:
                out |= {"/".join(parts + [a.name]) for a in node.names}
    resolved = set()
    for m in out:
        if (ROOT / "paperlib" / f"{m}.py").is_file():
            resolved.add(m)
        elif (ROOT / "paperlib" / m / "__init__.py").is_file():
            resolved.add(f"{m}/__init__")
    return resolved


def _closure(name: str) -> set[str]:
    """``name`` and every module it imports, transitively within the paper layer."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [i for i in _imports(m) if i.startswith("paper/") and i not in NOT_NUMBERS]
    return seen | {i for m in seen for i in _imports(m)}


@pytest.mark.parametrize("notebook", [*sorted(FIGURES), "epochs curve"])
def test_each_figure_records_every_module_it_is_made_of(notebook):
    module = FIGURES[notebook] if notebook in FIGURES else epochs_curve
    name = module.__name__.removeprefix("paperlib.").replace(".", "/")
    needed = _closure(name) - NOT_NUMBERS - set(CORE_MODULES)
    assert name in module.MODULES
    missing = sorted(needed - set(module.MODULES))
    assert not missing, f"{name}.MODULES lacks {missing}: a change there would not stale its figures"


def test_the_module_check_can_fail():
    """A figure module that imports a module it does not record fails the check above."""
    assert "paper/rules" in _closure("paper/noise_kinds")  # through paper/prose: found missing once
    assert "paper/walking_noise" not in _closure("paper/fig2")
    assert "walking" in _closure("paper/walking_noise") and "model_size" in _closure("paper/table2")


@pytest.mark.parametrize("notebook", [n for n in sorted(FIGURES) if n != "08"])
def test_every_figure_module_has_one_shape(notebook):
    """specs(profile, seeds, ...) -> the networks (``session.run`` sweeps them), figure(...), what_it_shows(...)."""
    import inspect

    module = FIGURES[notebook]
    for fn in ("specs", "figure", "what_it_shows"):
        assert callable(getattr(module, fn, None)), f"{module.__name__} has no {fn}"
    params = list(inspect.signature(module.specs).parameters)
    assert params[:2] == ["profile", "seeds"], f"{module.__name__}.specs{params}"


def test_no_paper_layer_module_is_over_about_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PAPER.glob("*.py")}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_every_notebook_runs_its_figure_module_and_records_it():
    """Each notebook sweeps through ``session.run(paper.<module>)`` and saves with ``by=paper.<module>``; seeds go
    to the session, never to a builder."""
    for notebook, module in FIGURES.items():
        path = next((ROOT / "notebooks").glob(f"{notebook}_*.ipynb"))
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "code")
        short = module.__name__.removeprefix("paperlib.")
        if notebook != "08":
            assert f"session.run({short}" in code, path.name
            assert "seeds)" in code.split("from_parameters(", 1)[1].split("\n\n")[0] or "seeds)\n" in code, path.name
        saves = code.count("session.save")
        assert saves and code.count(f"by={short}") == saves, f"{path.name}: a save without by={short}"


def test_the_figure_modules_import():
    for module in FIGURES.values():
        importlib.reload(module)


def test_the_curves_are_the_mean_over_networks_with_a_band_of_their_spread():
    """Two networks at 40% and 60% (each the mean of its draws): seaborn draws 50% with a band of one standard
    deviation over the networks (14.1 points), not over the draws; one network: the band of its draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from paperlib.paper import plots

    rows = [{"arch": "lenet5", "bits": None, "scale": None, "sigma_train": 0.0, "seed": seed, "key": f"k{seed}",
             "sigma": sigma, "repeat": r, "accuracy": acc + d, "diverged": False, "clean_accuracy": acc}
            for seed, acc in ((0, 0.4), (1, 0.6)) for sigma in (0.1, 1.0) for r, d in enumerate((-0.05, 0.05))]
    fig, (two, one) = plt.subplots(1, 2)
    plots.plot_curves(two, pd.DataFrame(rows))
    line = two.get_lines()[0]
    assert np.allclose(line.get_ydata(), [50.0, 50.0])
    band = two.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.max() - band.min(), 2 * np.std([40, 60], ddof=1))
    plots.plot_curves(one, pd.DataFrame([r for r in rows if r["seed"] == 0]))
    band = one.collections[0].get_paths()[0].vertices[:, 1]
    assert np.allclose(one.get_lines()[0].get_ydata(), [40.0, 40.0])
    assert np.isclose(band.max() - band.min(), 2 * np.std([35, 45], ddof=1))
    plt.close(fig)


def test_legends_list_constant_scales_by_size_and_a_missing_midpoint_is_said():
    """Curves' legend: fp32, dynamic, then s = 0.25 < 4 < 16 (the names sorted as text put s=16 before s=4); Table
    II's figure writes "no fit" where our midpoint is missing and "not run" where the profile has no run."""
    import matplotlib

    matplotlib.use("Agg")
    import math

    import matplotlib.pyplot as plt
    import pandas as pd

    from paperlib.paper import plots, table2

    rows = [{"arch": "lenet5", "bits": bits, "scale": scale, "sigma_train": 0.0, "seed": 0, "key": f"k{bits}{scale}",
             "sigma": sigma, "repeat": 0, "accuracy": 0.5, "diverged": False, "clean_accuracy": 0.5}
            for bits, scale in ((8, 16.0), (8, 4.0), (None, None), (8, 0.25), (8, None)) for sigma in (0.1, 1.0)]
    fig, (ax, mids) = plt.subplots(1, 2)
    plots.plot_curves(ax, pd.DataFrame(rows))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["fp32", "8-bit dynamic", "8-bit s=0.25", "8-bit s=4", "8-bit s=16"]
    table = pd.DataFrame({"model": ["LeNet-5", "VGG-11"], "sigma_mid": [0.3, math.nan],
                          "sigma_mid_err": [0.01, math.nan],
                          "paper_sigma_mid": [0.25, 0.15], "sigma_mid_noisy": [math.nan, math.nan],
                          "sigma_mid_noisy_err": [math.nan, math.nan], "paper_sigma_mid_noisy": [2.6, 2.96],
                          "fit": ["ok", "–"], "fit, noisy training": ["collapsed", "–"]})
    table2.plot_midpoints(mids, table)
    assert sorted(t.get_text() for t in mids.texts) == ["no fit", "not run", "not run"]
    plt.close(fig)
