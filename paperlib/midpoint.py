"""The midpoint noise level ``sigma_mid`` (paper Eq. 1-2, docs/protocol.md §3) and its error (§11).

A scaled and shifted logistic function of ``x = log10(sigma)``,

    A(x) = a_min + (a_max - a_min) / (1 + exp(k * (x - x0))),

falls from ``a_max`` to ``a_min`` (chance, 0.1 on CIFAR-10); ``a_max``, the
slope ``k`` and the shift ``x0`` are free, ``a_min`` is fixed. The curve
crosses ``a_min + (a_max - a_min)/2`` at ``x0``, so ``sigma_mid = 10**x0``;
its standard error is ``err = ln(10) * sigma_mid * se(x0)``, reported as a
relative error like the paper's ``0.154 (0.5%)``. Two fits differ only in
where ``se(x0)`` comes from:

- :func:`fit_midpoint`, the paper's: weighted least squares on the mean
  curve, the given uncertainties taken as exact and independent between grid
  points (``absolute_sigma=True``), ``se(x0)`` from the fit covariance. Its
  error is only as good as those weights: the spread over networks (not the
  standard error of their mean) makes it too wide; a spread from 2 networks,
  itself uncertain, too narrow (measured by :func:`simulate_coverage`).
- :func:`fit_midpoint_calibrated`, ours: the per-network curves go in. The
  mean curve is fitted with binomial-shaped weights ``1 / (p (1 - p))``. With
  N >= 2 networks ``se(x0)`` is the spread over networks of each network's
  linearised influence on ``x0`` (a delta-method jackknife over networks, the
  cluster-robust sandwich: it holds however a network's points co-vary), with
  N - 1 degrees of freedom; with one network it is the fit covariance scaled
  by the reduced chi-square of the residuals (n - 3 degrees of freedom), and
  then describes that network's midpoint, not the population of networks'.
  Its 95% interval ``ci95`` uses the Student-t quantile for those degrees of
  freedom: with 2 networks that is +-12.7 standard errors (in log10 sigma).

:func:`simulate_coverage` measures how often either method's 95% interval holds
the true midpoint of simulated networks (docs/protocol.md §11).
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import t as student_t


def logistic(x: np.ndarray, a_max: float, k: float, x0: float, a_min: float = 0.1) -> np.ndarray:
    """Eq. 1: accuracy at ``x = log10(sigma)``; falls from ``a_max`` to ``a_min`` for ``k > 0``."""
    return a_min + (a_max - a_min) / (1.0 + np.exp(np.clip(k * (np.asarray(x) - x0), -50, 50)))


def _jacobian(x: np.ndarray, a_max: float, k: float, x0: float, a_min: float) -> np.ndarray:
    """d logistic / d (a_max, k, x0) at each ``x``, ``[n, 3]``."""
    s = 1.0 / (1.0 + np.exp(np.clip(k * (x - x0), -50, 50)))
    ds = (a_max - a_min) * s * (1.0 - s)
    return np.stack([s, -ds * (x - x0), ds * k], axis=1)


@dataclass(frozen=True)
class MidpointFit:
    """Result of :func:`fit_midpoint` or :func:`fit_midpoint_calibrated`. Accuracies are fractions in [0, 1]."""

    sigma_mid: float
    """midpoint noise level (absolute sigma); NaN when ``ok`` is False"""
    sigma_mid_err: float
    """standard error of ``sigma_mid`` (absolute sigma, ``ln(10) * sigma_mid * se(x0)``); NaN when not ok"""
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
    ci95: tuple[float, float] = (math.nan, math.nan)
    """95% confidence interval of ``sigma_mid`` (absolute sigma): ``10**(x0 -+ q * se(x0))``, ``q`` the
    Student-t quantile for ``dof`` (1.96 when ``dof`` is inf); NaN when not ok"""
    dof: float = math.inf
    """degrees of freedom of the error: inf (uncertainties taken as exact), N - 1 (N networks), n - 3 (residuals)"""
    error_from: str = ""
    """where the error comes from, in words (e.g. ``"spread of 5 networks"``)"""

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


def _grid(sigmas: np.ndarray, n: int) -> np.ndarray:
    """log10 of ``sigmas``, checked: 1-D, ``n`` long, finite and > 0."""
    x = np.log10(np.asarray(sigmas, dtype=float))
    if x.ndim != 1 or len(x) != n:
        raise ValueError(f"sigmas must be 1-D with one value per accuracy ({n}), got shape {np.shape(sigmas)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("sigmas must be finite and > 0")
    return x


def _check_curve(x: np.ndarray, y: np.ndarray, a_min: float, min_span: float) -> MidpointFit | float:
    """A failed fit when the finite curve ``y(x)`` cannot define a midpoint, else the initial guess of ``x0``."""
    if len(y) < 4:
        return _failed("fewer than 4 finite accuracies", a_min)
    peak = float(y.max())
    if peak - a_min < min_span:
        return _failed(f"peak accuracy {peak:.3f} is within {min_span} of a_min={a_min}: the model is at chance",
                       a_min, peak)
    half = a_min + (peak - a_min) / 2
    if y[0] < half:
        return _failed("accuracy is already below the midpoint at the smallest sigma of the grid", a_min, peak)
    if y[-1] > half:
        return _failed("accuracy never falls below the midpoint inside the sigma grid", a_min, peak)
    return float(x[np.argmax(y < half)])


def _solve(x: np.ndarray, y: np.ndarray, sd: np.ndarray, a_min: float, x0_guess: float) -> np.ndarray:
    """Weighted least squares of Eq. 1: ``(a_max, k, x0)``.

    Levenberg-Marquardt first (fast); where it ends outside the bounds
    ``a_min <= a_max <= 1``, ``0 <= k <= 1000``, ``x0`` within a decade of the
    grid, the bounded trust-region fit. Raises RuntimeError/ValueError when
    neither converges.
    """
    def f(xx, am, k, x0):
        return logistic(xx, am, k, x0, a_min)

    def jac(xx, am, k, x0):
        return _jacobian(xx, am, k, x0, a_min)

    p0 = (float(y.max()), 5.0, x0_guess)
    lo, hi = np.array([a_min, 0.0, x.min() - 1]), np.array([1.0, 1e3, x.max() + 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # the covariance is computed by the caller
        try:
            popt, _ = curve_fit(f, x, y, p0=p0, sigma=sd, jac=jac, method="lm", maxfev=2000)
            if np.all(np.isfinite(popt)) and np.all(popt >= lo) and np.all(popt <= hi):
                return popt
        except (RuntimeError, ValueError):
            pass
        popt, _ = curve_fit(f, x, y, p0=p0, sigma=sd, jac=jac, bounds=(lo, hi), maxfev=20000)
    return popt


def _inverse_hessian(x: np.ndarray, popt: np.ndarray, sd: np.ndarray, a_min: float) -> tuple[np.ndarray, np.ndarray]:
    """``(J^T W J)^-1`` and ``J`` at the optimum, ``W = 1/sd**2``; NaN matrix when ``J`` is rank deficient."""
    jac = _jacobian(x, *popt, a_min)
    _, s, vt = np.linalg.svd(jac / sd[:, None], full_matrices=False)
    if s.min() <= np.finfo(float).eps * s.max() * len(x):
        return np.full((3, 3), np.nan), jac
    return (vt.T / s**2) @ vt, jac


@functools.lru_cache(maxsize=64)
def _t975(dof: float) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (the normal's when inf)."""
    return 1.959963984540054 if math.isinf(dof) else float(student_t.ppf(0.975, dof))


