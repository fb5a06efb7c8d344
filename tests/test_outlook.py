"""Experiments beyond the paper: spec grids and the tables of notebooks 05-07, on data with known answers."""
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from test_reproduce import sweep_rows

from paperlib import load_profile
from paperlib.paper import beyond as outlook
from paperlib.paper import reproduce as rp


def test_grids():
    quick = load_profile("quick")
    assert np.allclose(outlook.walking_sigmas(quick), np.logspace(-2, 3, 16))
    assert np.allclose(outlook.kind_sigmas(quick), np.logspace(-3, 2, 11))
    assert outlook.variance_aware_sigmas(quick) == pytest.approx((10**-1.2, 10**-0.4, 10**0.4))


def test_variance_aware_specs_keep_the_mean_sigma():
    assert outlook.ALPHA + outlook.THETA_FACTOR * math.sqrt(2 / math.pi) == pytest.approx(1.0)
    quick = load_profile("quick")
    specs = outlook.variance_aware_specs(quick, "lenet5", (0.4, 2.5), seeds=1)
    assert [(s.sigma_train, s.sigma_sampling) for s in specs] == [(0.4, "fixed"), (0.4, "sample"), (0.4, "epoch"),
                                                                 (2.5, "fixed"), (2.5, "sample"), (2.5, "epoch")]
    sample = specs[1]
    assert sample.sigma_alpha == 0.5 and sample.sigma_theta == pytest.approx(0.4 * outlook.THETA_FACTOR)
    assert sample.sigmas == quick.sigmas() and specs[0].train_config().sigma_sampling == "fixed"
    assert len({replace(s, dataset="x").train_key() for s in specs}) == 6


def test_kind_specs_reuse_the_trained_networks():
    quick = load_profile("quick")
    specs = outlook.kind_specs(quick, "lenet5", [(None, None)], ("additive", "weight"), (0.1, 1.0), seeds=1)
    clean = rp.clean_specs(quick, "lenet5", [(None, None)], seeds=1)[0]
    assert [s.noise_kind for s in specs] == ["additive", "weight"] and all(s.sigmas == (0.1, 1.0) for s in specs)
    assert {replace(s, dataset="x").train_key() for s in specs} == {replace(clean, dataset="x").train_key()}


def _grid():
    rows = []
    for method, shift in (("fixed", 0.0), ("sample", 0.3)):
        for t in (0.1, 1.0):
            for s in np.logspace(-2, 2, 9):
                acc = float(0.1 + 0.6 / (1 + np.exp(4 * (np.log10(s) - np.log10(3 * t) - shift))))
                rows.append({"sigma_sampling": method, "sigma_train": t, "sigma": s, "seed": 0, "accuracy": acc})
    return pd.DataFrame(rows)


def test_train_infer_tables():
    grid = outlook.train_infer_map(_grid())
    assert set(grid.method) == {"fixed", "sample"} and len(grid) == 36
    gain = outlook.method_gain(grid, "sample")
    assert len(gain) == 18 and (gain.acc_mean >= -1e-12).all() and gain.acc_mean.max() > 0.05
    table = outlook.mismatch(grid)
    row = table[(table.sigma_train == 1.0) & (table["inference / training"] == 4.0)].iloc[0]
    assert row.sigma == pytest.approx(10**0.5) and row["sample"] > row["fixed"]


def test_method_fits_find_each_curves_midpoint():
    df = _grid().assign(arch="lenet5", bits=None, scale=None, repeat=0)
    fits = outlook.method_fits(df).set_index(["method", "sigma_train"])
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
    ex = outlook.extremes(walking)
    most = ex[ex.group == "most sensitive"]
    least = ex[ex.group == "least sensitive"]
    assert list(most.name) == ["b", "e", "a"] and list(least.name) == ["c", "d", "f"]
    assert least.iloc[0].fit == "beyond the grid"


def test_walking_models_pick_the_most_robust_qat_and_a_matched_noisy_network():
    quick = load_profile("quick")
    sig = np.logspace(-2, 2, 13)
    clean = pd.DataFrame(
        sweep_rows("lenet5", None, None, 0.6, 0.3, seeds=1, sigmas=sig)
        + sweep_rows("lenet5", 8, 1.0, 0.6, 0.5, seeds=1, sigmas=sig)
        + sweep_rows("lenet5", 8, 64.0, 0.5, 1.2, seeds=1, sigmas=sig)
    )
    noisy = pd.DataFrame([{"arch": "lenet5", "bits": None, "sigma_train": t} for t in quick.noisy_sigmas()])
    picked = outlook.walking_models(quick, "lenet5", clean, noisy)
    names = list(picked)
    assert names[0] == "fp32" and names[1] == "8-bit s=64 (most robust QAT)"
    assert picked[names[1]].scale == 64.0 and picked[names[2]].sigma_train == pytest.approx(10**-0.4)  # nearest to 0.3
