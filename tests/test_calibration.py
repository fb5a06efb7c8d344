"""The error of sigma_mid is calibrated (docs/protocol.md §11): its 95% interval holds the truth 90-98% of the time.

Simulated networks with a known midpoint (paperlib.midpoint.simulate_sweeps), on the paper's grid (17 sigmas x 5
networks), the quick profile's (13 x 2) and one network with noise draws only; each for identical networks and for
small and large differences between networks. 400 sweeps per case, seeded: the numbers are the same on every run.
"""
import math

import numpy as np
import pandas as pd
import pytest

from paperlib.midpoint import GRIDS, SPREADS, SimGrid, fit_midpoint_calibrated, simulate_coverage, simulate_sweeps
from paperlib.runs import summary as rp

TRIALS = 400


@pytest.mark.parametrize("grid", ["17x5", "13x2", "13x1x2", "13x1x1"])
def test_the_95_percent_interval_holds_the_true_midpoint_90_to_98_percent_of_the_time(grid):
    for name, spread in SPREADS.items():
        cov = simulate_coverage(GRIDS[grid], spread, TRIALS, method="calibrated", seed=0)
        assert cov.fitted >= 0.99 * TRIALS, (grid, name, cov)
        assert 0.90 <= cov.coverage <= 0.98, (grid, name, cov)


def test_the_papers_error_covers_too_rarely_with_two_networks():
    """Before calibration (docs/protocol.md §11): the spread of 2 networks, taken as exact, was too narrow."""
    cov = simulate_coverage(GRIDS["13x2"], SPREADS["large"], TRIALS, method="paper", seed=0)
    assert cov.coverage < 0.8, cov


def test_with_one_network_the_truth_is_that_networks_own_midpoint():
    _, _, truth = simulate_sweeps(GRIDS["13x1x2"], SPREADS["large"], 50, seed=1)
    assert truth.std() > 0.05 * 0.3   # each network its own midpoint, around the population's 0.3
    _, _, truth = simulate_sweeps(GRIDS["13x2"], SPREADS["large"], 50, seed=1)
    assert np.all(truth == 0.3)       # several networks: the population's midpoint


def test_simulations_are_seeded():
    a = simulate_sweeps(GRIDS["13x2"], SPREADS["small"], 5, seed=3)[1]
    assert np.array_equal(a, simulate_sweeps(GRIDS["13x2"], SPREADS["small"], 5, seed=3)[1])
    assert not np.array_equal(a, simulate_sweeps(GRIDS["13x2"], SPREADS["small"], 5, seed=4)[1])
    with pytest.raises(ValueError, match="must be >= 1"):
        simulate_sweeps(SimGrid(13, 0, 1, 100), SPREADS["small"], 5, seed=0)


def _sweep(acc: np.ndarray, sigmas: np.ndarray, diverged: tuple[int, ...] = ()) -> pd.DataFrame:
    """run_sweep-shaped rows of one curve from accuracies ``[seeds, draws, n]``."""
    return pd.DataFrame([{"arch": "lenet5", "bits": None, "scale": None, "sigma_train": 0.0, "seed": k, "sigma": s,
                          "repeat": r, "accuracy": acc[k, r, i], "diverged": k in diverged}
                         for k in range(acc.shape[0]) for r in range(acc.shape[1]) for i, s in enumerate(sigmas)])


def test_fit_curve_on_the_rows_of_curves_is_the_calibrated_fit_of_the_networks():
    sigmas, acc, _ = simulate_sweeps(GRIDS["13x2"], SPREADS["small"], 1, seed=2)
    c = rp.curves(_sweep(acc[0], sigmas).sample(frac=1.0, random_state=0))   # row order must not matter
    fit, direct = rp.fit_curve(c), fit_midpoint_calibrated(sigmas, acc[0].mean(axis=1))
    assert fit.ok and fit.sigma_mid == pytest.approx(direct.sigma_mid) and fit.ci95 == pytest.approx(direct.ci95)
    assert fit.dof == 1 and fit.error_from == "spread of 2 networks"
    assert list(c.sigma) == sorted(c.sigma) and (c.seeds == 2).all() and (c.draws == 1).all()
    assert c.acc_sem.to_numpy() == pytest.approx(c.acc_std.to_numpy() / math.sqrt(2))
    assert c.acc_seeds.iloc[0] == pytest.approx(tuple(acc[0, :, 0, 0]))


def test_one_network_gets_its_error_from_its_noise_draws():
    sigmas, acc, _ = simulate_sweeps(GRIDS["13x1x2"], SPREADS["small"], 1, seed=2)
    c = rp.curves(_sweep(acc[0], sigmas))
    assert (c.seeds == 1).all() and (c.draws == 2).all()
    assert c.acc_std.to_numpy() == pytest.approx(acc[0, 0].std(axis=0, ddof=1))
    assert c.acc_sem.to_numpy() == pytest.approx(acc[0, 0].std(axis=0, ddof=1) / math.sqrt(2))
    fit = rp.fit_curve(c)
    assert fit.ok and fit.dof == 13 - 3 and fit.error_from == "fit residuals of one network"


def test_diverged_networks_count_and_enter_the_mean_failed_runs_do_not():
    sigmas, acc, _ = simulate_sweeps(GRIDS["13x2"], SPREADS["identical"], 1, seed=5)
    acc = np.concatenate([acc[0], np.full((1, 1, 13), 0.1)])            # a third network, diverged: chance everywhere
    df = _sweep(acc, sigmas, diverged=(2,))
    failed = {**df.iloc[0].to_dict(), "seed": 3, "sigma": math.nan, "repeat": -1, "accuracy": math.nan,
              "diverged": False, "error": "RuntimeError: boom"}
    c = rp.curves(pd.concat([df, pd.DataFrame([failed])], ignore_index=True))
    assert len(c) == 13 and (c.seeds == 3).all() and (c.diverged == 1).all() and (c.failed == 1).all()
    assert c.acc_mean.to_numpy() == pytest.approx(acc.mean(axis=(0, 1)))
    assert all(len(t) == 3 and t[2] == 0.1 for t in c.acc_seeds)
    assert rp.fit_curve(c).ok


def test_fit_curve_wants_one_curve_of_curves():
    sigmas, acc, _ = simulate_sweeps(GRIDS["13x2"], SPREADS["small"], 1, seed=2)
    df = _sweep(acc[0], sigmas)
    c = rp.curves(pd.concat([df, df.assign(bits=8)], ignore_index=True))
    with pytest.raises(ValueError, match="rows hold 2 curves"):
        rp.fit_curve(c)
    with pytest.raises(ValueError, match="lack the column"):
        rp.fit_curve(c.drop(columns="acc_seeds"))
    with pytest.raises(ValueError, match="rows is empty"):
        rp.fit_curve(c.iloc[:0])
