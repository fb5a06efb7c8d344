import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from paperlib import DEFAULT_SIGMAS, fit_midpoint
from paperlib.midpoint import fit_midpoint_calibrated, logistic


@pytest.mark.parametrize("true_mid,slope", [(0.154, 4.0), (0.5, 6.0), (2.59, 3.0)])
def test_recovers_a_known_midpoint_from_noisy_data(true_mid, slope):
    rng = np.random.default_rng(0)
    x = np.log10(DEFAULT_SIGMAS)
    repeats = logistic(x, 0.75, slope, math.log10(true_mid))[None, :] + rng.normal(0, 0.01, (5, len(x)))
    fit = fit_midpoint(DEFAULT_SIGMAS, repeats.mean(0), repeats.std(0, ddof=1))
    assert fit.ok, fit.reason
    assert fit.sigma_mid == pytest.approx(true_mid, rel=0.02)
    assert 0 < fit.rel_err < 0.05
    assert fit.a_max == pytest.approx(0.75, abs=0.01)
    assert np.allclose(fit.curve(DEFAULT_SIGMAS), repeats.mean(0), atol=0.03)


def test_midpoint_is_where_the_curve_is_halfway():
    fit = fit_midpoint(DEFAULT_SIGMAS, logistic(np.log10(DEFAULT_SIGMAS), 0.8, 5.0, math.log10(0.3)))
    assert fit.ok
    assert float(fit.curve(np.array([fit.sigma_mid]))[0]) == pytest.approx(0.1 + (0.8 - 0.1) / 2)
    assert str(fit).startswith("0.3 (")


def test_flat_curve_has_no_midpoint():
    fit = fit_midpoint(DEFAULT_SIGMAS, np.full(17, 0.1) + np.random.default_rng(1).normal(0, 0.003, 17))
    assert not fit.ok and math.isnan(fit.sigma_mid) and "chance" in fit.reason


def test_curve_that_never_falls_inside_the_grid():
    acc = logistic(np.log10(DEFAULT_SIGMAS), 0.8, 5.0, math.log10(500.0))
    fit = fit_midpoint(DEFAULT_SIGMAS, acc)
    assert not fit.ok and "never falls below the midpoint" in fit.reason
    assert np.isnan(fit.curve(DEFAULT_SIGMAS)).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="equal length"):
        fit_midpoint([0.1, 1.0], [0.5])


def test_a_midpoint_the_grid_does_not_determine_is_not_reported():
    """A cliff between two grid points: the slope is free and the shift with it (a real quick-profile curve)."""
    sigmas = np.logspace(-2, 2, 6)
    acc = np.array([0.306, 0.314, 0.159, 0.1, 0.1, 0.1])
    fit = fit_midpoint(sigmas, acc, np.full(6, 0.005))
    assert not fit.ok and "does not determine the midpoint" in fit.reason and math.isnan(fit.sigma_mid)
    assert fit_midpoint(sigmas, acc, np.full(6, 0.005), max_rel_err=np.inf).ok


def test_the_papers_fit_gives_a_normal_interval_from_exact_weights_and_a_t_interval_from_residuals():
    x = np.log10(DEFAULT_SIGMAS)
    acc = logistic(x, 0.75, 5.0, math.log10(0.3)) + np.random.default_rng(2).normal(0, 0.01, 17)
    weighted, residuals = fit_midpoint(DEFAULT_SIGMAS, acc, np.full(17, 0.01)), fit_midpoint(DEFAULT_SIGMAS, acc)
    for fit, q in ((weighted, 1.959964), (residuals, student_t.ppf(0.975, 14))):
        se = fit.rel_err / math.log(10)
        assert fit.ci95 == pytest.approx((fit.sigma_mid * 10 ** (-q * se), fit.sigma_mid * 10 ** (q * se)))
    assert weighted.dof == math.inf and residuals.dof == 14 and "residuals" in residuals.error_from


def _networks(n_networks, spread=0.05, seed=0, sigmas=DEFAULT_SIGMAS, images=10_000):
    """Per-network accuracies [networks, sigmas]: logistics around 0.3 whose midpoints differ by ``spread`` decades."""
    rng = np.random.default_rng(seed)
    x0 = math.log10(0.3) + spread * rng.standard_normal((n_networks, 1))
    return rng.binomial(images, logistic(np.log10(sigmas), 0.75, 5.0, x0)) / images, x0


