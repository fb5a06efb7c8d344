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
from paperlib.paper import Session, beyond
from paperlib.paper.experiments import clean_specs
from paperlib.runs import progress


def test_grids():
    quick = load_profile("quick")
    assert np.allclose(beyond.walking_sigmas(quick), np.logspace(-2, 3, 16))
    assert np.allclose(beyond.kind_sigmas(quick), np.logspace(-3, 2, 11))
    assert beyond.variance_aware_sigmas(quick) == pytest.approx((10**-1.2, 10**-0.4, 10**0.4))


def test_variance_aware_specs_keep_the_mean_sigma():
    assert beyond.ALPHA + beyond.THETA_FACTOR * math.sqrt(2 / math.pi) == pytest.approx(1.0)
    quick = load_profile("quick")
    specs = beyond.variance_aware_specs(quick, "lenet5", (0.4, 2.5), seeds=1)
    assert [(s.sigma_train, s.sigma_sampling) for s in specs] == [(0.4, "fixed"), (0.4, "sample"), (0.4, "epoch"),
                                                                 (2.5, "fixed"), (2.5, "sample"), (2.5, "epoch")]
    sample = specs[1]
    assert sample.sigma_alpha == 0.5 and sample.sigma_theta == pytest.approx(0.4 * beyond.THETA_FACTOR)
    assert sample.sigmas == quick.sigmas() and specs[0].train_config().sigma_sampling == "fixed"
    assert len({replace(s, dataset="x").train_key() for s in specs}) == 6


def test_kind_specs_reuse_the_trained_networks():
    quick = load_profile("quick")
    specs = beyond.kind_specs(quick, "lenet5", [(None, None)], ("additive", "weight"), (0.1, 1.0), seeds=1)
    clean = clean_specs(quick, "lenet5", [(None, None)], seeds=1)[0]
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
    grid = beyond.train_infer_map(_grid())
    assert set(grid.method) == {"fixed", "sample"} and len(grid) == 36
    gain = beyond.method_gain(grid, "sample")
    assert len(gain) == 18 and (gain.acc_mean >= -1e-12).all() and gain.acc_mean.max() > 0.05
    table = beyond.mismatch(grid)
    row = table[(table.sigma_train == 1.0) & (table["inference / training"] == 4.0)].iloc[0]
    assert row.sigma == pytest.approx(10**0.5) and row["sample"] > row["fixed"]
    assert table[["fixed", "sample"]].max().max() > 1  # in %, not fractions


def test_method_fits_find_each_curves_midpoint():
    df = _grid().assign(arch="lenet5", bits=None, scale=None, repeat=0)
    fits = beyond.method_fits(df).set_index(["method", "sigma_train"])
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
    ex = beyond.extremes(walking)
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
    picked = beyond.walking_models(quick, "lenet5", clean, noisy)
    names = list(picked)
    assert names[0] == "fp32" and names[1] == "8-bit s=64 (most robust QAT)"
    assert picked[names[1]].scale == 64.0 and picked[names[2]].sigma_train == pytest.approx(10**-0.4)  # nearest to 0.3


