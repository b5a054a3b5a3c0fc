"""Dimensions measured without the displacement slope, in the full weight space (no projection).

* Return      P0(t) = P(||w_{t0+t} - w_{t0}|| < xi) ~ t^(-d_s/2) (the heat kernel at the origin,
              Alexander & Orbach 1982; Ben-Avraham & Havlin 2000, ch. 5), fitted over the lags
              past the initial plateau (rms displacement >= 2 xi) at which at least
              ``_MIN_RETURNS`` chains are within xi. Valid at any d_s, but in d_s >~ 2 returns
              are rare; with too few it reports why instead of a number.
* Covering    N(t) = number of distinct xi-cells visited by step t ~ t^(d_s/2), valid for a
              recurrent walk (d_s < 2; Montroll & Weiss 1965, Ben-Avraham & Havlin ch. 5). A
              transient walk (d_s > 2) has N(t) ~ t, which gives only the bound d_s >= 2. Cells are
              boxes of side xi in all d coordinates, keyed by a 64-bit hash of the cell index.
* Correlation d_f of the visited set: the Takens (1985) maximum-likelihood correlation dimension,
              truncated to [r_lo, r_hi], of the distances between positions of different chains
              (points at the fitted lags from t_end / 10 on, so the clouds compared have
              similar widths). Under C(r) ~ r^d_f the distances in the range have density
              d_f r^(d_f - 1) / (r_hi^d_f - r_lo^d_f); r_lo = xi, r_hi = 0.25 x the median
              distance (small against the cloud, so its curvature biases little). Pairs within one chain are left out:
              they trace the walk's path, whose dimension is min(d_walk, d_f), not the medium's.
              Eckmann & Ruelle (1992): N points cannot resolve a correlation dimension above
              2 log10 N; above that limit it reports why instead of a number.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize

from fractalbayes.slt.diffusion.fits import (
    _Bootstrap,
    _log_thin,
    _percentile_ci,
    fit_power_law,
)

_BLOCK = 512
_MIN_RETURNS = 10  # chains within xi per fitted lag: relative error <= 1/sqrt(10) per point
_TRANSIENT = 1.8  # a covering exponent 2 * slope above this reads as N(t) ~ t (d_s >= 2)
_MAX_DF_POINTS = 2048  # workspace: a few (n, n) float64 matrices, ~35 MB each
_DF_FRACTION = 0.25  # r_hi = this fraction of the median cross-chain distance
_DF_LATE = 10.0  # points at lags >= t_end / 10: cloud widths within a factor sqrt(10)
_MIN_DF_PAIRS = 100
_DF_BOOT = 200


class DimensionEstimate(NamedTuple):
    """A spectral-dimension estimate that does not use the displacement slope.

    ``curve`` is the ensemble curve (mean N(t) for ``"covering"``, P0(t) for ``"return"``) at
    ``lags``; ``fitted`` marks the lags used; ``d_s = sign * 2 * slope`` of log curve on log t.
    ``data`` says what it was computed from ("checkpoints", "lag_window" or "unavailable");
    ``note`` says why ``d_s`` is NaN when the estimator cannot work ("" when it can).
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
    note: str


class FractalDimension(NamedTuple):
    """Correlation dimension d_f of the visited set (Takens estimator on [r_lo, r_hi]).

    ``n_points`` positions, ``n_pairs`` cross-chain distances inside the range, ``limit`` the
    Eckmann-Ruelle bound 2 log10 n_points, ``ci`` a chain-bootstrap interval; ``note`` says why
    ``d_f`` is NaN when it cannot be measured ("" when it can).
    """

    d_f: float
    ci: tuple[float, float]
    r_lo: float
    r_hi: float
    n_points: int
    n_pairs: int
    limit: float
    note: str


def _unavailable(method: str, note: str) -> DimensionEstimate:
    empty, nan = np.array([]), float("nan")
    return DimensionEstimate(method, "unavailable", empty, empty, empty > 0, nan, nan, nan,
                             (nan, nan), note)


