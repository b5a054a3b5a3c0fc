"""Is the LLC form evidence? A permutation test of the lambda-to-basin assignment, with its power.

With a fitted overall scale the paper's tempering exponents are

    log e_k = log s + (2 - 2 lambda_k / d_s) log xi = A + B lambda_k,

A = log s + 2 log xi, B = -2 log xi / d_s (>= 0 for the paper's xi <= 1; 4 instead of 2 with
d_f = 2 lambda). Basin masses therefore identify only (A, B): xi, s and d_s are not separately
determined, and the fitted xi cannot be compared with the paper's 0.5 (SCIENCE.md §7). The
question the masses can answer is whether the lambda_k matter: does the true assignment of the
lambda_k to basins fit KL(p_sgd || q), q_k ∝ p_b,k^{1/e_k}, better than shuffled assignments?

:func:`permutation_test` refits (A, B) for every assignment (all K! when K! <= ``max_permutations``,
else a random subset) and returns the exact permutation p-value with ties broken at random, so the
p-value is uniform on {1/N, ..., 1} under the null of exchangeable assignments (equal lambdas or
saturated fits make ties; counting them in the true assignment's favour made P(rank = 1) = 0.70 at
K = 2). With K! < 1 / alpha no assignment can reach alpha: K <= 3 is never evidence at 0.05.
:func:`power` measures the test on planted LLC-form masses with multinomial count noise at the
run's effective sample sizes; :func:`verdict` states the result in one line.

The fit is a vectorised damped Newton method on (A, B) from the best point of a grid, for all
assignments at once; it reaches the same minima as :func:`fractalbayes.slt.tempering.fit_tempering`
with ``scale="fit"`` (tested) at a fraction of the cost.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from fractalbayes import checks
from fractalbayes.errors import InputError
from fractalbayes.stats.metrics import as_masses

_BOX = 40.0  # |A| <= 40 and |B lambda_k| <= 80: log e_k within +-120, where q is saturated anyway
_NEWTON_STEPS = 150
_STARTS = 4


class PermutationTest(NamedTuple):
    """Result of :func:`permutation_test`."""

    p_value: float
    """(rank) / (number of assignments): exact under the null, ties broken at random."""
    rank: int
    """1 + assignments fitting strictly better + a uniform draw among those tied with the truth."""
    num_assignments: int
    exact: bool
    """True when all K! assignments were evaluated."""
    ties: int
    """Other assignments whose objective equals the truth's (within 1e-9 relative)."""
    objectives: np.ndarray
    """KL(p_sgd || q) of each assignment, the true one first."""
    min_p_value: float
    """The smallest p-value this K and number of assignments can give."""