def _result(popt: np.ndarray, var_x0: float, dof: float, x: np.ndarray, a_min: float, max_rel_err: float,
            error_from: str) -> MidpointFit:
    a_max, k, x0 = map(float, popt)
    if not (np.isfinite(var_x0) and var_x0 >= 0):
        return _failed("the fit covariance is not finite", a_min, a_max)
    if not x.min() <= x0 <= x.max():
        return _failed(f"the fitted midpoint 10**{x0:.2f} lies outside the sigma grid", a_min, a_max)
    sigma_mid, se = 10.0 ** x0, math.sqrt(var_x0)
    err = math.log(10) * sigma_mid * se
    if err > max_rel_err * sigma_mid:
        return _failed(f"the grid does not determine the midpoint (fit near {sigma_mid:.3g}, relative error "
                       f"{err / sigma_mid:.3g}): too few points on the fall", a_min, a_max)
    q = _t975(dof)
    with np.errstate(over="ignore"):
        ci95 = (float(np.power(10.0, x0 - q * se)), float(np.power(10.0, x0 + q * se)))
    return MidpointFit(sigma_mid, err, a_max, a_min, k, True, ci95=ci95, dof=dof, error_from=error_from)


def fit_midpoint(
    sigmas: np.ndarray,
    acc_mean: np.ndarray,
    acc_std: np.ndarray | None = None,
    a_min: float = 0.1,
    std_floor: float = 1e-3,
    min_span: float = 0.05,
    max_rel_err: float = 1.0,
) -> MidpointFit:
    """Fit Eq. 1 to an accuracy-vs-sigma curve the paper's way and return its midpoint noise level.

    The error is only as good as ``acc_std``: taken as exact and independent
    between grid points. For error bars that hold their 95% use
    :func:`fit_midpoint_calibrated` on the per-network curves (docs/protocol.md §11).

    Args:
        sigmas: noise levels, ``[n]``, > 0 (a log grid, e.g. ``logspace(-2, 2, 17)``).
        acc_mean: mean accuracy at each sigma, ``[n]``, fractions.
        acc_std: uncertainty of each mean (the paper: the spread over its networks), ``[n]``;
            used as absolute weights (``absolute_sigma=True``, ``dof`` inf). ``None``: unweighted,
            the covariance scaled by the reduced chi-square of the residuals (``dof = n - 3``).
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
    y = np.asarray(acc_mean, dtype=float)
    if y.ndim != 1 or np.shape(sigmas) != y.shape:
        raise ValueError(f"sigmas and acc_mean must be 1-D of equal length, got {np.shape(sigmas)} and {y.shape}")
    x = _grid(sigmas, len(y))
    finite = np.isfinite(y)
    sd = np.ones_like(y) if acc_std is None else \
        np.maximum(np.nan_to_num(np.asarray(acc_std, dtype=float), nan=std_floor), std_floor)
    x, y, sd = x[finite], y[finite], sd[finite]
    guess = _check_curve(x, y, a_min, min_span)
    if isinstance(guess, MidpointFit):
        return guess
    try:
        popt = _solve(x, y, sd, a_min, guess)
    except (RuntimeError, ValueError) as exc:
        return _failed(f"the fit did not converge: {exc}", a_min, float(y.max()))
    hinv, _ = _inverse_hessian(x, popt, sd, a_min)
    if acc_std is not None:
        return _result(popt, hinv[2, 2], math.inf, x, a_min, max_rel_err, "the given uncertainties, taken as exact")
    dof = len(x) - 3
    chi2 = float(np.sum(((y - logistic(x, *popt, a_min)) / sd) ** 2))
    return _result(popt, hinv[2, 2] * chi2 / dof, dof, x, a_min, max_rel_err, "the fit residuals")


def fit_midpoint_calibrated(
    sigmas: np.ndarray,
    acc: np.ndarray,
    a_min: float = 0.1,
    min_span: float = 0.05,
    max_rel_err: float = 1.0,
) -> MidpointFit:
    """Fit Eq. 1 to the mean of per-network curves, with an error whose 95% interval holds (docs/protocol.md §11).

    The mean curve over networks is fitted with weights ``1 / (p (1 - p))``
    (``p`` the mean accuracy, clipped to [0.02, 0.98]: the shape of test-set
    noise; its scale does not matter). The standard error of ``x0 = log10(sigma_mid)``:

    - N >= 2 networks: ``sqrt(sum_j (g . (y_j - y))**2 / (N (N - 1)))``, with
      ``g = d x0 / d y`` the fit's linear response to the mean curve and ``y_j``
      network j's curve: the standard error of the mean of the networks'
      influences (delta-method jackknife over networks). It needs no model of
      how a network's points co-vary; ``dof = N - 1``. The target is the
      midpoint of the population of networks (of the mean curve).
    - one network, or fewer than 2 networks above chance (the others, e.g.
      diverged ones, only scale the mean curve): the fit covariance scaled by
      the reduced chi-square of the residuals, ``dof = n - 3``. The target is that network's own midpoint;
      the spread between networks is not in it.

    ``ci95`` uses the Student-t quantile for ``dof``; ``sigma_mid_err`` stays
    the standard error (so ``ci95`` is wider than +-1.96 errors with few networks).

    Args:
        sigmas: noise levels, ``[n]``, > 0.
        acc: accuracy per network and sigma, ``[networks, n]`` (or ``[n]`` for one
            network), fractions; each network's value averaged over its noise draws.
            NaN where a network lacks a sigma (it then counts with the mean there).
        a_min, min_span, max_rel_err: as for :func:`fit_midpoint`.

    Returns:
        A :class:`MidpointFit` with ``ci95``, ``dof`` and ``error_from`` set; not ok
        (with a reason) when the mean curve does not define a midpoint. Never raises for such data.
    """
    a = np.asarray(acc, dtype=float)
    a = a[None, :] if a.ndim == 1 else a
    if a.ndim != 2:
        raise ValueError(f"acc must be [networks, sigmas] or [sigmas], got shape {np.shape(acc)}")
    x = _grid(sigmas, a.shape[1])
    a = a[np.isfinite(a).any(axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no network at that sigma
        y = np.nanmean(a, axis=0) if len(a) else np.full(len(x), np.nan)
    finite = np.isfinite(y)
    x, y, a = x[finite], y[finite], a[:, finite]
    a = np.where(np.isfinite(a), a, y)
    guess = _check_curve(x, y, a_min, min_span)
    if isinstance(guess, MidpointFit):
        return guess
    p = np.clip(y, 0.02, 0.98)
    sd = np.sqrt(p * (1 - p))
    try:
        popt = _solve(x, y, sd, a_min, guess)
    except (RuntimeError, ValueError) as exc:
        return _failed(f"the fit did not converge: {exc}", a_min, float(y.max()))
    hinv, jac = _inverse_hessian(x, popt, sd, a_min)
    n_net = len(a)
    # networks at chance (e.g. diverged, docs/protocol.md §11) only scale the mean curve's amplitude and do not move
    # its midpoint, so they carry no information on the midpoint's spread: with fewer than 2 working networks the
    # jackknife would say 0, and the error comes from the fit residuals of the mean curve instead
    working = int(np.sum(np.nanmax(a, axis=1) - a_min >= min_span))
    if n_net >= 2 and working >= 2:
        g = hinv[2] @ (jac / sd[:, None] ** 2).T
        influence = (a - y) @ g
        var = float(influence @ influence) / (n_net * (n_net - 1))
        return _result(popt, var, n_net - 1, x, a_min, max_rel_err, f"spread of {n_net} networks")
    dof = len(x) - 3
    chi2 = float(np.sum(((y - logistic(x, *popt, a_min)) / sd) ** 2))
    what = ("fit residuals of one network" if n_net == 1
            else f"fit residuals ({n_net - working} of {n_net} networks at chance)")
    return _result(popt, hinv[2, 2] * chi2 / dof, dof, x, a_min, max_rel_err, what)


@dataclass(frozen=True)
class NetworkSpread:
    """How much separately trained networks differ, for :func:`simulate_sweeps` (docs/protocol.md §11)."""

    x0_sd: float = 0.0
    """standard deviation of a network's ``log10(sigma_mid)`` around the population's (decades)"""
    a_max_sd: float = 0.0
    """standard deviation of a network's peak accuracy (fraction)"""
    slope_sd: float = 0.0
    """standard deviation of ``log(slope)``: the slope's relative spread"""


