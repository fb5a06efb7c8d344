"""Experiments beyond the paper: spec grids and the tables of notebooks 05-07, on data with known answers."""
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import make_learnable_release
from test_reproduce import sweep_rows

from paperlib import load_profile
from paperlib.paper import Session, noise_kinds, variance_aware, walking_noise
from paperlib.paper.specs import clean_specs
from paperlib.runs import progress


def test_grids():
    quick = load_profile("quick")
    assert np.allclose(walking_noise.sigmas(quick), np.logspace(-2, 3, 16))
    assert np.allclose(noise_kinds.sigmas(quick), np.logspace(-3, 2, 11))
    assert variance_aware.sigmas(quick) == pytest.approx((10**-1.2, 10**-0.4, 10**0.4))


def test_variance_aware_specs_keep_the_mean_sigma():
    assert variance_aware.ALPHA + variance_aware.THETA_FACTOR * math.sqrt(2 / math.pi) == pytest.approx(1.0)
    quick = load_profile("quick")
    specs = variance_aware.specs(quick, 1, "lenet5", (0.4, 2.5))
    assert [(s.sigma_train, s.sigma_sampling) for s in specs] == [(0.4, "fixed"), (0.4, "sample"), (0.4, "epoch"),
                                                                 (2.5, "fixed"), (2.5, "sample"), (2.5, "epoch")]
    sample = specs[1]
    assert sample.sigma_alpha == 0.5 and sample.sigma_theta == pytest.approx(0.4 * variance_aware.THETA_FACTOR)
    assert sample.sigmas == quick.sigmas() and specs[0].train_config().sigma_sampling == "fixed"
    assert len({replace(s, dataset="x").train_key() for s in specs}) == 6


def test_kind_specs_reuse_the_trained_networks():
    quick = load_profile("quick")
    specs = noise_kinds.specs(quick, 1, "lenet5", ("additive", "weight"))
    clean = clean_specs(quick, "lenet5", noise_kinds.variants(quick), seeds=1)
    assert [s.noise_kind for s in specs[:2]] == ["additive", "weight"]
    assert all(s.sigmas == pytest.approx(noise_kinds.sigmas(quick)) for s in specs) and len(specs) == 2 * len(clean)
    assert {replace(s, dataset="x").train_key() for s in specs} == {replace(c, dataset="x").train_key() for c in clean}


def _grid():
    rows = []
    for method, shift in (("fixed", 0.0), ("sample", 0.3)):
        for t in (0.1, 1.0):
            for s in np.logspace(-2, 2, 9):
                acc = float(0.1 + 0.6 / (1 + np.exp(4 * (np.log10(s) - np.log10(3 * t) - shift))))
                rows.append({"sigma_sampling": method, "sigma_train": t, "sigma": s, "seed": 0, "accuracy": acc})
    return pd.DataFrame(rows)


def test_train_infer_tables():
    grid = variance_aware.train_infer_map(_grid())
    assert set(grid.method) == {"fixed", "sample"} and len(grid) == 36
    gain = variance_aware.method_gain(grid, "sample")
    assert len(gain) == 18 and (gain.acc_mean >= -1e-12).all() and gain.acc_mean.max() > 0.05
    table = variance_aware.mismatch(grid)
    row = table[(table.sigma_train == 1.0) & (table["inference / training"] == 4.0)].iloc[0]
    assert row.sigma == pytest.approx(10**0.5) and row["sample"] > row["fixed"]
    assert table[["fixed", "sample"]].max().max() > 1  # in %, not fractions


def test_method_fits_find_each_curves_midpoint():
    df = _grid().assign(arch="lenet5", bits=None, scale=None, repeat=0)
    fits = variance_aware.method_fits(df).set_index(["method", "sigma_train"])
    assert fits.loc[("fixed", 1.0), "sigma_mid"] == pytest.approx(3.0, rel=0.02)
    assert fits.loc[("sample", 0.1), "sigma_mid"] == pytest.approx(0.3 * 10**0.3, rel=0.02)


def test_extremes_rank_modules_and_count_unfallen_ones_least_sensitive():
    walking = pd.DataFrame(
        {
            "arch": "lenet5",
            "model": "fp32",
            "index": range(6),
            "name": list("abcdef"),
            "follows": "conv",
            "sigma_mid": [0.5, 0.1, np.nan, 2.0, 0.3, 1.0],
            "sigma_mid_err": 0.01,
            "rel_err": 0.02,
            "fit_ok": [True, True, False, True, True, True],
            "reason": ["", "", "accuracy never falls below the midpoint inside the sigma grid", "", "", ""],
        }
    )
    ex = walking_noise.extremes(walking)
    most = ex[ex.group == "most sensitive"]
    least = ex[ex.group == "least sensitive"]
    assert list(most.name) == ["b", "e", "a"] and list(least.name) == ["c", "d", "f"]
    assert least.iloc[0].fit == "beyond the grid"


def test_the_picks_are_the_most_robust_qat_and_a_matched_noisy_network():
    quick = replace(load_profile("quick"), archs=("lenet5",))
    sig = np.logspace(-2, 2, 13)
    candidates = pd.DataFrame(
        sweep_rows("lenet5", None, None, 0.6, 0.3, seeds=1, sigmas=sig)
        + sweep_rows("lenet5", 8, 1.0, 0.6, 0.5, seeds=1, sigmas=sig)
        + sweep_rows("lenet5", 8, 64.0, 0.5, 1.2, seeds=1, sigmas=sig)
        + [{**r, "sigma_train": t, "sigma": t} for t in quick.noisy_sigmas()
           for r in sweep_rows("lenet5", None, None, 0.5, 3.0, seeds=1, sigmas=[1.0])]
    )
    picked = walking_noise.picks(quick, candidates)["lenet5"]
    names = list(picked)
    assert names[0] == "fp32" and names[1] == "8-bit s=64 (most robust QAT)"
    assert picked[names[1]].scale == 64.0 and picked[names[2]].sigma_train == pytest.approx(10**-0.4)  # nearest to 0.3
    assert [walking_noise.model_name(s.bits, s.scale, s.sigma_train) for s in picked.values()] == names