def _fit_batch(p_sgd: np.ndarray, log_pb: np.ndarray, lambdas: np.ndarray, xi_range: str) -> np.ndarray:
    """min over (A, B) of KL(p_sgd || q) for each row of ``lambdas`` (P, K); returns (P,) objectives.

    g_k = log p_b,k exp(-(A + B lambda_k)), log q = g - logsumexp g. With x_k = (1, lambda_k):
    grad = sum_k (q_k - p_k)(-g_k) x_k and Hessian = sum_k [q_k(-g_k x_k + sum_j q_j g_j x_j)](-g_k x_k)^T
    + (q_k - p_k) g_k x_k x_k^T (differentiating dg_k/dtheta = -g_k x_k once more).
    """
    entropy = float(np.sum(p_sgd[p_sgd > 0] * np.log(p_sgd[p_sgd > 0])))
    lam_max = np.maximum(np.max(np.abs(lambdas), axis=1), 1e-12)
    b_low = np.zeros_like(lam_max) if xi_range == "paper" else -2 * _BOX / lam_max
    b_high = 2 * _BOX / lam_max

    def objective(a, b, lam):  # a, b: (R, G); lam: (R, K) -> (R, G)
        return _kl(p_sgd, log_pb, entropy, a[..., None] + b[..., None] * lam[:, None, :])

    # grid start: A in [-7, 7] and B lambda_max in [b_low, b_high] clipped to [-7, 7], spacing <= 0.5
    grid_a = np.linspace(-7.0, 7.0, 29)
    unit = np.linspace(0.0, 1.0, 29)
    low = np.maximum(b_low * lam_max, -7.0) / lam_max
    high = np.minimum(b_high * lam_max, 7.0) / lam_max
    grid_b = low[:, None] + (high - low)[:, None] * unit[None, :]  # (P, 29)
    a_mesh = np.broadcast_to(grid_a[None, :, None], (len(lambdas), 29, 29)).reshape(len(lambdas), -1)
    b_mesh = np.broadcast_to(grid_b[:, None, :], (len(lambdas), 29, 29)).reshape(len(lambdas), -1)
    values = objective(a_mesh, b_mesh, lambdas)
    starts = np.argsort(values, axis=1)[:, :_STARTS]  # Newton from the best few grid points
    rows = np.repeat(np.arange(len(lambdas)), _STARTS)
    theta = np.stack([a_mesh[rows, starts.ravel()], b_mesh[rows, starts.ravel()]], axis=1)
    current = values[rows, starts.ravel()]
    lambdas, b_low, b_high = lambdas[rows], b_low[rows], b_high[rows]
    x = np.stack([np.ones_like(lambdas), lambdas], axis=-1)  # (P * starts, K, 2)
    damping = np.full(len(rows), 1e-3)
    for _ in range(_NEWTON_STEPS):
        g = log_pb[None, :] * np.exp(-(theta[:, :1] + theta[:, 1:] * lambdas))
        top = np.max(g, axis=-1, keepdims=True)
        q = np.exp(g - top)
        q /= q.sum(axis=-1, keepdims=True)
        dg = -g[..., None] * x  # (P, K, 2)
        grad = np.einsum("pk,pkc->pc", q - p_sgd, dg)
        mean_dg = np.einsum("pk,pkc->pc", q, dg)
        dq = q[..., None] * (dg - mean_dg[:, None, :])
        hess = np.einsum("pkc,pkd->pcd", dq, dg) + np.einsum("pk,pkc,pkd->pcd", (q - p_sgd) * g, x, x)
        hess = 0.5 * (hess + np.swapaxes(hess, 1, 2))
        step = -np.linalg.solve(hess + (damping[:, None, None] + 1e-12) * np.eye(2), grad[..., None])[..., 0]
        trial = theta + step
        trial[:, 0] = np.clip(trial[:, 0], -_BOX, _BOX)
        trial[:, 1] = np.clip(trial[:, 1], b_low, b_high)
        new = objective(trial[:, :1], trial[:, 1:], lambdas)[:, 0]
        better = new < current
        theta = np.where(better[:, None], trial, theta)
        current = np.where(better, new, current)
        damping = np.where(better, np.maximum(damping * 0.3, 1e-9), np.minimum(damping * 10.0, 1e9))
    current = current.reshape(-1, _STARTS).min(axis=1)
    # B = 0 (one global exponent) is inside both ranges: the LLC form never fits worse than it
    current = np.minimum(current, _global_objective(p_sgd, log_pb, entropy))
    return np.maximum(current, 0.0)


def _kl(p_sgd: np.ndarray, log_pb: np.ndarray, entropy: float, log_e: np.ndarray) -> np.ndarray:
    """KL(p_sgd || q) for q ∝ p_b^{1/e}, e = exp(log_e) of shape (..., K) (broadcast): log q = g -
    logsumexp(g), g = log p_b exp(-log_e); ``entropy`` is sum p_sgd log p_sgd."""
    g = log_pb * np.exp(-log_e)
    top = np.max(g, axis=-1, keepdims=True)
    log_q = g - top - np.log(np.sum(np.exp(g - top), axis=-1, keepdims=True))
    return entropy - np.sum(p_sgd * log_q, axis=-1)


def _global_objective(p_sgd: np.ndarray, log_pb: np.ndarray, entropy: float) -> float:
    """min over A of KL(p_sgd || q), q ∝ p_b^{exp(-A)}: the global-exponent model (B = 0), by a
    grid over |A| <= 40 refined with bisection on the derivative (the objective is smooth in A)."""
    def objective(a):  # (G,) -> (G,)
        return _kl(p_sgd, log_pb, entropy, a[:, None])

    grid = np.linspace(-_BOX, _BOX, 1601)
    values = objective(grid)
    i = int(np.argmin(values))
    low, high = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(60):  # golden-section search on the bracketing interval
        m1, m2 = low + 0.382 * (high - low), low + 0.618 * (high - low)
        if objective(np.array([m1]))[0] < objective(np.array([m2]))[0]:
            high = m2
        else:
            low = m1
    return float(min(values[i], objective(np.array([(low + high) / 2]))[0]))


def assignments(k: int, max_permutations: int, rng: np.random.Generator) -> tuple[list[tuple[int, ...]], bool]:
    """The identity, then every other permutation of range(k) when k! <= max_permutations (exact), else
    max_permutations - 1 random ones; and whether the list is exact."""
    identity = tuple(range(k))
    if math.factorial(k) <= max_permutations:
        return [identity] + [p for p in itertools.permutations(range(k)) if p != identity], True
    return [identity] + [tuple(rng.permutation(k)) for _ in range(max_permutations - 1)], False


