"""Distances between sample sets, predictive distributions and basin masses.

Every function is pure: arrays in, numbers out, randomness only through an explicit ``seed``.
They are the comparisons of SCIENCE.md §5 (Izmailov et al. 2021): weight-space sample sets
(MMD, sliced and marginal Wasserstein, Gaussian and nearest-neighbour KL), predictive
distributions (top-1 agreement, total variation, predictive Wasserstein) and basin masses
(KL, Jensen–Shannon, Wasserstein), the last being what the paper reports for its Moons test
(KL 0.009, W 0.002, JS 0.003).

Conventions: sample sets are ``(n, d)`` arrays (a 1-D array is read as ``n`` draws of one
variable); logarithms are natural, so KL and JS are in nats. Where ArviZ already implements an
estimator (``arviz_stats.wasserstein``, ``arviz_stats.kl_divergence``) the function here is a thin
wrapper around it; MMD and sliced Wasserstein exist in none of ArviZ, BlackJAX or SciPy and are
written in JAX. The MMD tests live in :mod:`fractalbayes.stats.mmd` (``mmd_test`` is the one valid
for MCMC draws) and are re-exported here.
"""

import functools

import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
import xarray as xr
from numpy.typing import ArrayLike

from fractalbayes.stats.mmd import MMDResult, MMDTestResult, as_sample_pair, mmd_rbf, mmd_test

__all__ = [
    "MMDResult",
    "MMDTestResult",
    "as_masses",
    "gaussian_kl",
    "gaussian_kl_closed_form",
    "marginal_wasserstein",
    "mass_divergences",
    "mmd_rbf",
    "mmd_test",
    "nn_kl",
    "predictive_agreement",
    "predictive_tv",
    "predictive_wasserstein",
    "sliced_wasserstein",
]

_MASS_ATOL = 1e-6  # basin masses must sum to 1 within this
_PROB_ATOL = 1e-5  # predictive class probabilities (float32 softmax) likewise
_RIDGE = 1e-10  # relative ridge added to fitted covariances in gaussian_kl


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def as_masses(p: ArrayLike, name: str = "p") -> np.ndarray:
    """Check a vector of basin masses and return it as a float array.

    Masses must be a finite, nonnegative 1-D vector summing to 1 within 1e-6. The masses are not
    renormalised silently: a vector that does not sum to 1 is usually counts or a bug.
    """
    p = np.asarray(p, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"{name} has shape {p.shape}; basin masses must be a 1-D vector.")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or inf; basin masses must be finite.")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative entries {p[p < 0]}; basin masses must be >= 0.")
    if abs(p.sum() - 1.0) > _MASS_ATOL:
        raise ValueError(
            f"{name} sums to {p.sum():.10g}, not 1 (tolerance {_MASS_ATOL}); "
            f"normalise with {name} / {name}.sum()."
        )
    return p


def _mean_predictive(p: ArrayLike, name: str) -> np.ndarray:
    """Class probabilities (n_probe, C), averaging a leading draws axis if there is one."""
    p = np.asarray(p, dtype=float)
    if p.ndim == 3:
        p = p.mean(axis=0)
    if p.ndim != 2:
        raise ValueError(
            f"{name} has shape {p.shape}; pass class probabilities as (n_probe, n_classes) or "
            "per draw as (n_draws, n_probe, n_classes)."
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} has negative or non-finite probabilities.")
    if not np.allclose(p.sum(axis=-1), 1.0, rtol=0.0, atol=_PROB_ATOL):
        raise ValueError(
            f"rows of {name} do not sum to 1 (tolerance {_PROB_ATOL}); pass probabilities, "
            "e.g. jax.nn.softmax(logits, axis=-1), not logits or counts."
        )
    return p


