"""Dimensions of the weight walk: the walk and spectral dimensions derived from the
displacement slope (eqs. 3, 4, 6), the one pass over the checkpoints, and the lag MSD. The
estimates that do not use the slope live in ``independent.py``.

* Derived       d_walk = 1 / slope;  d_s = 2 d_f slope with d_f = lambda_bar (the paper's
                convention, ``fractal_dim="lambda"``) or d_f = 2 lambda_bar (the textbook one,
                ``"2lambda"``), i.e. the Alexander-Orbach relation d_walk = 2 d_f / d_s (eq. 3;
                Alexander & Orbach 1982); the effective diffusion coefficient
                D_xi = xi^(2 - d_walk) (eq. 4). (Hennick & De Baerdemacker, arXiv 2503.22478;
                equation numbers from SCIENCE.md section 3.)
* Bound         d_s <= d_f (eq. 6 with d_f in the chosen convention: d_s <= lambda_bar in the
                paper's, d_s <= 2 lambda_bar in the textbook one; both read slope <= 1/2).
* Lag MSD       the time-averaged MSD over a window of consecutive steps (Metzler, Jeon,
                Cherstvy & Barkai 2014), which tells trapping from a fractal medium.

The checkpoints are read once (:func:`_reduce_checkpoints`), in blocks of parameters per chain;
no copy of the checkpoint array is made, so memory-mapped input works.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fractalbayes.errors import InputError
from fractalbayes.slt.diffusion.fits import fit_power_law

FRACTAL_DIMS = ("lambda", "2lambda")
_BLOCK = 512  # parameters per block: a block of K rows stays in cache
_MAX_LAG_MSD_LAGS = 32


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
def _reduce_checkpoints(x: np.ndarray, ref: int) -> np.ndarray:
    """Squared displacements ||w_k - w_ref||^2 for k > ref, shape (chains, K - ref - 1).

    Reads x (chains, K, d) once, ``_BLOCK`` parameters at a time, into one reused difference
    buffer; each block is summed in the input precision (at least float32: relative error
    ~ 512 eps) and the blocks are accumulated in float64.
    """
    chains, n_steps, dim = x.shape
    work = np.result_type(x.dtype, np.float32)
    buffer = np.empty((n_steps - ref - 1, min(_BLOCK, dim)), dtype=work)
    sq = np.zeros((chains, n_steps - ref - 1))
    for c in range(chains):
        for j in range(0, dim, _BLOCK):
            block = x[c, :, j : j + _BLOCK]
            diff = np.subtract(block[ref + 1 :], block[ref], out=buffer[:, : block.shape[1]])
            sq[c] += np.einsum("ij,ij->i", diff, diff)
    return sq


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
