"""The paper profile end to end, as a dry run: every notebook of ``make figures`` at ``paper-dryrun``.

``paper-dryrun`` has every grid and architecture of ``paper`` (VGG-11 with its 107 MiB of weights, over the
keep-limit, included) at one epoch on 50 images and one seed, so every code path of ``paper`` runs in
minutes. The notebooks run as ``make figures`` runs them (:func:`paperlib.paper.notebooks.run_job`, in make order,
sharing one result cache) on a generated data set (:func:`conftest.make_learnable_release`). The test checks
that each notebook finishes and writes its files, that the networks each one trains are those the budget of
``benchmarks/paper_budget.py`` counts, and that the weights policy holds (docs/protocol.md §12): VGG-11's
noisy-trained networks keep no weights, and ``run(..., need_weights=True)`` retrains one and loads it.
"""
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_learnable_release

from paperlib.paper.notebooks import JOBS

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a package of the repository, not of the installed paperlib
    sys.path.insert(0, str(REPO))

#: What each job of ``make figures`` writes (its Session.save / save_table calls), as the main job declares it.
WRITES = {j.name: list(j.writes) for j in JOBS}


def _check_files(figures, expected):
    """The exact files ``expected``; every CSV captioned with the profile, no failed run, finite accuracies."""
    written = sorted(p.name for p in figures.iterdir()) if figures.is_dir() else []
    assert written == sorted(expected), f"{figures} holds {written}, expected {sorted(expected)}"
    for name in (n for n in expected if n.endswith(".csv")):
        caption = (figures / name).read_text().splitlines()[0]
        assert caption.startswith("# profile paper-dryrun") and "paperlib rev" in caption, f"{name}: {caption}"
        table = pd.read_csv(figures / name, comment="#")
        if "error" in table:
            assert table["error"].isna().all(), f"{name} holds failed runs: {table['error'].dropna().iloc[0]}"
        if "failed" in table:
            assert (table["failed"] == 0).all(), f"{name} counts failed runs: {table['failed'].tolist()}"
        for col in ("accuracy", "clean_accuracy", "peak_acc", "acc_mean"):
            if col in table:
                assert np.isfinite(table[col].to_numpy(float)).all(), f"{name}: column {col} is not finite everywhere"


def _entries(results):
    runs = results / "runs"
    return {p.name: p for p in runs.iterdir() if not p.name.startswith(".")} if runs.is_dir() else {}


@pytest.mark.dryrun
@pytest.mark.slow
@pytest.mark.notebooks
def test_every_notebook_runs_the_paper_grids_end_to_end(tmp_path, monkeypatch, capsys):
    pytest.importorskip("papermill")
    import json

    import paperlib as pl
    from benchmarks.paper_budget import count
    from paperlib.paper.notebooks import JOBS, run_job
    from paperlib.runs.profile import load_profile

    profile = load_profile("paper-dryrun")
    data = make_learnable_release(tmp_path / "data", n_train=200, n_test=100)
    results = tmp_path / "results"
    monkeypatch.setenv("PAPERLIB_PROFILE", "paper-dryrun")
    monkeypatch.setenv("PAPERLIB_DATA", str(data))
    monkeypatch.setenv("PAPERLIB_RESULTS", str(results))
    budget = count(profile)
    assert [j.name for j in JOBS] == list(WRITES) == list(budget)
    trained = {}
    for job in JOBS:
        before = set(_entries(results))
        monkeypatch.setenv("PAPERLIB_FIGURES", str(tmp_path / "figures" / job.name))
        ok = run_job(job, "paper-dryrun", "cpu", tmp_path / "executed")
        assert ok, f"notebook job {job.name} failed:\n{capsys.readouterr().out[-4000:]}"
        _check_files(tmp_path / "figures" / job.name, WRITES[job.name])
        trained[job.name] = len(set(_entries(results)) - before)
    expected = {job: sum(t.trained.values()) for job, t in budget.items()}
    with capsys.disabled():
        print(f"\nnetworks trained per notebook at paper-dryrun: {trained}")
    assert trained == expected, f"trained {trained}, the budget counts {expected}"

    records = {k: json.loads((p / "record.json").read_text()) for k, p in _entries(results).items()}
    vgg = [r for r in records.values() if r["spec"]["arch"] == "vgg11" and not r["diverged"]]
    assert vgg and all(r["weights_mb"] > 64 for r in vgg), "VGG-11's weights must be over the 64 MiB keep-limit"
    clean_kept = [r["weights"] for r in vgg if r["spec"]["sigma_train"] == 0]
    noisy_kept = [r["weights"] or "weights_retrained" in r for r in vgg if r["spec"]["sigma_train"] > 0]
    assert clean_kept and all(clean_kept), "VGG-11 networks trained without noise must keep their weights"
    assert noisy_kept.count(True) <= 1, "noisy-trained VGG-11 networks keep weights only when notebook 05 needs them"

    # The case that stopped `make figures PROFILE=paper`: a network whose weights were not kept, loaded.
    sig = profile.noisy_sigmas()[len(profile.noisy_sigmas()) // 2]
    spec = profile.spec("vgg11", sigma_train=sig, sigmas=(sig,))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = pl.run(spec, str(data), str(results), "cpu", progress=False, need_weights=True)
    assert not res.trained and math.isfinite(res.accuracy)
    assert res.load_model("cpu") is not None and (res.path / "weights.pt").is_file()


def test_the_dry_run_profile_has_every_grid_of_the_paper_profile():
    import dataclasses

    from paperlib.runs.profile import PROFILES, load_profile

    paper, dry = load_profile("paper"), load_profile("paper-dryrun")
    assert "paper-dryrun" in PROFILES
    budget = {"name", "epochs", "train_subset", "test_subset", "walking_test_subset", "seeds"}
    differ = {f.name for f in dataclasses.fields(paper) if getattr(paper, f.name) != getattr(dry, f.name)}
    assert differ <= budget, f"paper-dryrun changes more than the training budget: {sorted(differ - budget)}"
    assert dry.archs == ("lenet5", "vgg11", "resnet18") and len(dry.sigmas()) == 17 and dry.bits == (4, 8)
    for arch in dry.archs:
        assert dry.spec(arch).sigmas == paper.spec(arch).sigmas
