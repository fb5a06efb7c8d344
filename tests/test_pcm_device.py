"""Notebook 08's measures (paperlib.paper.pcm_device): the halfway point and the choice of noisy-trained networks,
against hand-computed values."""
import math

import numpy as np
import pandas as pd
import pytest

from paperlib.paper import pcm_device as pd8


def test_halfway_interpolates_in_log_between_the_grid_points_around_the_level():
    x = np.array([1.0, 10.0, 100.0])
    # clean 0.5, chance 0.1: level 0.3, crossed between 10 (0.4) and 100 (0.2), halfway in log: 10 ** 1.5
    assert pd8.halfway(x, np.array([0.5, 0.4, 0.2]), 0.5) == pytest.approx(10**1.5)
    assert math.isnan(pd8.halfway(x, np.array([0.5, 0.45, 0.35]), 0.5))  # never below 0.3 on the grid
    assert pd8.halfway(x, np.array([0.2, 0.1, 0.1]), 0.5) == 1.0  # already below at the first point


def _nets():
    rows = []
    for bits, scale in ((None, None), (8, None), (8, 1.0)):
        for sigma, mid in ((0.0, 0.3), (0.1, 0.5), (0.4, 0.9), (2.5, math.nan)):
            for seed in (0, 1):
                rows.append({"name": f"{bits}-{scale}-{sigma}-{seed}", "bits": bits, "scale": scale,
                             "sigma_train": sigma, "seed": seed, "sigma_mid": mid + 0.01 * seed})
    return pd.DataFrame(rows)


def test_select_keeps_the_clean_networks_and_the_most_robust_training_sigma_per_variant():
    kept = pd8.select(_nets())
    assert len(kept) == 12  # 3 variants x (clean + one training sigma) x 2 seeds
    assert sorted(kept.sigma_train.unique()) == [0.0, 0.4]
    assert kept.groupby(["bits", "scale"], dropna=False).size().tolist() == [4, 4, 4]
    chosen = pd8.select(_nets(), sigma_train=0.1)
    assert sorted(chosen.sigma_train.unique()) == [0.0, 0.1]
    with pytest.raises(ValueError, match="no noisy-trained network of training sigma 0.2"):
        pd8.select(_nets(), sigma_train=0.2)


def test_the_method_names_the_variant_and_the_training_sigma():
    assert pd8.method(None, None, 0.0) == "fp32"
    assert pd8.method(8, 1.0, 0.398107) == "8-bit s=1, noisy-trained σ=0.398"
    assert pd8.method(8, float("nan"), 0.0) == "8-bit dynamic"


def _table(sigma, scale, drift, clean):
    methods = ["fp32", "8-bit s=8", "8-bit dynamic", "fp32, noisy-trained σ=1"][: len(sigma)]
    return pd.DataFrame({"method": methods, "networks": 1, "clean": clean, "sigma_mid": sigma,
                         "sigma_mid_spread": np.nan, "scale_mid": scale, "scale_mid_spread": np.nan,
                         "drift_half_time_s": drift, "scale_mid_beyond_grid": False, "drift_beyond_grid": False})


def test_rank_agreement_is_spearmans_rho_of_the_gaussian_and_each_device_ranking():
    t = _table([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0], [0.6] * 4)
    assert pd8.rank_agreement(t) == pytest.approx({"scale": 1.0, "drift": -1.0})
    # ranks 1 2 3 4 against 2 1 4 3: sum d^2 = 4, rho = 1 - 6 * 4 / (4 * 15) = 0.6
    t = _table([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0], [1.0, 1.0, 2.0, 2.0], [0.6] * 4)
    assert pd8.rank_agreement(t)["scale"] == pytest.approx(0.6)
    # ties take their mean rank (1.5, 1.5, 3.5, 3.5): rho = 0.894 with 1 2 3 4
    assert pd8.rank_agreement(t)["drift"] == pytest.approx(2 / math.sqrt(5))
    assert all(math.isnan(v) for v in pd8.rank_agreement(t.head(2)).values())


def test_what_it_shows_gives_the_gains_over_fp32_the_agreement_and_the_clean_accuracies():
    t = _table([0.25, 1.0, 0.5, 5.0], [2.0, 3.0, 1.0, 4.0], [1e3, 1e4, 1e2, 1e5], [0.65, 0.56, 0.66, 0.30])
    df = pd.DataFrame([{"panel": "time", "t_inference": when, "compensation": comp, "accuracy": 0.5}
                       for when in (pd8.TIMES[0], pd8.TIMES[-1]) for comp in (True, False)])
    text = pd8.what_it_shows(t, df, "hand")
    assert "the 3 other methods reach Gaussian sigma_mid 2x to 20x; a PCM noise scale at one day 0.5x to 2x." in text
    # Gaussian ranks 1 3 2 4 against scale 2 3 1 4 (d^2 = 2: rho 0.8) and drift 2 3 1 4 (the same)
    assert "PCM noise scale 0.80, uncompensated drift 0.80" in text
    assert "Clean accuracy from 30.0% (fp32, noisy-trained σ=1) to 66.0% (8-bit dynamic)" in text
    t["sigma_mid"] = np.nan  # no Gaussian midpoint on the grid (smoke): no range of it, no agreement
    text = pd8.what_it_shows(t, df, "hand")
    assert "Over fp32, the 3 other methods reach a PCM noise scale at one day 0.5x to 2x." in text
    assert "Spearman" not in text


def test_the_figure_orders_methods_by_kind_and_scale_and_gives_each_its_own_colour():
    rows = [(None, None, 0.0), (8, None, 0.0), *((8, s, 0.0) for s in (16.0, 4.0, 0.25, 64.0, 1.0, 32.0, 8.0)),
            (8, 1.0, 1.0), (None, None, 3.16), (8, None, 1.0)]
    df = pd.DataFrame([{"method": pd8.method(b, s, t), "bits": b, "scale": s, "sigma_train": t} for b, s, t in rows])
    df = df.sample(frac=1.0, random_state=0)  # the order of the rows does not matter
    assert pd8.method_order(df) == [
        "fp32", "8-bit dynamic", "8-bit s=0.25", "8-bit s=1", "8-bit s=4", "8-bit s=8", "8-bit s=16", "8-bit s=32",
        "8-bit s=64", "fp32, noisy-trained σ=3.16", "8-bit dynamic, noisy-trained σ=1", "8-bit s=1, noisy-trained σ=1"]
    palette = pd8.method_palette(df)
    assert list(palette) == pd8.method_order(df)
    assert len({tuple(round(c, 3) for c in rgb) for rgb in palette.values()}) == 12  # a dozen distinct colours
    assert palette["fp32"] == (0.0, 0.0, 0.0)
    ramp = [sum(palette[f"8-bit s={s:g}"]) for s in (0.25, 1, 4, 8, 16, 32, 64)]
    assert ramp == sorted(ramp, reverse=True)  # light to dark by scale