#: The spreads of the calibration study: test-set noise only; small; large (as between our quick profile's
#: LeNet-5 seeds, whose midpoints differ by up to 0.23 decades).
SPREADS: dict[str, NetworkSpread] = {
    "identical": NetworkSpread(),
    "small": NetworkSpread(x0_sd=0.02, a_max_sd=0.01, slope_sd=0.05),
    "large": NetworkSpread(x0_sd=0.1, a_max_sd=0.03, slope_sd=0.2),
}


@dataclass(frozen=True)
class SimGrid:
    """The shape of a simulated sweep (:func:`simulate_sweeps`)."""

    n_sigmas: int
    """points of the sigma grid ``logspace(-2, 2, n_sigmas)``"""
    seeds: int
    """networks (separately trained)"""
    draws: int
    """noise draws per network and sigma"""
    test_images: int
    """test images behind each accuracy (the binomial n of one draw)"""


#: The grids of the calibration study: the paper's protocol; the quick profile's LeNet-5 (2 seeds), ResNet-18
#: (one network, 2 noise draws) and VGG-11 (one network, one draw: also walking noise's default).
GRIDS: dict[str, SimGrid] = {
    "17x5": SimGrid(n_sigmas=17, seeds=5, draws=1, test_images=10_000),
    "13x2": SimGrid(n_sigmas=13, seeds=2, draws=1, test_images=2_000),
    "13x1x2": SimGrid(n_sigmas=13, seeds=1, draws=2, test_images=1_000),
    "13x1x1": SimGrid(n_sigmas=13, seeds=1, draws=1, test_images=500),
}


