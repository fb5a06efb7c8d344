"""The error of sigma_mid is calibrated (docs/protocol.md §11): its 95% interval holds the truth 90-98% of the time.

Simulated networks with a known midpoint (paperlib.midpoint.simulate_sweeps), on the paper's grid (17 sigmas x 5
networks), the quick profile's (13 x 2) and one network with noise draws only; each for identical networks and for
small and large differences between networks. 400 sweeps per case, seeded: the numbers are the same on every run.

Beyond the fitted form (the second half): curves that are not Eq. 1 (a sagging plateau, a collapse steeper than the
logistic, a near step, a floor above chance) on the same grids and spreads, 200 sweeps per case; the coverage is
measured and reported, not promised (docs/protocol.md §11).
"""
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.special import erfc, erfcinv

from paperlib.midpoint import (
    GRIDS,
    SPREADS,
    NetworkSpread,
    SimGrid,
    fit_midpoint_calibrated,
    simulate_coverage,
    simulate_sweeps,
)
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


# ---- Curves that are not Eq. 1 (docs/protocol.md §11, "Beyond the fitted form") -------------------------------------

#: Shapes of the accuracy curve beyond Eq. 1. Each is ``floor + (peak - floor) * h(x)`` in ``x = log10(sigma)``,
#: ``h`` the height left above the floor: 1 at sigma -> 0 (the peak is the clean accuracy, §11), 0 at sigma -> inf.
#: With ``z = (x - log10(0.3) - shift) * stretch`` (a network's own shift and stretch, :func:`simulate_shape`):
#:
#: - ``logistic``: Eq. 1 itself, slope 5 per decade (10-90% of the fall in 0.88 decades): the control;
#: - ``sagging plateau``: Eq. 1 times ``1 / (1 + sqrt(sigma / 30))``: accuracy falls slowly before the drop
#:   (2% of the height lost at sigma = 0.01, 5.5% at 0.1, 9% at 0.3);
#: - ``erfc^2 collapse``: ``(erfc(z / 0.25) / 2)**2``: 10-90% in 0.37 decades, with Gaussian tails;
#: - ``step``: the same with width 0.04: 10-90% in 0.06 decades, under a quarter of a grid step;
#: - ``floor 0.2``: Eq. 1 falling to 0.2 instead of chance (the fit keeps ``a_min = 0.1``).
SHAPES = ("logistic", "sagging plateau", "erfc^2 collapse", "step", "floor 0.2")


def shape_floor(shape: str) -> float:
    """The accuracy ``shape`` falls to at large sigma."""
    return 0.2 if shape == "floor 0.2" else 0.1


def shape_height(shape: str, x: np.ndarray, shift: np.ndarray | float = 0.0, stretch: np.ndarray | float = 1.0):
    """``h``: the fraction of the height above the floor left at ``x = log10(sigma)`` (see :data:`SHAPES`)."""
    z = (x - math.log10(0.3) - shift) * stretch
    if shape in ("logistic", "floor 0.2"):
        return 1.0 / (1.0 + np.exp(np.clip(5.0 * z, -50, 50)))
    if shape == "sagging plateau":
        return 1.0 / (1.0 + np.exp(np.clip(5.0 * z, -50, 50))) / (1.0 + np.sqrt(10.0 ** x / 30.0))
    if shape == "erfc^2 collapse":
        return (erfc(z / 0.25) / 2) ** 2
    if shape == "step":
        return (erfc(z / 0.04) / 2) ** 2
    raise ValueError(f"unknown shape {shape!r}")