# --------------------------------------------------------------------------------------------
# Return probability
# --------------------------------------------------------------------------------------------
def _fit_estimate(method: str, data: str, lags: np.ndarray, per_chain: np.ndarray,
                  fitted: np.ndarray, sign: float, boot: _Bootstrap, note: str) -> DimensionEstimate:
    """d_s = sign * 2 * slope of log(mean over chains of per_chain) on log lag over ``fitted``."""
    curve = per_chain.mean(axis=0)
    fitted = _log_thin(lags, fitted & (curve > 0))
    nan = float("nan")
    if fitted.sum() < 3:
        return DimensionEstimate(method, data, lags, curve, fitted, nan, nan, nan, (nan, nan), note)
    fit = fit_power_law(lags[fitted], curve[fitted])
    ci = boot.interval(lags[fitted], per_chain[:, fitted], sign * 2.0)
    return DimensionEstimate(method, data, lags, curve, fitted, fit.slope, fit.r2,
                             sign * 2.0 * fit.slope, ci, "")


def return_estimate(sq: np.ndarray, lags: np.ndarray, in_window: np.ndarray, xi: float,
                    boot: _Bootstrap) -> DimensionEstimate:
    """P0(t) ~ t^(-d_s/2) from the full-space squared displacements ``sq`` (chains, lags).

    Fitted over window lags past the plateau (rms >= 3 xi: the ball is small against the
    spread, so the curvature of P0 at small t biases little) with at least ``_MIN_RETURNS``
    chains inside the xi-ball; NaN with a note when fewer than 3 such lags remain.
    """
    chains = sq.shape[0]
    inside = (sq < xi**2).astype(float)
    counts = inside.sum(axis=0)
    past = np.sqrt(sq.mean(axis=0)) >= 3 * xi
    # Stop at the first candidate lag with too few returns: keeping later lags that happen to
    # reach the count would select upward fluctuations and flatten the fitted decay.
    candidate = in_window & past
    short = np.flatnonzero(candidate & (counts < _MIN_RETURNS))
    usable = candidate & (np.arange(lags.size) < (short[0] if short.size else lags.size))
    note = ""
    if _log_thin(lags, usable).sum() < 3:
        note = (f"return: only {int(usable.sum())} window lags past the plateau (rms >= 3 xi) have "
                f">= {_MIN_RETURNS} of the {chains} chains within xi = {xi:g} of their start; "
                "returns are too rare to fit P0(t) ~ t^(-d_s/2) (d_s >~ 2, or too few chains): "
                "use more chains or a larger xi")
    return _fit_estimate("return", "checkpoints", lags, inside, usable, -1.0, boot, note)


# --------------------------------------------------------------------------------------------
# Covering number
# --------------------------------------------------------------------------------------------
def _cell_keys(positions: np.ndarray, xi: float) -> np.ndarray:
    """64-bit keys (chains, T) of the xi-boxes of positions (chains, T, d), anchored per chain at
    its first position: sum_j floor((x_j - x_j(0)) / xi) * m_j mod 2^64 with fixed odd random m_j
    (a distinct pair of cells collides with probability ~2^-64)."""
    chains, steps, dim = positions.shape
    multipliers = np.random.default_rng(0x5EED).integers(1, 2**62, size=dim, dtype=np.int64) | 1
    keys = np.zeros((chains, steps), dtype=np.int64)
    with np.errstate(over="ignore"):
        for c in range(chains):
            for j in range(0, dim, _BLOCK):
                block = np.asarray(positions[c, :, j : j + _BLOCK], dtype=np.float64)
                cells = np.floor((block - block[:1]) / xi).astype(np.int64)
                keys[c] += cells @ multipliers[j : j + _BLOCK]
    return keys


def _covering_counts(positions: np.ndarray, xi: float) -> np.ndarray:
    """N[c, i] = number of distinct xi-cells among positions[c, :i+1], for (chains, T, d)."""
    keys = _cell_keys(positions, xi)
    new = np.zeros(keys.shape)
    for c, row in enumerate(keys):
        new[c, np.unique(row, return_index=True)[1]] = 1.0
    return np.cumsum(new, axis=1)


def _sq_from_start(positions: np.ndarray) -> np.ndarray:
    """||w_t - w_0||^2 (chains, T - 1) for positions (chains, T, d), in blocks of parameters."""
    out = np.zeros((positions.shape[0], positions.shape[1] - 1))
    for c in range(positions.shape[0]):
        for j in range(0, positions.shape[2], _BLOCK):
            block = np.asarray(positions[c, :, j : j + _BLOCK], dtype=np.float64)
            out[c] += np.sum((block[1:] - block[:1]) ** 2, axis=-1)
    return out