def test_walking_noise_has_one_row_per_network_module_and_sigma_and_seeds_set_the_networks(tmp_path, monkeypatch):
    tiny = replace(load_profile("smoke"), name="tiny", archs=("lenet5",), train_subset=300, test_subset=20,
                   walking_test_subset=20,
                   n_sigmas=5, noisy_n_sigmas=1)
    data = make_learnable_release(tmp_path / "data", n_train=300, n_test=20)  # enough to pick QAT and noisy models
    session = Session(tiny, "cpu", str(data), str(tmp_path / "results"), tmp_path / "figures", "")
    sigmas = beyond.walking_sigmas(tiny)
    log = tmp_path / "progress.log"
    monkeypatch.setenv(progress.ENV, str(log))  # what the main job prints in the terminal
    frames = {n: beyond.walking_noise(session, seeds=n) for n in (1, 2)}
    walking_lines = [line for line in log.read_text().splitlines() if line.startswith("walking noise")]
    networks = [f.groupby(["model", "seed"]).ngroups for f in frames.values()]  # seeds=1, then seeds=2
    assert len(walking_lines) == sum(networks), walking_lines  # one line per network profiled
    first = networks[0]
    assert walking_lines[first - 1].startswith(f"walking noise {first}/{first}: lenet5 ")
    assert f"12 noise modules x {len(sigmas)} sigmas on 20 test images (0 to go)" in walking_lines[first - 1]
    assert re.search(r"^walking noise 1/\d+: .*\(\d+ to go; about \d+ s left\)$", walking_lines[first]), walking_lines
    for n, walking in frames.items():
        keys = ["model", "seed", "index", "sigma"]
        assert not walking.empty and walking.groupby(keys).size().eq(1).all()
        networks = walking.groupby("model").seed.nunique()
        assert len(networks) >= 2 and (networks == n).all(), f"seeds={n}: {networks.to_dict()} networks per model"
        assert len(walking) == len(networks) * n * 12 * len(sigmas)  # LeNet-5: 12 noise modules
        assert walking.accuracy.between(0, 1).all() and (walking.test_subset == 20).all()
    fits = beyond.walking_fits(frames[2])
    assert len(fits) == 12 * fits.model.nunique() and (fits.seeds == 2).all()
    assert "peak_accuracy" not in fits and fits["peak acc. (%)"].between(0, 100).all()


def test_the_walking_noise_time_left_charges_each_network_its_own_architectures_time():
    took = {"lenet5": [30.0, 90.0]}  # a LeNet-5 network: 60 s on average
    assert beyond.time_left(took, ["lenet5"] * 3) == "3 to go; about 3 min left"
    assert beyond.time_left(took, ["lenet5", "resnet18", "resnet18"]) == \
        "3 to go; about 60 s left for 1, then 2 ResNet-18 not yet timed"
    assert beyond.time_left({}, ["resnet18"]) == "1 to go, not yet timed"
    assert beyond.time_left({**took, "resnet18": [600.0]}, ["lenet5", "resnet18"]) == "2 to go; about 11 min left"
    assert beyond.time_left(took, []) == "0 to go"


def test_kind_summary_is_in_percent_and_the_report_ranks_the_kinds_and_compares_with_fp32():
    sig = np.logspace(-3, 2, 16)
    rows = []
    for kind, (mid, qat_mid) in {"additive": (0.3, 0.9), "weight": (0.03, 0.03)}.items():
        rows += [{**r, "noise_kind": kind} for r in sweep_rows("lenet5", None, None, 0.7, mid, seeds=1, sigmas=sig)]
        rows += [{**r, "noise_kind": kind} for r in sweep_rows("lenet5", 8, 1.0, 0.7, qat_mid, seeds=1, sigmas=sig)]
    summary = beyond.kind_summary(pd.DataFrame(rows)).set_index(["variant", "noise kind"])
    assert summary["peak acc. (%)"].between(69, 71).all()
    assert summary.loc[("8-bit s=1", "additive"), "sigma_mid"] == pytest.approx(0.9, rel=0.05)
    text = str(beyond.what_noise_kinds_show(summary.reset_index(), load_profile("quick")))
    assert "fp32: tolerated most to least: additive" in text and "profile `quick`" in text
    assert re.search(r"8-bit s=1 relative to fp32 .*additive 3(\.0\d*)?x", text), text


def test_the_walking_report_names_each_networks_most_sensitive_module_and_compares_the_networks():
    fits = pd.DataFrame({"arch": "lenet5", "model": ["fp32"] * 3 + ["noisy"] * 3, "seeds": 2, "index": [0, 1, 2] * 2,
                         "name": list("abc") * 2, "follows": "conv", "sigma_mid": [0.5, 0.1, 1.0, 1.0, 0.2, 2.0],
                         "sigma_mid_err": 0.01, "rel_err": 0.05, "fit_ok": True, "reason": ""})
    text = str(beyond.what_walking_noise_shows(fits, load_profile("smoke")))
    assert "fp32: most sensitive module 1 (`b`" in text and "noisy: 2x" in text
    assert "say nothing about CIFAR-10" in text
