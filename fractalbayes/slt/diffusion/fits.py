"""Fits on log R(t): the power law (eq. 7), its Brownian and logarithmic baselines, a
two-regime (broken power law) fit, and the chain bootstrap of their slopes.

Hennick & De Baerdemacker, "Almost Bayesian" (arXiv 2503.22478); equation numbers are those of
SCIENCE.md section 3. Every model is scored on the same response, log R over the same lags, so
r^2 = 1 - RSS/TSS and the Gaussian AIC = n ln(RSS/n) + 2 (k + 1) compare across models. Log-log
fits keep at most one recorded lag per 1/256 of their log-time range (:func:`_log_thin`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize

_LOG_BINS = 256  # log-log fits keep at most one lag per 1/256 of their log-time range


class PowerLawFit(NamedTuple):
    """OLS of log R on log t: log R = intercept + slope log t; ``ci`` from a chain bootstrap."""

    slope: float
    intercept: float
    r2: float
    aic: float
    ci: tuple[float, float]
    n_points: int


class BaselineFit(NamedTuple):
    """A baseline model scored on log R; ``params`` named by ``names``."""

    names: tuple[str, ...]
    params: tuple[float, ...]
    r2: float
    aic: float


class TwoRegimeFit(NamedTuple):
    """Continuous broken power law in log-log space with a fitted crossover time.

    log R = log_r_cross + early_slope * min(x - x_c, 0) + late_slope * max(x - x_c, 0),
    x = log t, crossover = exp(x_c). Fitted on all lags with positive mean R (log-thinned).
    """

    early_slope: float
    late_slope: float
    crossover: float
    log_r_cross: float
    r2: float
    aic: float
    n_points: int


def _scores(y: np.ndarray, pred: np.ndarray, n_params: int) -> tuple[float, float]:
    """r^2 = 1 - RSS/TSS and Gaussian AIC = n ln(RSS/n) + 2 (n_params + 1) (the +1: sigma)."""
    rss = float(np.sum((y - pred) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    n = y.size
    with np.errstate(divide="ignore"):
        aic = n * np.log(rss / n) + 2 * (n_params + 1)
    r2 = 1.0 - rss / tss if tss > 0 else float("nan")
    return r2, float(aic)


def _ols_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slopes of each row of y (..., n) on x (n,)."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def fit_power_law(t: np.ndarray, r: np.ndarray) -> PowerLawFit:
    """OLS of log r on log t (eq. 7): log R = intercept + slope log t; ``ci`` is NaN here."""
    x, y = np.log(t), np.log(r)
    slope = float(_ols_slopes(x, y))
    intercept = float(y.mean() - slope * x.mean())
    r2, aic = _scores(y, intercept + slope * x, 2)
    return PowerLawFit(slope, intercept, r2, aic, (float("nan"), float("nan")), int(x.size))


def fit_brownian(t: np.ndarray, r: np.ndarray) -> BaselineFit:
    """Brownian baseline R = c t^(1/2): log R = log_c + (1/2) log t, log_c by least squares."""
    x, y = np.log(t), np.log(r)
    log_c = float(np.mean(y - 0.5 * x))
    r2, aic = _scores(y, log_c + 0.5 * x, 1)
    return BaselineFit(("log_c",), (log_c,), r2, aic)


def fit_logarithmic(t: np.ndarray, r: np.ndarray) -> BaselineFit:
    """Logarithmic baseline R = a + b ln t (slow, glassy growth), least squares on log R.

    Starts from OLS of R on ln t (or from R = mean R when that start predicts R <= 0).
    """
    x, y = np.log(t), np.log(r)
    b0 = float(_ols_slopes(x, r))
    a0 = float(r.mean() - b0 * x.mean())
    if np.any(a0 + b0 * x <= 0):
        a0, b0 = float(r.mean()), 0.0

    def residual(p: np.ndarray) -> np.ndarray:
        return y - np.log(np.maximum(p[0] + p[1] * x, np.finfo(float).tiny))

    a, b = optimize.least_squares(residual, [a0, b0], x_scale="jac").x
    r2, aic = _scores(y, y - residual(np.array([a, b])), 2)
    return BaselineFit(("a", "b"), (float(a), float(b)), r2, aic)


def _broken_fit(x: np.ndarray, y: np.ndarray, xc: float) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of y on [1, min(x - xc, 0), max(x - xc, 0)]: coefficients and prediction."""
    u = x - xc
    design = np.stack([np.ones_like(u), np.minimum(u, 0), np.maximum(u, 0)], axis=-1)
    coef = np.linalg.lstsq(design, y)[0]
    return coef, design @ coef