def _predictive_pair(p: ArrayLike, q: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, q = _mean_predictive(p, "p"), _mean_predictive(q, "q")
    if p.shape != q.shape:
        raise ValueError(
            f"p averages to shape {p.shape} and q to {q.shape}; evaluate both on the same probe "
            "points and classes."
        )
    return p, q


# --------------------------------------------------------------------------------------------------
# Wasserstein distances between empirical distributions
# --------------------------------------------------------------------------------------------------


def _quantile_grid(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Common grid on which both empirical quantile functions are constant.

    The quantile function of n sorted draws is x_(i) on ((i-1)/n, i/n]. Merging the breakpoints
    {i/n} and {j/m} (exactly, in integer units of 1/(n m)) gives intervals on which both are
    constant; returns the 0-based order-statistic indices into x and y and the interval widths.
    """
    breaks = np.union1d(m * np.arange(n + 1), n * np.arange(m + 1))
    mid2 = breaks[:-1] + breaks[1:]  # twice the interval midpoints, in units of 1/(n m)
    return mid2 // (2 * m), mid2 // (2 * n), np.diff(breaks) / (n * m)


@functools.partial(jax.jit, static_argnames=("p",))
def _wasserstein_pp_columns(a: jax.Array, b: jax.Array, p: float) -> jax.Array:
    """W_p^p between the empirical distributions of matching columns of a (n, k) and b (m, k).

    W_p^p = int_0^1 |F^{-1}(u) - G^{-1}(u)|^p du, exact for empirical distributions (the
    quantile functions are step functions, integrated on their merged grid).
    """
    ix, iy, w = _quantile_grid(a.shape[0], b.shape[0])
    qa = jnp.sort(a, axis=0)[ix]
    qb = jnp.sort(b, axis=0)[iy]
    return jnp.asarray(w, qa.dtype) @ jnp.abs(qa - qb) ** p


@functools.partial(jax.jit, static_argnames=("num_projections", "p"))
def _sliced_wpp(x: jax.Array, y: jax.Array, key: jax.Array, num_projections: int, p: float):
    """W_p^p of the projections on ``num_projections`` uniform random unit directions."""
    theta = jax.random.normal(key, (x.shape[1], num_projections), dtype=x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0)
    return _wasserstein_pp_columns(x @ theta, y @ theta, p)


def sliced_wasserstein(
    x: ArrayLike, y: ArrayLike, *, num_projections: int = 128, p: float = 1, seed: int = 0
) -> float:
    """Sliced p-Wasserstein distance between two sample sets.

    SW_p(x, y) = ( mean_l W_p^p(theta_l . x, theta_l . y) )^{1/p} with theta_l drawn uniformly on
    the unit sphere (normalised Gaussian vectors from ``jax.random.key(seed)``); each 1-D W_p is
    exact for the projected empirical distributions (Bonneel et al. 2015; Kolouri et al. 2019).
    n != m is handled exactly by evaluating both quantile functions on their merged grid. In one
    dimension every direction is +-1, so the result is the exact 1-D W_p. Compiled once per
    (n, m, d, num_projections, p).

    Args:
        x, y: samples of shape (n, d) and (m, d).
        num_projections: number of random directions.
        p: order of the distance, p >= 1.
        seed: seed for the directions.
    """
    x, y = as_sample_pair(x, y, min_draws=1)
    if num_projections < 1:
        raise ValueError(f"num_projections is {num_projections}; use at least 1.")
    if not p >= 1:
        raise ValueError(f"p is {p}; the Wasserstein distance needs p >= 1.")
    wpp = _sliced_wpp(jnp.asarray(x), jnp.asarray(y), jax.random.key(seed), num_projections, p)
    return float(jnp.mean(wpp) ** (1.0 / p))


def _as_arviz(samples: np.ndarray) -> xr.DataArray:
    """The smallest container ArviZ's distance functions accept: one chain of draws."""
    return xr.DataArray(samples[None], dims=("chain", "draw", "dim"), name="x")


def marginal_wasserstein(x: ArrayLike, y: ArrayLike, *, seed: int = 0) -> float:
    """Sum over dimensions of the 1-D Wasserstein-1 distances between the marginals.

    sum_j W1(x[:, j], y[:, j]), via ``arviz_stats.wasserstein(..., joint=False)`` (which calls
    ``scipy.stats.wasserstein_distance`` per marginal). ArviZ draws ``num_samples`` draws without
    replacement from each set with the same ``random_seed``; here num_samples = min(n, m), so for
    n == m the result is the exact empirical distance and for n != m the larger set is subsampled
    (seeded by ``seed``). Ignores dependence between dimensions by construction.
    """
    x, y = as_sample_pair(x, y, min_draws=1)
    return float(
        arviz_stats.wasserstein(
            _as_arviz(x),
            _as_arviz(y),
            joint=False,
            num_samples=min(x.shape[0], y.shape[0]),
            round_to="none",
            random_seed=seed,
        )
    )


def nn_kl(x: ArrayLike, y: ArrayLike, *, seed: int = 0) -> float:
    """Nearest-neighbour estimate of KL(P_x || P_y) from samples.

    KL ≈ (d / n) sum_i log(nu_i / rho_i) + log(n / (n - 1)), with rho_i the distance from x_i to its
    nearest other x and nu_i to its nearest y (Perez-Cruz 2008, eq. 14), via
    ``arviz_stats.kl_divergence(..., round_to="none")``. ArviZ subsamples both sets to the same
    size (here min(n, m), without replacement, seeded by ``seed``), adds jitter of 1e-6 standard
    deviations to break ties, and clamps negative estimates to 0. Fast but noisy; biased for
    small n.
    """
    x, y = as_sample_pair(x, y)
    return float(
        arviz_stats.kl_divergence(
            _as_arviz(x),
            _as_arviz(y),
            num_samples=min(x.shape[0], y.shape[0]),
            round_to="none",
            random_seed=seed,
        )
    )


# --------------------------------------------------------------------------------------------------
# Gaussian KL
# --------------------------------------------------------------------------------------------------


def gaussian_kl_closed_form(
    mu0: ArrayLike, S0: ArrayLike, mu1: ArrayLike, S1: ArrayLike
) -> float:
    """KL(N(mu0, S0) || N(mu1, S1)) in nats.

    KL = 1/2 [ tr(S1^{-1} S0) + (mu1 - mu0)^T S1^{-1} (mu1 - mu0) - d + log det S1 - log det S0 ]
    (e.g. Bishop, PRML, exercise 2.13 / Rasmussen & Williams, eq. A.23), evaluated with Cholesky
    factors; both covariances must be symmetric positive definite.
    """
    mu0, mu1 = np.atleast_1d(np.asarray(mu0, float)), np.atleast_1d(np.asarray(mu1, float))
    S0, S1 = np.atleast_2d(np.asarray(S0, float)), np.atleast_2d(np.asarray(S1, float))
    d = mu0.shape[0]
    if mu0.shape != (d,) or mu1.shape != (d,) or S0.shape != (d, d) or S1.shape != (d, d):
        raise ValueError(
            f"shapes mu0 {mu0.shape}, S0 {S0.shape}, mu1 {mu1.shape}, S1 {S1.shape} do not match; "
            "pass means of shape (d,) and covariances of shape (d, d)."
        )
    factors = []
    for name, S in (("S0", S0), ("S1", S1)):
        try:
            factors.append(scipy.linalg.cholesky(S, lower=True))
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{name} is not positive definite; add a small ridge (e.g. 1e-9 * I) or drop "
                "degenerate dimensions."
            ) from None
    L0, L1 = factors
    a = scipy.linalg.solve_triangular(L1, L0, lower=True)  # tr(S1^{-1} S0) = |L1^{-1} L0|_F^2
    b = scipy.linalg.solve_triangular(L1, mu1 - mu0, lower=True)
    logdet = 2.0 * (np.sum(np.log(np.diag(L1))) - np.sum(np.log(np.diag(L0))))
    return float(0.5 * (np.sum(a**2) + np.sum(b**2) - d + logdet))


def _gaussian_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and unbiased covariance plus a ridge of 1e-10 * mean variance (or 1e-10)."""
    S = np.atleast_2d(np.cov(x, rowvar=False))
    scale = np.trace(S) / S.shape[0]
    return x.mean(axis=0), S + _RIDGE * (scale if scale > 0 else 1.0) * np.eye(S.shape[0])


def gaussian_kl(x: ArrayLike, y: ArrayLike) -> float:
    """KL(N(mean_x, cov_x) || N(mean_y, cov_y)) between Gaussian fits to two sample sets, in nats.

    Moment-matched Gaussians (sample mean, unbiased covariance) plugged into
    :func:`gaussian_kl_closed_form`. Each covariance gets a ridge of 1e-10 times its mean variance
    on the diagonal so that singular fits (fewer draws than dimensions, constant or collinear
    coordinates) stay positive definite; the relative change to a non-singular result is of the
    same order. With singular covariances the value is then dominated by the ridge and only
    meaningful as "very large".
    """
    x, y = as_sample_pair(x, y)
    return gaussian_kl_closed_form(*_gaussian_fit(x), *_gaussian_fit(y))


# --------------------------------------------------------------------------------------------------
# Predictive distributions
# --------------------------------------------------------------------------------------------------


def predictive_agreement(p: ArrayLike, q: ArrayLike) -> float:
    """Top-1 agreement: fraction of probe points where the mean predictives pick the same class.

    agreement = mean_i 1[argmax_c pbar_ic = argmax_c qbar_ic] (Izmailov et al. 2021, §4), with
    pbar the class probabilities averaged over draws when a (draws, n_probe, C) array is given.
    Ties in argmax go to the lowest class index.
    """
    p, q = _predictive_pair(p, q)
    return float(np.mean(np.argmax(p, axis=-1) == np.argmax(q, axis=-1)))


def predictive_tv(p: ArrayLike, q: ArrayLike) -> float:
    """Mean over probe points of the total variation 1/2 sum_c |pbar_ic - qbar_ic|, in [0, 1].

    Izmailov et al. 2021, §4; inputs as for :func:`predictive_agreement`.
    """
    p, q = _predictive_pair(p, q)
    return float(np.mean(0.5 * np.sum(np.abs(p - q), axis=-1)))


def predictive_wasserstein(samples_p: ArrayLike, samples_q: ArrayLike) -> float:
    """Mean over probe points of the 1-D Wasserstein-1 distance between predictive samples.

    mean_i W1(samples_p[:, i], samples_q[:, i]) for regression (Izmailov et al. 2021, §4), exact
    for the empirical distributions; the two arrays are (draws_p, n_probe) and (draws_q, n_probe)
    and the numbers of draws may differ.
    """
    a, b = np.asarray(samples_p, float), np.asarray(samples_q, float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"samples_p has shape {a.shape} and samples_q {b.shape}; pass (n_draws, n_probe) "
            "arrays over the same probe points."
        )
    a, b = as_sample_pair(a, b, min_draws=1)
    return float(jnp.mean(_wasserstein_pp_columns(jnp.asarray(a), jnp.asarray(b), 1)))


# --------------------------------------------------------------------------------------------------
# Basin masses
# --------------------------------------------------------------------------------------------------


def mass_divergences(p: ArrayLike, q: ArrayLike) -> dict[str, float]:
    """KL, Jensen–Shannon and Wasserstein-1 between two distributions over the same K basins.

    - kl = KL(p || q) = sum_k p_k log(p_k / q_k), nats, with 0 log 0 = 0; inf when q_k = 0 < p_k.
    - js = 1/2 KL(p || r) + 1/2 KL(q || r), r = (p + q) / 2, natural log, so 0 <= js <= log 2.
    - wasserstein = W1 between p and q as distributions on the points 0, 1, ..., K-1
      (``scipy.stats.wasserstein_distance`` with weights) = sum_k |P_k - Q_k| over the cumulative
      masses. This treats the basin labels as an ordered 1-D support, which is what a
      Wasserstein figure over cluster masses such as the paper's (Moons test, W = 0.002) implies;
      it depends on how basins are numbered, unlike KL and JS. Number basins consistently (e.g. by
      decreasing posterior mass) before comparing values.

    Masses must be nonnegative and sum to 1 within 1e-6 (see :func:`as_masses`).
    """
    p, q = as_masses(p, "p"), as_masses(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p has {p.size} basins and q has {q.size}; use the same basins in both.")
    r = 0.5 * (p + q)
    support = np.arange(p.size)
    # divergences are >= 0; clip the -1e-17 that rounding leaves for equal masses
    return {
        "kl": max(0.0, float(np.sum(scipy.special.rel_entr(p, q)))),
        "js": max(0.0, float(0.5 * np.sum(scipy.special.rel_entr(p, r) + scipy.special.rel_entr(q, r)))),
        "wasserstein": float(scipy.stats.wasserstein_distance(support, support, p, q)),
    }