def halfway(height, shape_of_result: tuple[int, ...] = ()) -> np.ndarray:
    """``x`` where the decreasing function ``height(x)`` is 1/2, by bisection on [-4, 4] (elementwise)."""
    lo, hi = np.full(shape_of_result, -4.0), np.full(shape_of_result, 4.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        above = height(mid) > 0.5
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return (lo + hi) / 2


def true_midpoint(shape: str, spread: NetworkSpread) -> float:
    """``sigma_mid`` of the population's noiseless mean curve: halfway between its mean peak and its floor.

    The peak only scales the height, so this is where the mean over networks of ``h`` is 1/2; the mean over the
    normal shift and log-normal stretch of :func:`simulate_shape` is a 24 x 24 Gauss-Hermite quadrature.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(24)
    weights = weights / weights.sum()
    shift = spread.x0_sd * nodes[:, None, None]
    stretch = np.exp(spread.slope_sd * nodes[None, :, None])
    w = weights[:, None, None] * weights[None, :, None]
    return float(10.0 ** halfway(lambda x: (w * shape_height(shape, x[None, None, None], shift, stretch)).sum()))


def simulate_shape(shape: str, grid: SimGrid, spread: NetworkSpread, trials: int, seed: int):
    """Simulated sweeps of networks whose true curve has ``shape``: ``sigmas``, accuracies ``[trials, seeds, draws,
    n]`` and the true midpoint of each trial, as :func:`paperlib.midpoint.simulate_sweeps` draws them.

    Each network draws its own shift of ``log10(sigma)`` (normal, sd ``spread.x0_sd``), peak (normal around 0.7,
    sd ``spread.a_max_sd``, clipped to [floor + 0.1, 0.99]) and stretch of the fall (log-normal, ``spread.slope_sd``);
    each accuracy is ``binomial(test_images, p) / test_images``. The truth is the population's midpoint
    (:func:`true_midpoint`) with several networks, the one network's own with ``seeds == 1``, both found numerically
    on the noiseless curve.
    """
    rng = np.random.default_rng(seed)
    sigmas = np.logspace(-2, 2, grid.n_sigmas)
    size = (trials, grid.seeds, 1, 1)
    floor = shape_floor(shape)
    shift = spread.x0_sd * rng.standard_normal(size)
    peak = np.clip(0.7 + spread.a_max_sd * rng.standard_normal(size), floor + 0.1, 0.99)
    stretch = np.exp(spread.slope_sd * rng.standard_normal(size))
    p = floor + (peak - floor) * shape_height(shape, np.log10(sigmas), shift, stretch)
    acc = rng.binomial(grid.test_images, np.broadcast_to(p, (trials, grid.seeds, grid.draws, grid.n_sigmas)))
    if grid.seeds == 1:
        own = halfway(lambda x: shape_height(shape, x, shift[:, 0, 0, 0], stretch[:, 0, 0, 0]), (trials,))
        truth = 10.0 ** own
    else:
        truth = np.full(trials, true_midpoint(shape, spread))
    return sigmas, acc / grid.test_images, truth


def shape_coverage(shape: str, grid: SimGrid, spread: NetworkSpread, trials: int, seed: int = 0) -> dict:
    """Fitted sweeps, coverage of ``ci95`` (``10**(x0 +- t * se)``, ``t`` the Student-t quantile of the fit's
    ``dof``: the interval the protocol uses), median relative error and median bias (decades) of
    :func:`fit_midpoint_calibrated` on :func:`simulate_shape`'s sweeps."""
    sigmas, acc, truth = simulate_shape(shape, grid, spread, trials, seed)
    covered, rel_err, bias = [], [], []
    for curves, true in zip(acc.mean(axis=2), truth):
        fit = fit_midpoint_calibrated(sigmas, curves)
        if fit.ok:
            covered.append(fit.ci95[0] <= true <= fit.ci95[1])
            rel_err.append(fit.rel_err)
            bias.append(math.log10(fit.sigma_mid / true))
    return {"fitted": len(covered), "coverage": float(np.mean(covered)) if covered else math.nan,
            "rel_err": float(np.median(rel_err)) if rel_err else math.nan,
            "bias": float(np.median(bias)) if bias else math.nan}


#: Simulated sweeps per (grid, spread, shape) of the study beyond Eq. 1: 60 cases, about 4 s per grid on 2 cores.
SHAPE_TRIALS = 200


def _docstring_table(doc: str) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """The rows ``grid spread cov [(fitted)] ...`` of a docstring's table: ``{(grid, spread): [(coverage, fitted)]}``
    in the order of :data:`SHAPES`; ``fitted`` is :data:`SHAPE_TRIALS` where the cell gives none."""
    table = {}
    for line in doc.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in GRIDS and words[1] in SPREADS:
            cells = re.findall(r"(\d\.\d+)(?: \((\d+)\))?", line.split(words[1], 1)[1])
            table[words[0], words[1]] = [(float(c), int(f) if f else SHAPE_TRIALS) for c, f in cells]
    return table


@pytest.mark.parametrize("grid", list(GRIDS))
def test_coverage_on_curves_that_are_not_eq1(grid):
    """Coverage of ``ci95`` (the Student-t interval of docs/protocol.md §11) when the true curve departs from Eq. 1.

    The shapes are :data:`SHAPES`; the truth is the noiseless curve's midpoint, halfway between peak (clean
    accuracy) and floor, found numerically (:func:`simulate_shape`). Measured, seed 0, 200 simulated sweeps per
    case: the fraction of fitted sweeps whose ``ci95`` holds the truth, with the number of fitted sweeps in
    brackets where the fit refused some (the others say "no midpoint"):

        grid    spread     logistic  sagging plateau  erfc^2 collapse  step         floor 0.2
        17x5    identical  0.945     0.505            0.645            0.475 (101)  0.025
        17x5    small      0.935     0.920            0.915            0.699 (103)  0.605
        17x5    large      0.935     0.940            0.920            0.906 (128)  0.935
        13x2    identical  0.930     0.940            0.910            0.902 (41)   0.925
        13x2    small      0.960     0.915            0.924 (197)      0.945 (55)   0.940
        13x2    large      0.955     0.970            0.965 (198)      1.000 (85)   0.928 (194)
        13x1x2  identical  0.970     0.955            0.870 (192)      0.942 (52)   1.000 (198)
        13x1x2  small      0.940     0.930            0.872 (188)      0.939 (49)   1.000 (189)
        13x1x2  large      0.960     0.940            0.935 (185)      0.725 (69)   1.000 (158)
        13x1x1  identical  0.975     0.925            0.970 (164)      0.969 (32)   1.000 (168)
        13x1x1  small      0.935     0.935            0.955 (155)      1.000 (43)   1.000 (172)
        13x1x1  large      0.940     0.940            0.948 (172)      0.745 (47)   1.000 (149)

    Poor where the error is small and the shape's bias is not: on the paper's grid (17 sigmas x 5 networks x
    10,000 images) with networks that differ only by test-set noise the fit's bias (+0.006 decades sagging, -0.003
    erfc^2, -0.045 step and floor 0.2) exceeds the interval, and with small differences between networks still for
    the step and the floor. With one network a floor of 0.2 leaves residuals that inflate the relative error to 57-74%.
    The asserted bounds are this table less 0.05 in coverage and 10 fitted sweeps (the simulation is seeded; the
    margin is for other platforms' arithmetic); Eq. 1 itself must cover 90-98% as in the study above.
    """
    measured = _docstring_table(test_coverage_on_curves_that_are_not_eq1.__doc__)
    print(f"\n{'grid':7s} {'spread':10s}" + "".join(f"{s:>22s}" for s in SHAPES))
    for spread_name, spread in SPREADS.items():
        results = [shape_coverage(shape, GRIDS[grid], spread, SHAPE_TRIALS, seed=0) for shape in SHAPES]
        print(f"{grid:7s} {spread_name:10s}" + "".join(f"{r['coverage']:16.3f} ({r['fitted']:3d})" for r in results))
        for shape, r, (coverage, fitted) in zip(SHAPES, results, measured[grid, spread_name], strict=True):
            assert r["fitted"] >= fitted - 10 and r["coverage"] >= coverage - 0.05, (grid, spread_name, shape, r)
        assert 0.90 <= results[0]["coverage"] <= 0.98 and results[0]["fitted"] == SHAPE_TRIALS, results[0]


def test_the_true_midpoints_of_the_shapes():
    """The truths of the study beyond Eq. 1, computed numerically, against their closed forms where there is one."""
    identical = SPREADS["identical"]
    assert true_midpoint("logistic", identical) == pytest.approx(0.3, rel=1e-9)
    assert true_midpoint("floor 0.2", SPREADS["large"]) == pytest.approx(0.3, rel=1e-6)  # symmetric spread of Eq. 1
    for shape, width in (("erfc^2 collapse", 0.25), ("step", 0.04)):  # (erfc(c) / 2)**2 = 1/2 at c = erfcinv(sqrt 2)
        assert true_midpoint(shape, identical) == pytest.approx(0.3 * 10 ** (erfcinv(math.sqrt(2)) * width), rel=1e-9)
    sag = true_midpoint("sagging plateau", identical)
    assert 0.25 < sag < 0.3 and shape_height("sagging plateau", np.log10(sag)) == pytest.approx(0.5, abs=1e-12)
    _, _, truth = simulate_shape("erfc^2 collapse", GRIDS["13x1x1"], SPREADS["large"], 50, seed=1)
    assert truth.std() > 0.05 * 0.24  # one network: its own midpoint
    with pytest.raises(ValueError, match="unknown shape"):
        shape_height("sine", np.zeros(3))
