import math

import numpy as np
import pytest

from paperlib import DEFAULT_SIGMAS, fit_midpoint
from paperlib.midpoint import logistic


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
