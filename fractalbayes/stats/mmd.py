"""Kernel two-sample tests with the maximum mean discrepancy, for independent draws and for MCMC.

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (n (n-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1))
              - 2 sum_{i, j} k(x_i, y_j) / (n m),   k(a, b) = exp(-|a - b|^2 / (2 sigma^2))

(Gretton et al., "A Kernel Two-Sample Test", JMLR 2012, eq. 3), sigma by default the median pairwise
distance of the pooled sample.

:func:`mmd_rbf` permutes individual draws: valid only when draws are exchangeable (independent).
MCMC draws within a chain are not: two sets of AR(1) chains with rho = 0.99 and the same stationary
law are "different" at p < 0.05 almost always under draw permutation (SCIENCE.md §7).
:func:`mmd_test` takes ``(chains, draws, dim)`` arrays and keeps the dependence intact:

- ``method="chains"`` permutes whole chains between the two sets. Chains are independent runs, so
  under H0 (every chain has the same law) the chain labels are exchangeable and the test is exact
  at any autocorrelation; it needs enough chains that some split reaches the level (with 4 + 4
  chains there are C(8, 4) = 70 splits, smallest p = 1/70).
- ``method="thin"`` thins each chain to about one draw per integrated autocorrelation time
  tau = draws / ESS (ArviZ's bulk ESS, the largest tau over dimensions) and permutes those draws:
  approximately exchangeable, for sets with too few chains.
- ``method="auto"`` uses "chains" when at least ``min_splits`` distinct splits exist, else "thin".

Measured false-positive rates and power are in docs/calibration.md (benchmarks/calibration.py).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from arviz_stats.base import array_stats
from numpy.typing import ArrayLike

from fractalbayes import checks
from fractalbayes.errors import InputError

METHODS = ("auto", "chains", "thin")


@dataclass(frozen=True)
class MMDResult:
    """Result of :func:`mmd_rbf`.

    statistic: unbiased estimate of MMD^2 (can be slightly negative when the samples agree).
    p_value: permutation p-value of H0 "x and y come from the same distribution".
    bandwidth: RBF length scale sigma used in k(a, b) = exp(-|a - b|^2 / (2 sigma^2)).
    """

    statistic: float
    p_value: float
    bandwidth: float


@dataclass(frozen=True)
class MMDTestResult:
    """Result of :func:`mmd_test`: the statistic, its p-value and how the null was built."""

    statistic: float
    p_value: float
    bandwidth: float
    method: str
    """'chains' (whole chains permuted) or 'thin' (draws thinned to the ESS, then permuted)."""
    num_permutations: int
    exact: bool
    """True when every distinct split was enumerated."""
    draws_per_chain: int
    """Draws of each chain that entered the statistic (after thinning)."""


@jax.jit
def pairwise_sq_dists(z: jax.Array) -> jax.Array:
    """|z_i - z_j|^2 for the pooled sample, centred first to limit float32 cancellation."""
    zc = z - z.mean(axis=0)
    sq = jnp.sum(zc**2, axis=1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * zc @ zc.T, 0.0)
    return d2 * (1.0 - jnp.eye(z.shape[0], dtype=d2.dtype))


def _mmd2_unbiased(k0: jax.Array, a: jax.Array, n: int, m: int) -> jax.Array:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) for the split marked by the 0/1 vector ``a``.

    ``k0`` is the pooled kernel matrix with a zero diagonal, so the within-sample sums exclude
    i = j and the cross term needs no correction (a_i b_i = 0).
    """
    b = 1.0 - a
    return a @ k0 @ a / (n * (n - 1)) + b @ k0 @ b / (m * (m - 1)) - 2.0 * (a @ k0 @ b) / (n * m)


@functools.partial(jax.jit, static_argnames=("n",))
def _mmd_under_splits(d2: jax.Array, bandwidth: jax.Array, splits: jax.Array, n: int) -> jax.Array:
    """MMD^2_u for each row of ``splits`` (0/1 labels, n ones) of the pooled sample."""
    total = d2.shape[0]
    k0 = jnp.exp(-d2 / (2.0 * bandwidth**2)) * (1.0 - jnp.eye(total, dtype=d2.dtype))
    return jax.vmap(lambda a: _mmd2_unbiased(k0, a, n, total - n))(splits)


