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
