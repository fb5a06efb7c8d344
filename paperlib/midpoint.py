"""The midpoint noise level ``sigma_mid`` (paper Eq. 1-2, REFERENCE §3).

A scaled and shifted logistic function of ``x = log10(sigma)``,

    A(x) = a_min + (a_max - a_min) / (1 + exp(k * (x - x0))),

falls from ``a_max`` to ``a_min`` (chance, 0.1 on CIFAR-10). It is fitted to
the mean accuracies, weighted by their uncertainties (weighted least squares,
``scipy.optimize.curve_fit``), with ``a_max``, the slope ``k`` and the shift
``x0`` free and ``a_min`` fixed. The curve crosses ``a_min + (a_max - a_min)/2``
at ``x0``, so ``sigma_mid = 10**x0``; its standard error comes from the fit
covariance, ``err = ln(10) * sigma_mid * sqrt(var(x0))``, and is reported as a
relative error like the paper's ``0.154 (0.5%)``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


def logistic(x: np.ndarray, a_max: float, k: float, x0: float, a_min: float = 0.1) -> np.ndarray:
    """Eq. 1: accuracy at ``x = log10(sigma)``; falls from ``a_max`` to ``a_min`` for ``k > 0``."""
    return a_min + (a_max - a_min) / (1.0 + np.exp(np.clip(k * (np.asarray(x) - x0), -50, 50)))


@dataclass(frozen=True)
class MidpointFit:
    """Result of :func:`fit_midpoint`. Accuracies are fractions in [0, 1]."""

    sigma_mid: float
    """midpoint noise level (absolute sigma); NaN when ``ok`` is False"""
    sigma_mid_err: float
    """standard error of ``sigma_mid`` from the fit covariance; NaN when not ok"""
    a_max: float
    """fitted maximal accuracy"""
    a_min: float
    """fixed minimal accuracy (chance)"""
    slope: float
    """fitted slope ``k`` per decade of sigma"""
    ok: bool
    """whether the fit gives a usable midpoint"""
    reason: str = ""
    """why ``ok`` is False (empty when ok)"""

    @property
    def rel_err(self) -> float:
        """relative standard error of ``sigma_mid`` (0.005 = 0.5%)"""
        return self.sigma_mid_err / self.sigma_mid if self.ok else math.nan

    def curve(self, sigmas: np.ndarray) -> np.ndarray:
        """The fitted accuracy at ``sigmas`` (NaN when not ok)."""
        sigmas = np.asarray(sigmas, dtype=float)
        if not self.ok:
            return np.full_like(sigmas, np.nan)
        return logistic(np.log10(sigmas), self.a_max, self.slope, math.log10(self.sigma_mid), self.a_min)

    def __str__(self) -> str:
        if not self.ok:
            return f"no midpoint ({self.reason})"
        return f"{self.sigma_mid:.3g} ({100 * self.rel_err:.1f}%)"


def _failed(reason: str, a_min: float, a_max: float = math.nan) -> MidpointFit:
    return MidpointFit(math.nan, math.nan, a_max, a_min, math.nan, False, reason)


def fit_midpoint(
    sigmas: np.ndarray,
    acc_mean: np.ndarray,
    acc_std: np.ndarray | None = None,
    a_min: float = 0.1,
    std_floor: float = 1e-3,
    min_span: float = 0.05,
    max_rel_err: float = 1.0,
) -> MidpointFit:
    """Fit Eq. 1 to an accuracy-vs-sigma curve and return its midpoint noise level.

    Args:
        sigmas: noise levels, ``[n]``, > 0 (a log grid, e.g. ``logspace(-2, 2, 17)``).
        acc_mean: mean accuracy at each sigma, ``[n]``, fractions.
        acc_std: uncertainty of each mean (e.g. std over seeds), ``[n]``; used as
            absolute weights (``absolute_sigma=True``). ``None``: unweighted, the
            covariance scaled by the residuals.
        a_min: the minimal accuracy the curve falls to (chance: 0.1 on CIFAR-10).
        std_floor: smallest uncertainty used, so exact repeats do not get infinite weight.
        min_span: the peak must exceed ``a_min`` by this much to define a midpoint.
        max_rel_err: a fit whose relative standard error of ``sigma_mid`` exceeds
            this (1.0 = 100%) does not determine the midpoint: too few grid
            points on the fall, so the slope and shift trade off freely.

    Returns:
        A :class:`MidpointFit`; ``ok`` is False, with a reason and NaN
        ``sigma_mid``, when the curve does not cross its midpoint inside the
        grid or the fit fails. Never raises for such data.
    """
    x = np.log10(np.asarray(sigmas, dtype=float))
    y = np.asarray(acc_mean, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"sigmas and acc_mean must be 1-D of equal length, got {np.shape(sigmas)} and {np.shape(acc_mean)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("sigmas must be finite and > 0")
    finite = np.isfinite(y)
    if finite.sum() < 4:
        return _failed("fewer than 4 finite accuracies", a_min)
    w = None
    if acc_std is not None:
        w = np.maximum(np.nan_to_num(np.asarray(acc_std, dtype=float), nan=std_floor), std_floor)[finite]
    x, y = x[finite], y[finite]
    peak = float(y.max())
    if peak - a_min < min_span:
        return _failed(f"peak accuracy {peak:.3f} is within {min_span} of a_min={a_min}: the model is at chance", a_min, peak)
    half = a_min + (peak - a_min) / 2
    if y[0] < half:
        return _failed("accuracy is already below the midpoint at the smallest sigma of the grid", a_min, peak)
    if y[-1] > half:
        return _failed("accuracy never falls below the midpoint inside the sigma grid", a_min, peak)
    x0_guess = float(x[np.argmax(y < half)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            popt, pcov = curve_fit(
                lambda xx, am, k, x0: logistic(xx, am, k, x0, a_min), x, y,
                p0=(peak, 5.0, x0_guess), sigma=w, absolute_sigma=w is not None,
                bounds=([a_min, 0.0, x.min() - 1], [1.0, 1e3, x.max() + 1]), maxfev=20000,
            )
    except (RuntimeError, ValueError, OptimizeWarning) as exc:
        return _failed(f"the fit did not converge: {exc}", a_min, peak)
    a_max, k, x0 = map(float, popt)
    var = float(pcov[2, 2])
    if not (np.isfinite(var) and var >= 0):
        return _failed("the fit covariance is not finite", a_min, a_max)
    if not x.min() <= x0 <= x.max():
        return _failed(f"the fitted midpoint 10**{x0:.2f} lies outside the sigma grid", a_min, a_max)
    sigma_mid = 10.0 ** x0
    err = math.log(10) * sigma_mid * math.sqrt(var)
    if err > max_rel_err * sigma_mid:
        return _failed(f"the grid does not determine the midpoint (fit near {sigma_mid:.3g}, relative error "
                       f"{err / sigma_mid:.3g}): too few points on the fall", a_min, a_max)
    return MidpointFit(sigma_mid, err, a_max, a_min, k, True)