def median_heuristic(d2: np.ndarray) -> float:
    """Median pairwise distance of the pooled sample (Gretton et al. 2012, §8)."""
    i, j = np.triu_indices(d2.shape[0], k=1)
    return float(np.sqrt(np.median(d2[i, j])))


def _bandwidth(d2: jax.Array, bandwidth: float | None) -> float:
    if bandwidth is None:
        value = median_heuristic(np.asarray(d2))
        if value == 0.0:
            raise InputError("the median pairwise distance of the pooled sample is 0 (mostly repeated draws); "
                             "pass bandwidth= explicitly.")
        return value
    return checks.check("bandwidth", bandwidth, checks.positive())


def as_sample_pair(x: ArrayLike, y: ArrayLike, min_draws: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two sample sets as float arrays of shape (n, d) and (m, d) with finite entries."""
    arrays = []
    for name, a in (("x", x), ("y", y)):
        a = np.asarray(a, dtype=float)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise InputError(f"{name} has shape {a.shape}; pass samples as an (n_draws, n_dims) array "
                             "(flatten chains and parameters first).")
        if a.shape[0] < min_draws:
            raise InputError(f"{name} has {a.shape[0]} draws; at least {min_draws} are needed.")
        if not np.all(np.isfinite(a)):
            raise InputError(f"{name} contains NaN or inf; drop or fix those draws first.")
        arrays.append(a)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise InputError(f"x has {arrays[0].shape[1]} dimensions and y has {arrays[1].shape[1]}; "
                         "both sample sets must describe the same variables.")
    return arrays[0], arrays[1]


def mmd_rbf(
    x: ArrayLike,
    y: ArrayLike,
    *,
    bandwidth: float | None = None,
    num_permutations: int = 200,
    seed: int = 0,
) -> MMDResult:
    """Two-sample MMD test for INDEPENDENT draws (use :func:`mmd_test` for MCMC output).

    The p-value is (1 + #{null >= observed}) / (1 + num_permutations) over random relabellings of
    the pooled sample (Phipson & Smyth 2010), never 0, resolution 1 / (1 + num_permutations).

    Args:
        x, y: samples of shape (n, d) and (m, d), n, m >= 2.
        bandwidth: RBF length scale sigma > 0; ``None`` uses the median heuristic.
        num_permutations: number of relabellings for the p-value.
        seed: seed of the ``jax.random`` key that draws the permutations.
    """
    x, y = as_sample_pair(x, y)
    num_permutations = checks.check("num_permutations", num_permutations, checks.integer(1))
    d2 = pairwise_sq_dists(jnp.asarray(np.concatenate([x, y])))
    sigma = _bandwidth(d2, bandwidth)
    labels = (jnp.arange(d2.shape[0]) < x.shape[0]).astype(d2.dtype)
    keys = jax.random.split(jax.random.key(seed), num_permutations)
    splits = jnp.concatenate([labels[None], jax.vmap(lambda k: jax.random.permutation(k, labels))(keys)])
    values = _mmd_under_splits(d2, jnp.asarray(sigma, d2.dtype), splits, x.shape[0])
    observed, null = values[0], values[1:]
    p_value = (1 + int(jnp.sum(null >= observed))) / (1 + num_permutations)
    return MMDResult(statistic=float(observed), p_value=p_value, bandwidth=sigma)


def _as_chains(name: str, a: ArrayLike) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[1] < 2:
        raise InputError(f"{name} has shape {a.shape}; pass MCMC draws as (chains, draws, dim) with >= 2 draws "
                         f"(a single chain as shape (1, draws, dim))")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} contains NaN or inf; drop diverged chains first (run.diverged)")
    return a


def autocorrelation_time(chains: np.ndarray) -> float:
    """Largest integrated autocorrelation time tau = draws / ESS over chains and dimensions (bulk ESS)."""
    per_chain = np.moveaxis(chains, -1, 0)[:, :, None, :]  # (dim, chain, 1, draw): ESS of each chain alone
    ess = np.asarray(array_stats.ess(per_chain, chain_axis=-2, draw_axis=-1, method="bulk"))
    ess = np.where(np.isfinite(ess) & (ess > 0), ess, 1.0)
    return float(np.max(chains.shape[1] / ess))


def _evenly(chains: np.ndarray, keep: int) -> np.ndarray:
    index = np.unique(np.linspace(0, chains.shape[1] - 1, keep).round().astype(int))
    return chains[:, index]


def mmd_test(
    x: ArrayLike,
    y: ArrayLike,
    *,
    method: str = "auto",
    bandwidth: float | None = None,
    num_permutations: int = 1000,
    max_draws_per_chain: int = 100,
    min_splits: int = 50,
    seed: int = 0,
) -> MMDTestResult:
    """MMD two-sample test that holds its level on autocorrelated MCMC draws.

    Args:
        x, y: draws shaped (chains, draws, dim) (or (chains, draws) for one variable).
        method: "chains" (permute whole chains; exact), "thin" (thin to one draw per autocorrelation
            time, then permute draws), or "auto" ("chains" when C(cx + cy, cx) >= ``min_splits``).
        bandwidth: RBF length scale; None: median heuristic on the pooled draws used.
        num_permutations: random splits when there are more distinct ones; all are enumerated
            (exact p-value, identity included) when there are at most this many.
        max_draws_per_chain: each chain is thinned evenly to at most this many draws before the
            kernel matrix is formed (whole chains stay whole, so the "chains" test stays exact).
        min_splits: see ``method="auto"``; with fewer than 1 / alpha splits no split can reach alpha.
        seed: key of the random splits.

    Returns:
        :class:`MMDTestResult` with ``p_value``.
    """
    x, y = _as_chains("x", x), _as_chains("y", y)
    if x.shape[2] != y.shape[2]:
        raise InputError(f"x has {x.shape[2]} dimensions and y has {y.shape[2]}: both must describe the same variables")
    method = checks.check("method", method, checks.choice(*METHODS))
    num_permutations = checks.check("num_permutations", num_permutations, checks.integer(1))
    max_draws = checks.check("max_draws_per_chain", max_draws_per_chain, checks.integer(2))
    cx, cy = x.shape[0], y.shape[0]
    splits_available = math.comb(cx + cy, cx)
    if method == "auto":
        method = "chains" if splits_available >= min_splits else "thin"
    if method == "chains" and splits_available < 2:
        raise InputError(f"method='chains' needs at least one chain in each set and 2 chains in all "
                         f"(got {cx} + {cy}); use method='thin'")
    if method == "thin":
        tau = max(autocorrelation_time(x), autocorrelation_time(y))
        spacing = max(1, math.ceil(tau))
        x, y = x[:, ::spacing], y[:, ::spacing]
        if x.shape[1] * cx < 2 or y.shape[1] * cy < 2:
            raise InputError(f"thinning to one draw per autocorrelation time ({tau:.0f} steps) leaves fewer than "
                             f"2 draws in a set; run longer chains or use more chains with method='chains'")
    keep = min(x.shape[1], y.shape[1], max_draws)
    x, y = _evenly(x, keep), _evenly(y, keep)
    keep = x.shape[1]
    pooled = np.concatenate([x.reshape(-1, x.shape[2]), y.reshape(-1, y.shape[2])])
    d2 = pairwise_sq_dists(jnp.asarray(pooled))
    sigma = _bandwidth(d2, bandwidth)
    rng = np.random.default_rng(seed)
    if method == "chains":
        units, per_unit, in_x = cx + cy, keep, cx
    else:
        units, per_unit, in_x = len(pooled), 1, x.shape[0] * keep
    exact = math.comb(units, in_x) <= num_permutations
    if exact:
        chosen = [np.array(c) for c in itertools.combinations(range(units), in_x)]
    else:
        chosen = [np.arange(in_x)] + [rng.permutation(units)[:in_x] for _ in range(num_permutations)]
    unit_labels = np.zeros((len(chosen), units), np.float32)
    for row, members in enumerate(chosen):
        unit_labels[row, members] = 1.0
    splits = np.repeat(unit_labels, per_unit, axis=1)
    values = np.asarray(_mmd_under_splits(d2, jnp.asarray(sigma, d2.dtype), jnp.asarray(splits), in_x * per_unit))
    observed = values[0]  # the identity split comes first in both branches
    # Ties count against the observed split: with cx = cy a split and its complement give the same
    # statistic up to float32 rounding, which must not break the tie in the observed split's favour.
    at_least = values >= observed - 1e-5 * (abs(observed) + 1e-12)
    if exact:
        p_value = float(np.mean(at_least))
    else:
        p_value = (1 + int(np.sum(at_least[1:]))) / (1 + num_permutations)
    return MMDTestResult(float(observed), p_value, sigma, method, len(chosen) - (0 if exact else 1), exact, keep)