def covering_estimate(x: np.ndarray, steps: np.ndarray, lag_window: np.ndarray | None, ref: int,
                      lags: np.ndarray, in_window: np.ndarray, sq: np.ndarray, xi: float,
                      boot: _Bootstrap) -> DimensionEstimate:
    """N(t) ~ t^(d_s/2) on the densest consecutive record: the checkpoints when unit-spaced from
    t0 on (fitted inside the window, past the plateau), else the lag window (all its lags).

    NaN with a note without consecutive steps, and when N(t) grows about linearly
    (2 * slope > 1.8): a transient walk, for which the covering gives only d_s >= 2.
    """
    if np.all(np.diff(steps[ref:]) == 1):
        positions, dense_lags, data = x[:, ref:], lags, "checkpoints"
        rms = np.sqrt(sq.mean(axis=0))
        mask = in_window
    elif lag_window is not None:
        positions, data = lag_window, "lag_window"
        dense_lags = np.arange(1, lag_window.shape[1], dtype=float)
        rms = np.sqrt(_sq_from_start(lag_window).mean(axis=0))
        mask = np.ones(dense_lags.size, dtype=bool)
    else:
        return _unavailable("covering", "covering: needs consecutive steps (unit-spaced "
                            "checkpoints from t0 or a recorded lag window); none were recorded")
    counts = _covering_counts(positions, xi)[:, 1:]
    est = _fit_estimate("covering", data, dense_lags, counts, mask & (rms >= 2 * xi), 1.0, boot,
                        "covering: fewer than 3 lags past the plateau (rms >= 2 xi)")
    if est.d_s > _TRANSIENT:
        note = (f"covering: N(t) ~ t^{est.slope:.2f}, about linear: a transient walk visits a new "
                f"cell at almost every step, so the covering gives only the bound d_s >= 2")
        nan = float("nan")
        return est._replace(d_s=nan, ci=(nan, nan), note=note)
    return est


def best_spectral(estimates: tuple[DimensionEstimate, ...]) -> tuple[float, tuple[float, float], str, str]:
    """The first applicable estimate, in order of preference: (d_s, ci, method, notes).

    The return probability comes first: it is the definition of d_s (the heat kernel at the
    origin). The covering count assumes a homogeneous medium and is biased where the walk is not
    (a comb: 1.11 for 3/2; a CTRW: 0.67 for 1/2, docs/calibration.md), so it is the fallback.
    """
    notes = "; ".join(e.note for e in estimates if e.note)
    for e in estimates:
        if np.isfinite(e.d_s):
            return e.d_s, e.ci, e.method, notes
    nan = float("nan")
    return nan, (nan, nan), "none", notes