def test_walking_noise_is_one_cached_run_per_network_and_module_and_a_second_run_measures_nothing(tmp_path,
                                                                                                monkeypatch):
    """Notebook 05's flow: the candidate sweep, the picks' site specs through the sweep runner (one row per network,
    module and sigma; seeds set the networks), then the same again: every run from the cache, nothing evaluated."""
    tiny = replace(load_profile("smoke"), name="tiny", archs=("lenet5",), train_subset=300, test_subset=20,
                   walking_test_subset=20, n_sigmas=5, noisy_n_sigmas=1)
    data = make_learnable_release(tmp_path / "data", n_train=300, n_test=20)  # enough to pick QAT and noisy models
    sigmas = walking_noise.sigmas(tiny)
    log = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(log))  # what the main job prints in the terminal
    frames = {}
    for n in (1, 2):
        session = Session(tiny, "cpu", str(data), str(tmp_path / "results"), tmp_path / "figures", "", seeds=n)
        candidates = session.run(walking_noise)
        frames[n] = walking_noise.table(session.sweep(walking_noise.site_specs(tiny, candidates)))
    for n, walking in frames.items():
        keys = ["model", "seed", "index", "sigma"]
        assert not walking.empty and walking.groupby(keys).size().eq(1).all()
        networks = walking.groupby("model").seed.nunique()
        assert len(networks) >= 2 and (networks == n).all(), f"seeds={n}: {networks.to_dict()} networks per model"
        assert len(walking) == len(networks) * n * 12 * len(sigmas)  # LeNet-5: 12 noise modules
        assert walking.accuracy.between(0, 1).all() and (walking.test_subset == 20).all()
        assert set(walking.follows) >= {"input", "conv", "relu", "linear"}
    first = [line for line in log.read_text().splitlines() if re.match(r"run \d+/\d+ .*noise at site", line)]
    assert first and all("from the cache, " in line and " noise point(s) evaluated" in line for line in first[:12])
    assert any("left)" in line for line in first), first  # the time left, from the runs that evaluated
    curves = sorted((tmp_path / "results").rglob("curve-*.csv"))
    before = {p: p.read_bytes() for p in curves}
    log.write_text("")
    again = walking_noise.table(session.sweep(walking_noise.site_specs(tiny, session.run(walking_noise))))
    pd.testing.assert_frame_equal(again, frames[2])
    assert {p: p.read_bytes() for p in sorted((tmp_path / "results").rglob("curve-*.csv"))} == before
    runs = [line for line in log.read_text().splitlines() if re.match(r"run \d+/\d+ ", line)]
    assert runs and all("from the cache (" in line for line in runs), runs  # nothing evaluated
    assert any("noise at site 11 only" in line for line in runs), runs
    fits = walking_noise.fits(frames[2])
    assert len(fits) == 12 * fits.model.nunique() and (fits.seeds == 2).all()
    assert "peak_accuracy" not in fits and fits["peak acc. (%)"].between(0, 100).all()


def test_kind_summary_is_in_percent_and_the_report_ranks_the_kinds_and_compares_with_fp32():
    sig = np.logspace(-3, 2, 16)
    rows = []
    for kind, (mid, qat_mid) in {"additive": (0.3, 0.9), "weight": (0.03, 0.03)}.items():
        rows += [{**r, "noise_kind": kind} for r in sweep_rows("lenet5", None, None, 0.7, mid, seeds=1, sigmas=sig)]
        rows += [{**r, "noise_kind": kind} for r in sweep_rows("lenet5", 8, 1.0, 0.7, qat_mid, seeds=1, sigmas=sig)]
    summary = noise_kinds.summary(pd.DataFrame(rows)).set_index(["variant", "noise kind"])
    assert summary["peak acc. (%)"].between(69, 71).all()
    assert summary.loc[("8-bit s=1", "additive"), "sigma_mid"] == pytest.approx(0.9, rel=0.05)
    text = str(noise_kinds.what_it_shows(summary.reset_index(), load_profile("quick")))
    assert "fp32: tolerated most to least: additive" in text and "profile `quick`" in text
    assert re.search(r"8-bit s=1 relative to fp32 .*additive 3(\.0\d*)?x", text), text


def test_the_walking_report_names_each_networks_most_sensitive_module_and_compares_the_networks():
    fits = pd.DataFrame({"arch": "lenet5", "model": ["fp32"] * 3 + ["noisy"] * 3, "seeds": 2, "index": [0, 1, 2] * 2,
                         "name": list("abc") * 2, "follows": "conv", "sigma_mid": [0.5, 0.1, 1.0, 1.0, 0.2, 2.0],
                         "sigma_mid_err": 0.01, "rel_err": 0.05, "fit_ok": True, "reason": ""})
    text = str(walking_noise.what_it_shows(fits, load_profile("smoke")))
    assert "fp32: most sensitive module 1 (`b`" in text and "noisy: 2x" in text
    assert "say nothing about CIFAR-10" in text