def simulate_sweeps(
    grid: SimGrid,
    spread: NetworkSpread,
    trials: int,
    *,
    seed: int | np.random.Generator,
    sigma_mid: float = 0.3,
    a_max: float = 0.7,
    slope: float = 5.0,
    a_min: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated sweeps of networks whose true curves are Eq. 1 around a known midpoint.

    Each network draws its own ``log10(sigma_mid)`` (normal around the
    population's, sd ``spread.x0_sd``), peak accuracy (normal, clipped to
    ``[a_min + 0.1, 0.99]``) and slope (log-normal); each accuracy is
    ``binomial(test_images, p) / test_images`` for the network's true ``p``.

    Returns:
        ``sigmas`` ``[n]``; accuracies ``[trials, seeds, draws, n]``; the true midpoint
        of each trial ``[trials]``: ``sigma_mid`` of the population with several networks,
        the one network's own with ``seeds == 1`` (what its error can speak for).
    """
    if min(grid.n_sigmas, grid.seeds, grid.draws, grid.test_images, trials) < 1:
        raise ValueError(f"grid sizes and trials must be >= 1, got {grid} and trials={trials}")
    rng = np.random.default_rng(seed)
    sigmas = np.logspace(-2, 2, grid.n_sigmas)
    shape = (trials, grid.seeds, 1, 1)
    x0 = math.log10(sigma_mid) + spread.x0_sd * rng.standard_normal(shape)
    top = np.clip(a_max + spread.a_max_sd * rng.standard_normal(shape), a_min + 0.1, 0.99)
    k = slope * np.exp(spread.slope_sd * rng.standard_normal(shape))
    p = logistic(np.log10(sigmas), top, k, x0, a_min)
    acc = rng.binomial(grid.test_images, np.broadcast_to(p, (trials, grid.seeds, grid.draws, grid.n_sigmas)))
    truth = 10.0 ** x0[:, 0, 0, 0] if grid.seeds == 1 else np.full(trials, sigma_mid)
    return sigmas, acc / grid.test_images, truth


@dataclass(frozen=True)
class Coverage:
    """How often a method's 95% interval holds the true midpoint (:func:`simulate_coverage`)."""

    method: str
    """``"paper"`` (:func:`fit_midpoint`, +-1.96 errors) or ``"calibrated"`` (:func:`fit_midpoint_calibrated`)"""
    trials: int
    """simulated sweeps"""
    fitted: int
    """sweeps whose fit gave a midpoint"""
    coverage: float
    """fraction of the fitted sweeps whose 95% interval holds the true midpoint"""
    median_rel_err: float
    """median relative standard error of ``sigma_mid`` reported (0.01 = 1%)"""
    median_rel_halfwidth: float
    """median half-width of the 95% interval relative to ``sigma_mid``"""


def _interval(fit: MidpointFit, method: str) -> tuple[float, float]:
    if method == "paper":
        return fit.sigma_mid - 1.96 * fit.sigma_mid_err, fit.sigma_mid + 1.96 * fit.sigma_mid_err
    return fit.ci95


def simulate_coverage(
    grid: SimGrid,
    spread: NetworkSpread,
    trials: int = 400,
    *,
    method: Literal["paper", "calibrated"] = "calibrated",
    seed: int = 0,
    **truth: float,
) -> Coverage:
    """Coverage of the 95% interval of ``sigma_mid`` on :func:`simulate_sweeps` (docs/protocol.md §11).

    ``"paper"``: today's tables before calibration: each network's accuracy
    averaged over its draws, :func:`fit_midpoint` on the mean over networks
    weighted by their standard deviation (with one network: the standard
    deviation over its draws; with one draw NaN, which :func:`fit_midpoint`
    floors at 0.001), interval ``sigma_mid +- 1.96 sigma_mid_err``. ``"calibrated"``: :func:`fit_midpoint_calibrated`
    on the per-network curves, interval ``ci95``. Seeded: same arguments,
    same numbers.

    Args:
        grid, spread, trials: see :func:`simulate_sweeps`.
        method: which fit.
        seed: seeds the simulation.
        truth: ``sigma_mid``, ``a_max``, ``slope``, ``a_min`` of :func:`simulate_sweeps`.
    """
    if method not in ("paper", "calibrated"):
        raise ValueError(f"method must be 'paper' or 'calibrated', got {method!r}")
    sigmas, acc, true_mid = simulate_sweeps(grid, spread, trials, seed=seed, **truth)
    a_min = truth.get("a_min", 0.1)
    per_net = acc.mean(axis=2)
    covered, rel_err, half = [], [], []
    for i in range(trials):
        if method == "paper":
            spread_i = (
                per_net[i].std(0, ddof=1)
                if grid.seeds > 1
                else (acc[i, 0].std(0, ddof=1) if grid.draws > 1 else np.full(grid.n_sigmas, np.nan))
            )
            fit = fit_midpoint(sigmas, per_net[i].mean(0), spread_i, a_min=a_min)
        else:
            fit = fit_midpoint_calibrated(sigmas, per_net[i], a_min=a_min)
        if fit.ok:
            lo, hi = _interval(fit, method)
            covered.append(lo <= true_mid[i] <= hi)
            rel_err.append(fit.rel_err)
            half.append((hi - lo) / 2 / fit.sigma_mid)
    return Coverage(
        method,
        trials,
        len(covered),
        float(np.mean(covered)) if covered else math.nan,
        float(np.median(rel_err)) if rel_err else math.nan,
        float(np.median(half)) if half else math.nan,
    )


def coverage_table(
    grids: dict[str, SimGrid] = GRIDS,
    spreads: dict[str, NetworkSpread] = SPREADS,
    trials: int = 400,
    methods: tuple[str, ...] = ("paper", "calibrated"),
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`simulate_coverage` for every grid, spread and method: the table of docs/protocol.md §11.

    Returns:
        One row per grid, spread and method: ``grid``, ``spread``, ``method`` and the
        fields of :class:`Coverage`. Each (grid, spread) pair sees the same simulated sweeps under both methods.
    """
    rows = []
    for g_name, grid in grids.items():
        for s_name, spread in spreads.items():
            for method in methods:
                cov = simulate_coverage(grid, spread, trials, method=method, seed=seed)  # type: ignore[arg-type]
                rows.append({"grid": g_name, "spread": s_name, **cov.__dict__})
    return pd.DataFrame(rows)