def permutation_test(
    p_sgd: ArrayLike,
    p_b: ArrayLike,
    lambdas: ArrayLike,
    *,
    seed: int = 0,
    max_permutations: int = 720,
    xi_range: str = "paper",
) -> PermutationTest:
    """Permutation p-value of the true lambda-to-basin assignment under the LLC form (module docstring).

    Args:
        p_sgd, p_b: SGD and posterior basin masses (sum 1; p_b > 0), in the same basin order.
        lambdas: one LLC per basin (finite, >= 0).
        seed: draws the random tie-break and, when K! > max_permutations, the assignments.
        max_permutations: all K! assignments are evaluated when K! <= this, else this many.
        xi_range: "paper" (B >= 0, i.e. xi <= 1) or "free".
    """
    p_sgd, p_b = as_masses(p_sgd, "p_sgd"), as_masses(p_b, "p_b")
    lambdas = np.asarray(lambdas, float)
    if lambdas.ndim != 1 or not np.all(np.isfinite(lambdas)) or np.any(lambdas < 0):
        raise InputError(f"lambdas must be one finite LLC >= 0 per basin, got {lambdas!r}")
    if not p_sgd.size == p_b.size == lambdas.size or p_b.size < 2:
        raise InputError(f"p_sgd, p_b and lambdas need one entry per basin and at least two basins; got lengths "
                         f"{p_sgd.size}, {p_b.size}, {lambdas.size}")
    if np.any(p_b <= 0):
        raise InputError("p_b has empty basins; add pseudo-counts (e.g. Jeffreys 1/2) before normalising")
    max_permutations = checks.check("max_permutations", max_permutations, checks.integer(2))
    xi_range = checks.check("xi_range", xi_range, checks.choice("paper", "free"))
    rng = np.random.default_rng(seed)
    orders, exact = assignments(lambdas.size, max_permutations, rng)
    objectives = _fit_batch(p_sgd, np.log(p_b), lambdas[np.array(orders)], xi_range)
    observed = objectives[0]
    tolerance = 1e-9 * max(1.0, abs(observed)) + 1e-12
    better = int(np.sum(objectives[1:] < observed - tolerance))
    ties = int(np.sum(np.abs(objectives[1:] - observed) <= tolerance))
    rank = 1 + better + int(rng.integers(0, ties + 1))
    n = len(orders)
    return PermutationTest(rank / n, rank, n, exact, ties, objectives, 1.0 / n)


def planted_masses(
    lambdas: np.ndarray, a: float, b: float, p_b: np.ndarray, n_sgd: int, n_posterior: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy (p_sgd, p_b) from the LLC form: q ∝ p_b^{1/e}, e = exp(a + b lambda), then multinomial
    counts of ``n_sgd`` nets and ``n_posterior`` effective posterior draws, Jeffreys-smoothed."""
    log_q = np.log(p_b) * np.exp(-(a + b * lambdas))
    q = np.exp(log_q - log_q.max())
    q /= q.sum()
    counts_sgd = rng.multinomial(n_sgd, q) + 0.5
    counts_b = rng.multinomial(max(1, int(round(n_posterior))), p_b) + 0.5
    return counts_sgd / counts_sgd.sum(), counts_b / counts_b.sum()


def power(
    lambdas: ArrayLike,
    *,
    a: float,
    b: float,
    p_b: ArrayLike,
    n_sgd: int,
    n_posterior: float,
    alpha: float = 0.05,
    repeats: int = 100,
    seed: int = 0,
    max_permutations: int = 120,
) -> float:
    """P(p <= alpha) of :func:`permutation_test` on planted LLC-form masses (see :func:`planted_masses`)."""
    lambdas, p_b = np.asarray(lambdas, float), as_masses(p_b, "p_b")
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(repeats):
        p_sgd_hat, p_b_hat = planted_masses(lambdas, a, b, p_b, n_sgd, n_posterior, rng)
        hits += permutation_test(p_sgd_hat, p_b_hat, lambdas, seed=r, max_permutations=max_permutations).p_value <= alpha
    return hits / repeats


def verdict(test: PermutationTest, power_at_alpha: float, *, alpha: float = 0.05) -> str:
    """One line: does the LLC form beat a global exponent (yes / no / undetermined)?"""
    if test.min_p_value > alpha:
        return (f"LLC form beats a global exponent: undetermined at alpha = {alpha:g} ({test.num_assignments} "
                f"assignments: the smallest possible p-value is {test.min_p_value:.3g}; K >= 4 basins and enough "
                f"permutations are needed)")
    if test.p_value <= alpha:
        return (f"LLC form beats a global exponent: yes at alpha = {alpha:g}, power {power_at_alpha:.2f} "
                f"(p = {test.p_value:.3g})")
    if power_at_alpha < 0.5:
        return (f"LLC form beats a global exponent: undetermined at alpha = {alpha:g}, power {power_at_alpha:.2f} "
                f"(p = {test.p_value:.3g}; a 'no' needs power >= 0.5)")
    return f"LLC form beats a global exponent: no at alpha = {alpha:g}, power {power_at_alpha:.2f} (p = {test.p_value:.3g})"