# --------------------------------------------------------------------------------------------
# Correlation dimension of the visited set
# --------------------------------------------------------------------------------------------
def _pair_distances(x: np.ndarray, ref: int, lags: np.ndarray, fitted: np.ndarray, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance matrix (n, n) of the points, the mask of cross-chain pairs i < j, and each
    point's chain.

    Points: every chain's positions at the fitted lags >= t_end / 10 (at least the last 3), at most
    ``_MAX_DF_POINTS`` (a seeded subsample). Squared distances from a Gram matrix accumulated
    over parameter blocks, each block centred first (distances unchanged, less cancellation)."""
    chains = x.shape[0]
    late = np.flatnonzero(fitted)
    late = late[-3:] if late.size <= 3 else late[lags[late] >= lags[late[-1]] / _DF_LATE]
    times = ref + 1 + late
    chain_of = np.repeat(np.arange(chains), times.size)
    time_of = np.tile(times, chains)
    if chain_of.size > _MAX_DF_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(chain_of.size, _MAX_DF_POINTS, replace=False))
        chain_of, time_of = chain_of[keep], time_of[keep]
    n = chain_of.size
    gram, norms = np.zeros((n, n)), np.zeros(n)
    for j in range(0, x.shape[2], _BLOCK):
        block = np.asarray(x[chain_of, time_of, j : j + _BLOCK], dtype=np.float64)
        block -= block.mean(axis=0)
        gram += block @ block.T
        norms += np.einsum("ij,ij->i", block, block)
    gram *= -2.0
    gram += norms[:, None]
    gram += norms[None, :]
    dist = np.sqrt(np.maximum(gram, 0.0, out=gram), out=gram)
    cross = np.triu(chain_of[:, None] != chain_of[None, :], 1)
    return dist, cross, chain_of


def _takens(mean_log: float, span: float) -> float:
    """Solve 1/d - L/(e^(dL) - 1) = -mean log(r / r_hi) for d (L = log(r_hi / r_lo)): the
    truncated Takens MLE. NaN when no positive root exists (mean >= L/2: no growth)."""
    target = -mean_log
    if not 0 < target < span / 2:
        return float("nan")

    def excess(d: float) -> float:
        return 1.0 / d - span / np.expm1(min(d * span, 700.0)) - target

    return float(optimize.brentq(excess, 1e-6, 1e3, xtol=1e-10))


def correlation_dimension(x: np.ndarray, ref: int, lags: np.ndarray, fitted: np.ndarray, xi: float,
                          boot: _Bootstrap) -> FractalDimension:
    """Correlation dimension of the positions at the fitted lags, cross-chain pairs only."""
    nan = float("nan")
    chains = x.shape[0]
    if chains < 2:
        return FractalDimension(nan, (nan, nan), nan, nan, 0, 0, nan,
                                "d_f: needs at least 2 chains (cross-chain distances)")
    matrix, cross, chain_of = _pair_distances(x, ref, lags, fitted, boot.seed)
    n = chain_of.size
    limit = 2.0 * np.log10(n)
    r_lo = float(xi)
    r_hi = _DF_FRACTION * float(np.median(matrix[cross], overwrite_input=True))
    inside = cross & (matrix > r_lo) & (matrix <= r_hi)
    n_pairs = int(inside.sum())
    if n_pairs < _MIN_DF_PAIRS or not r_hi > 1.5 * r_lo:
        return FractalDimension(nan, (nan, nan), r_lo, r_hi, n, n_pairs, limit,
                                f"d_f: {n_pairs} cross-chain distances between xi = {r_lo:g} and "
                                f"{_DF_FRACTION:g} x their median, {r_hi:.3g} (needs >= {_MIN_DF_PAIRS} "
                                "over a range of at least 1.5x): too few points for the dimension of "
                                "the visited set (the cloud is too sparse at small scales), or xi "
                                "too large")
    span = np.log(r_hi / r_lo)
    i, k = np.nonzero(inside)
    logs = np.log(matrix[i, k] / r_hi)
    d_f = _takens(float(logs.mean()), span)
    if not np.isfinite(d_f) or d_f > limit:
        return FractalDimension(nan, (nan, nan), r_lo, r_hi, n, n_pairs, limit,
                                f"d_f: the correlation estimate ({d_f:.3g}) exceeds the Eckmann-Ruelle "
                                f"limit 2 log10 N = {limit:.2f} for N = {n} points: the visited set is "
                                "too high-dimensional for this many points")
    # Chain bootstrap: a pair's weight is the product of its two chains' resampling counts, so
    # each replicate is w^T S w / w^T N w with S, N the per-chain-pair sums of logs and counts.
    # Only the chains that contributed points are resampled.
    present, label = np.unique(chain_of, return_inverse=True)
    m = present.size
    sums, counts = np.zeros((m, m)), np.zeros((m, m))
    np.add.at(sums, (label[i], label[k]), logs)
    np.add.at(counts, (label[i], label[k]), 1.0)
    rng = np.random.default_rng(boot.seed + 1)
    w = rng.multinomial(m, np.full(m, 1.0 / m), size=_DF_BOOT).astype(float)
    num, den = np.sum((w @ sums) * w, axis=1), np.sum((w @ counts) * w, axis=1)
    reps = [_takens(float(a / b), span) if b > 0 else float("nan") for a, b in zip(num, den)]
    ci = _percentile_ci(np.array(reps), boot.level)
    return FractalDimension(d_f, ci, r_lo, r_hi, n, n_pairs, limit, "")