def fit_two_regime(t: np.ndarray, r: np.ndarray, n_grid: int = 256) -> TwoRegimeFit:
    """Broken power law with fitted crossover: profile least squares over x_c = log t_c.

    x_c is searched on a grid between the third and the third-to-last point (each regime keeps
    at least three points), then refined by bounded scalar minimisation of the profile RSS.
    Needs at least 6 points; returns NaNs otherwise.
    """
    x, y = np.log(t), np.log(r)
    nan = float("nan")
    if x.size < 6:
        return TwoRegimeFit(nan, nan, nan, nan, nan, nan, int(x.size))

    def rss(xc: float) -> float:
        return float(np.sum((y - _broken_fit(x, y, xc)[1]) ** 2))

    grid = np.linspace(x[2], x[-3], n_grid)
    profile = np.array([rss(xc) for xc in grid])
    best = int(np.argmin(profile))
    bounds = (grid[max(best - 1, 0)], grid[min(best + 1, n_grid - 1)])
    found = optimize.minimize_scalar(rss, bounds=bounds, method="bounded", options={"xatol": 1e-10})
    xc = found.x if found.fun <= profile[best] else grid[best]
    coef, pred = _broken_fit(x, y, xc)
    r2, aic = _scores(y, pred, 4)
    return TwoRegimeFit(
        float(coef[1]), float(coef[2]), float(np.exp(xc)), float(coef[0]), r2, aic, int(x.size)
    )


def _bootstrap_slopes(
    t: np.ndarray, per_chain: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """Slopes of log(mean over resampled chains) on log t, one per bootstrap replicate.

    Resampling chains with replacement = multinomial chain weights, so replicate means are a
    (replicates, chains) @ (chains, n) product, taken in chunks of about 2^20 numbers.
    Replicates with a non-positive mean are NaN; all are NaN for a single chain.
    """
    chains, n = per_chain.shape
    if chains < 2:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, 2**20 // max(chains, n))
    slopes = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        counts = rng.multinomial(chains, np.full(chains, 1.0 / chains), size=size)
        with np.errstate(divide="ignore"):
            y = np.log(counts @ per_chain / chains)
        finite = np.all(np.isfinite(y), axis=1)
        fitted = _ols_slopes(np.log(t), np.where(finite[:, None], y, 0.0))
        slopes.append(np.where(finite, fitted, np.nan))
    return np.concatenate(slopes)


def _log_thin(lags: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first masked lag in each of ``_LOG_BINS`` equal bins of log t over the masked range.

    Leaves a log-spaced grid of up to 256 lags as it is and cuts a dense stretch (consecutive
    steps) down to its share of log time, so each part of the range weighs by its log extent.
    """
    idx = np.flatnonzero(mask)
    if idx.size < 2:
        return mask
    x = np.log(lags[idx])
    bins = np.floor((x - x[0]) / (x[-1] - x[0]) * _LOG_BINS)
    _, first = np.unique(bins, return_index=True)
    kept = np.zeros_like(mask)
    kept[idx[first]] = True
    return kept


def _percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite samples; NaN when fewer than two are finite."""
    finite = samples[np.isfinite(samples)]
    if finite.size < 2:
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


class _Bootstrap(NamedTuple):
    """Chain-bootstrap settings: replicates, interval level, seed."""

    n_boot: int
    level: float
    seed: int

    def interval(
        self, t: np.ndarray, per_chain: np.ndarray, scale: float = 1.0
    ) -> tuple[float, float]:
        """Percentile interval of scale * (log-log slope of the chain-resampled mean curve)."""
        slopes = _bootstrap_slopes(t, per_chain, self.n_boot, self.seed)
        return _percentile_ci(scale * slopes, self.level)
