"""Dimensions of the weight walk: the walk and spectral dimensions derived from the
displacement slope (eqs. 3, 4, 6), and the spectral dimension estimated independently of it.

* Derived       d_walk = 1 / slope;  d_s = 2 d_f slope with d_f = lambda_bar (the paper's
                convention, ``fractal_dim="lambda"``) or d_f = 2 lambda_bar (the textbook one,
                ``"2lambda"``), i.e. the Alexander-Orbach relation d_walk = 2 d_f / d_s (eq. 3;
                Alexander & Orbach 1982); the effective diffusion coefficient
                D_xi = xi^(2 - d_walk) (eq. 4). (Hennick & De Baerdemacker, arXiv 2503.22478;
                equation numbers from SCIENCE.md section 3.)
* Independent   d_s from the number of distinct xi-cells visited, N(t) ~ t^(d_s/2), and from the
                return probability P0(t) = P(||w_{t0+t} - w_{t0}|| < xi) ~ t^(-d_s/2), both in a
                seeded random projection (Johnson-Lindenstrauss scaled) to ``proj_dim``
                dimensions; neither uses the slope.
* Lag MSD       the time-averaged MSD over a window of consecutive steps (Metzler, Jeon,
                Cherstvy & Barkai 2014), which tells trapping from a fractal medium.

The checkpoints are read once (:func:`_reduce_checkpoints`), in blocks of parameters per chain;
no copy of the checkpoint array is made, so memory-mapped input works.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fractalbayes.errors import InputError
from fractalbayes.slt.diffusion.fits import _Bootstrap, _log_thin, fit_power_law

FRACTAL_DIMS = ("lambda", "2lambda")
_BLOCK = 512  # parameters per block: a block of K rows stays in cache
_MAX_LAG_MSD_LAGS = 32


class DimensionEstimate(NamedTuple):
    """A spectral-dimension estimate that does not use the displacement slope.

    ``curve`` is the ensemble curve (mean N(t) for ``"covering"``, P0(t) for ``"return"``) at
    ``lags``; ``fitted`` marks the lags used; ``d_s = sign * 2 * slope`` of log curve on log t.
    ``data`` says what it was computed from ("checkpoints", "lag_window" or "unavailable").
    """

    method: str
    data: str
    lags: np.ndarray
    curve: np.ndarray
    fitted: np.ndarray
    slope: float
    r2: float
    d_s: float
    ci: tuple[float, float]
    proj_dim: int


class LagMSD(NamedTuple):
    """Time-averaged MSD over a window of consecutive steps.

    msd[c, j] = 1/(W - lag_j) sum_i || w_{i + lag_j} - w_i ||^2 for chain c (Metzler, Jeon,
    Cherstvy & Barkai 2014); ``exponent`` and ``r2`` come from OLS of log(mean_c msd) on log lag.
    For a CTRW with waiting-time density psi(t) ~ t^(-1-alpha) (Metzler & Klafter 2000) the
    time average grows linearly in the lag while the ensemble MSD grows as t^alpha (weak
    ergodicity breaking), so the two exponents together tell trapping from a fractal medium.
    """

    start: int
    lags: np.ndarray
    msd: np.ndarray
    exponent: float
    r2: float


# --------------------------------------------------------------------------------------------
# Derived quantities (eqs. 3, 4, 6)
# --------------------------------------------------------------------------------------------
def walk_dimension(slope: float) -> float:
    """d_walk = 1 / slope, from R(t) ~ t^(1/d_walk) (inf for slope 0)."""
    with np.errstate(divide="ignore"):
        return float(np.divide(1.0, slope))


def _fractal_dimension(lambda_bar: float | None, fractal_dim: str) -> float:
    """d_f = lambda_bar (``"lambda"``, the paper's) or 2 lambda_bar (``"2lambda"``); NaN without an LLC."""
    if lambda_bar is None:
        return float("nan")
    return lambda_bar if fractal_dim == "lambda" else 2.0 * lambda_bar


def spectral_dimension(slope: float, lambda_bar: float, fractal_dim: str = "lambda") -> float:
    """Alexander-Orbach (eq. 3): d_walk = 2 d_f / d_s, so d_s = 2 d_f slope.

    ``fractal_dim="lambda"`` takes d_f = lambda_bar (the paper: d_s = 2 lambda_bar slope);
    ``"2lambda"`` takes d_f = 2 lambda_bar (textbook for loss ~ distance^2: d_s = 4 lambda_bar
    slope, i.e. d_walk = 4 lambda / d_s).
    """
    _check_fractal_dim(fractal_dim)
    return float(2.0 * _fractal_dimension(lambda_bar, fractal_dim) * slope)


def effective_diffusion(xi: float, d_walk: float) -> float:
    """Eq. 4: D_xi = xi^(2 - d_walk)."""
    with np.errstate(over="ignore"):
        return float(np.power(xi, 2.0 - d_walk))


def _check_fractal_dim(fractal_dim: str) -> None:
    """An InputError unless ``fractal_dim`` is one of :data:`FRACTAL_DIMS`."""
    if fractal_dim not in FRACTAL_DIMS:
        raise InputError(
            f"unknown fractal_dim {fractal_dim!r}; use 'lambda' (the paper, d_s = 2 lambda slope) "
            "or '2lambda' (textbook, d_s = 4 lambda slope)."
        )


# --------------------------------------------------------------------------------------------
# One pass over the checkpoints
# --------------------------------------------------------------------------------------------
def _reduce_checkpoints(
    x: np.ndarray, ref: int, projection: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared displacements ||w_k - w_ref||^2 for k > ref, and projected positions w_k P.

    Reads x (chains, K, d) once, ``_BLOCK`` parameters at a time, into one reused difference
    buffer; each block is summed in the input precision (at least float32: relative error
    ~ 512 eps) and the blocks are accumulated in float64. Returns (chains, K - ref - 1) and
    (chains, K, proj_dim).
    """
    chains, n_steps, dim = x.shape
    work = np.result_type(x.dtype, np.float32)
    projection = projection.astype(work)
    buffer = np.empty((n_steps - ref - 1, min(_BLOCK, dim)), dtype=work)
    sq = np.zeros((chains, n_steps - ref - 1))
    proj = np.zeros((chains, n_steps, projection.shape[1]))
    for c in range(chains):
        for j in range(0, dim, _BLOCK):
            block = x[c, :, j : j + _BLOCK]
            proj[c] += block @ projection[j : j + _BLOCK]
            diff = np.subtract(block[ref + 1 :], block[ref], out=buffer[:, : block.shape[1]])
            sq[c] += np.einsum("ij,ij->i", diff, diff)
    return sq, proj


def _project(x: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Positions x (chains, T, d) times projection (d, k), chain by chain and block by block."""
    projection = projection.astype(np.result_type(x.dtype, np.float32))
    out = np.zeros(x.shape[:2] + (projection.shape[1],))
    for c in range(x.shape[0]):
        for j in range(0, x.shape[2], _BLOCK):
            out[c] += x[c, :, j : j + _BLOCK] @ projection[j : j + _BLOCK]
    return out


def _random_projection(dim: int, proj_dim: int, seed: int) -> np.ndarray:
    """Identity when dim <= proj_dim; else sqrt(dim/k) Q with Q (dim, k) Haar-orthonormal.

    The scale makes E||Q^T v||^2 (dim/k) = ||v||^2 for any v, so xi keeps its meaning as a length
    in weight space (Johnson-Lindenstrauss).
    """
    if dim <= proj_dim:
        return np.eye(dim)
    gauss = np.random.default_rng(seed).standard_normal((dim, proj_dim))
    q, _ = np.linalg.qr(gauss)
    return q * np.sqrt(dim / proj_dim)


def _sq_row_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a_i - b_i||^2 for rows of a, b (n, d), in float64 blocks of parameters."""
    out = np.zeros(a.shape[0])
    for j in range(0, a.shape[1], _BLOCK):
        diff = np.subtract(a[:, j : j + _BLOCK], b[:, j : j + _BLOCK], dtype=np.float64)
        out += np.einsum("ij,ij->i", diff, diff)
    return out


def _lag_msd(window: np.ndarray, start: int) -> LagMSD:
    """Time-averaged MSD of consecutive steps at up to 32 log-spaced integer lags."""
    width = window.shape[1]
    lags = np.unique(np.geomspace(1, width - 1, _MAX_LAG_MSD_LAGS).astype(int))
    msd = np.array(
        [[_sq_row_distances(w[lag:], w[:-lag]).mean() for lag in lags] for w in window]
    )
    fit = fit_power_law(lags, msd.mean(axis=0))
    return LagMSD(start, lags, msd, fit.slope, fit.r2)


# --------------------------------------------------------------------------------------------
# Independent spectral dimension (covering number and return probability)
# --------------------------------------------------------------------------------------------
def _covering_counts(positions: np.ndarray, xi: float) -> np.ndarray:
    """N[c, i] = number of distinct xi-cells among positions[c, :i+1], for (chains, T, k).

    Cells are boxes of side xi anchored at each chain's first position (box counting standing in
    for the covering by xi-balls). A stable lexicographic sort on (chain, cell) puts each cell's
    earliest visit first in its group, which marks the steps where a new cell is entered.
    """
    chains, steps, k = positions.shape
    cells = np.floor((positions - positions[:, :1]) / xi).astype(np.int64).reshape(-1, k)
    chain = np.repeat(np.arange(chains), steps)
    order = np.lexsort((*cells.T[::-1], chain))
    cells, chain_sorted = cells[order], chain[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = np.any(cells[1:] != cells[:-1], axis=1) | (chain_sorted[1:] != chain_sorted[:-1])
    new = np.zeros(order.size)
    new[order[first]] = 1.0
    return np.cumsum(new.reshape(chains, steps), axis=1)


def _past_plateau(positions: np.ndarray, xi: float) -> np.ndarray:
    """Lags where the ensemble rms displacement from positions[:, 0] is at least 2 xi."""
    sq = np.sum((positions[:, 1:] - positions[:, :1]) ** 2, axis=-1)
    return np.sqrt(sq.mean(axis=0)) >= 2 * xi


def _dimension_estimate(
    method: str,
    data: str,
    lags: np.ndarray,
    per_chain: np.ndarray,
    fitted: np.ndarray,
    sign: float,
    proj_dim: int,
    boot: _Bootstrap,
) -> DimensionEstimate:
    """d_s = sign * 2 * slope of log(mean over chains of per_chain) on log lag over ``fitted``."""
    curve = per_chain.mean(axis=0)
    fitted = _log_thin(lags, fitted & (curve > 0))
    nan = float("nan")
    if fitted.sum() < 3:
        return DimensionEstimate(
            method, data, lags, curve, fitted, nan, nan, nan, (nan, nan), proj_dim
        )
    fit = fit_power_law(lags[fitted], curve[fitted])
    return DimensionEstimate(
        method, data, lags, curve, fitted, fit.slope, fit.r2, sign * 2.0 * fit.slope,
        boot.interval(lags[fitted], per_chain[:, fitted], sign * 2.0), proj_dim,
    )


def _return_estimate(
    projected: np.ndarray, lags: np.ndarray, in_window: np.ndarray, xi: float, boot: _Bootstrap
) -> DimensionEstimate:
    """P0(t) = fraction of chains within xi of their t0 position ~ t^(-d_s/2).

    ``projected`` holds the projected checkpoints from t0 on, (chains, 1 + lags, k).
    """
    inside = np.sum((projected[:, 1:] - projected[:, :1]) ** 2, axis=-1) < xi**2
    fitted = in_window & _past_plateau(projected, xi)
    k = projected.shape[2]
    return _dimension_estimate(
        "return", "checkpoints", lags, inside.astype(float), fitted, -1.0, k, boot
    )


def _covering_estimate(
    steps: np.ndarray,
    lag_window: np.ndarray | None,
    ref: int,
    lags: np.ndarray,
    in_window: np.ndarray,
    projected: np.ndarray,
    projection: np.ndarray,
    xi: float,
    boot: _Bootstrap,
) -> DimensionEstimate:
    """N(t) ~ t^(d_s/2) on the densest consecutive record: the checkpoints when unit-spaced
    from t0 on (fitted inside the window), else the lag window (all its lags)."""
    k = projection.shape[1]
    if np.all(np.diff(steps[ref:]) == 1):
        positions, dense_lags, mask, data = projected[:, ref:], lags, in_window, "checkpoints"
    elif lag_window is not None:
        positions = _project(lag_window, projection)
        dense_lags = np.arange(1, positions.shape[1], dtype=float)
        mask, data = np.ones(dense_lags.size, dtype=bool), "lag_window"
    else:
        empty, nan = np.array([]), float("nan")
        no_fit = (nan, nan, nan, (nan, nan))
        return DimensionEstimate("covering", "unavailable", empty, empty, empty > 0, *no_fit, k)
    counts = _covering_counts(positions, xi)[:, 1:]
    fitted = mask & _past_plateau(positions, xi)
    return _dimension_estimate("covering", data, dense_lags, counts, fitted, 1.0, k, boot)