def test_calibrated_error_is_the_spread_of_the_networks_with_a_t_interval():
    acc, x0 = _networks(5, spread=0.05)
    fit = fit_midpoint_calibrated(DEFAULT_SIGMAS, acc)
    assert fit.ok and fit.dof == 4 and fit.error_from == "spread of 5 networks"
    assert math.log10(fit.sigma_mid) == pytest.approx(x0.mean(), abs=0.01)
    # about the standard error of the networks' mean midpoint (the influence of a network ~ its midpoint)
    assert fit.rel_err / math.log(10) == pytest.approx(x0.std(ddof=1) / math.sqrt(5), rel=0.3)
    se, q = fit.rel_err / math.log(10), student_t.ppf(0.975, 4)
    assert fit.ci95 == pytest.approx((fit.sigma_mid * 10 ** (-q * se), fit.sigma_mid * 10 ** (q * se)))
    assert fit.ci95[0] < fit.sigma_mid < fit.ci95[1]


def test_calibrated_error_of_one_network_comes_from_its_residuals():
    acc, _ = _networks(1, images=2000)
    one = fit_midpoint_calibrated(DEFAULT_SIGMAS, acc[0])
    assert one.ok and one.dof == 17 - 3 and one.error_from == "fit residuals of one network"
    assert one.sigma_mid == pytest.approx(fit_midpoint_calibrated(DEFAULT_SIGMAS, acc).sigma_mid)
    assert 0.001 < one.rel_err < 0.05


def test_identical_networks_have_no_spread_and_a_missing_point_counts_with_the_mean():
    acc, _ = _networks(3, spread=0.0)
    same = fit_midpoint_calibrated(DEFAULT_SIGMAS, np.repeat(acc[:1], 3, axis=0))
    assert same.ok and same.sigma_mid_err == pytest.approx(0.0, abs=1e-12)
    gap = acc.copy()
    gap[1, 5] = np.nan
    fit = fit_midpoint_calibrated(DEFAULT_SIGMAS, gap)
    full = fit_midpoint_calibrated(DEFAULT_SIGMAS, np.where(np.isnan(gap), np.nanmean(gap, 0), gap))
    assert fit.ok and fit.sigma_mid == pytest.approx(full.sigma_mid)
    assert fit.sigma_mid_err == pytest.approx(full.sigma_mid_err)


def test_calibrated_fit_rejects_what_the_papers_fit_rejects():
    flat = np.full((2, 17), 0.1)
    assert "chance" in fit_midpoint_calibrated(DEFAULT_SIGMAS, flat).reason
    late = np.tile(logistic(np.log10(DEFAULT_SIGMAS), 0.8, 5.0, math.log10(500.0)), (2, 1))
    assert "never falls below the midpoint" in fit_midpoint_calibrated(DEFAULT_SIGMAS, late).reason
    with pytest.raises(ValueError, match="one value per accuracy"):
        fit_midpoint_calibrated(DEFAULT_SIGMAS[:5], flat)
    with pytest.raises(ValueError, match=r"\[networks, sigmas\]"):
        fit_midpoint_calibrated(DEFAULT_SIGMAS, flat[None])


def test_a_network_at_chance_does_not_make_the_error_zero():
    """One working network and one diverged (flat at chance): the jackknife over networks would say 0; the
    error then comes from the fit residuals of the mean curve (docs/protocol.md §11)."""
    from paperlib.midpoint import fit_midpoint_calibrated, logistic

    x = np.logspace(-2, 2, 13)
    good = logistic(np.log10(x), 0.6, 5.0, np.log10(0.3)) + np.random.default_rng(0).normal(0, 0.01, 13)
    fit = fit_midpoint_calibrated(x, np.stack([good, np.full(13, 0.1)]))
    assert fit.ok and fit.sigma_mid_err > 0.005 and "1 of 2 networks at chance" in fit.error_from
    assert fit.ci95[0] < 0.3 < fit.ci95[1]
