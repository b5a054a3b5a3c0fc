"""Exact ground truth of singular learning theory (SCIENCE.md section 6).

Closed-form learning coefficients (real log canonical thresholds) lambda, returned as exact
``fractions.Fraction`` values, for regular models, monomial potentials, reduced-rank regression and
deep linear networks; and the exact finite-temperature quantity ``t * E_t[K]`` for one- and
two-dimensional monomial potentials, which is what an LLC estimator at inverse temperature t
actually targets (it approaches lambda only slowly, with log corrections).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from fractalbayes import checks
from fractalbayes.errors import InputError

_RATIONAL = checks.kind(numbers.Rational, want="an int or fractions.Fraction")


def _fraction(value: object) -> Fraction:
    """Validator: an int or ``fractions.Fraction`` (bools refused) as an exact Fraction."""
    return Fraction(_RATIONAL(value))


_fraction.want = _RATIONAL.want
_NONNEGATIVE = checks.positive(allow_zero=True)


def _is_sequence(value: object) -> bool:
    """True for lists, tuples and 1-D numpy arrays (not strings)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _exponents(k: Sequence, h: Sequence | None, validator: checks.Validator) -> tuple[list, list]:
    """Check the exponents k_j >= 0 (at least one > 0) and prior powers h_j, same length; each entry
    converted by ``validator``."""
    if not _is_sequence(k) or len(k) == 0:
        raise InputError(f"k must be a non-empty sequence of exponents k_j >= 0, got {k!r}")
    ks = [checks.check(f"k[{j}]", kj, validator) for j, kj in enumerate(k)]
    if any(kj < 0 for kj in ks) or not any(kj > 0 for kj in ks):
        raise InputError(f"k must have every k_j >= 0 and at least one k_j > 0, got {k!r}")
    if h is None:
        return ks, [validator(0)] * len(ks)
    if not _is_sequence(h) or len(h) != len(ks):
        raise InputError(f"h must be None or a sequence as long as k ({len(ks)}), got {h!r}")
    return ks, [checks.check(f"h[{j}]", hj, validator) for j, hj in enumerate(h)]


def regular_learning_coefficient(d: int) -> Fraction:
    """Learning coefficient of a regular model with d identifiable parameters: lambda = d / 2.

    Multiplicity 1 (Watanabe 2009, "Algebraic Geometry and Statistical Learning Theory").
    """
    return Fraction(checks.check("d", d, checks.integer(0)), 2)


def monomial_learning_coefficient(
    k: Sequence[int | Fraction], h: Sequence[int | Fraction] | None = None
) -> tuple[Fraction, int]:
    """(lambda, multiplicity) of K(w) = prod_j w_j^(2 k_j) under a prior ∝ prod_j |w_j|^(h_j).

    lambda = min over j with k_j > 0 of (h_j + 1) / (2 k_j); the multiplicity is the number of j
    attaining the minimum (Watanabe 2009, "Algebraic Geometry and Statistical Learning Theory",
    normal-crossing case). k_j >= 0 (at least one > 0) and h_j > -1 must be ints or Fractions;
    h defaults to all zeros (a prior that is positive and smooth at the origin).
    """
    ks, hs = _exponents(k, h, _fraction)
    if any(hj <= -1 for hj in hs):
        raise InputError(f"h must have every h_j > -1 (an integrable prior), got {h!r}")
    ratios = [(hj + 1) / (2 * kj) for kj, hj in zip(ks, hs) if kj > 0]
    lam = min(ratios)
    return lam, ratios.count(lam)


def rrr_learning_coefficient(M: int, H: int, N: int, r: int) -> Fraction:
    """Learning coefficient of reduced-rank regression y = B A x (Aoyagi & Watanabe 2005).

    M inputs, H hidden units (the rank of the model), N outputs, true rank r <= min(M, H, N).
    Aoyagi & Watanabe, "Stochastic complexities of reduced rank regression in Bayesian
    estimation", Neural Networks 18 (2005), main theorem:

    - if N + r <= M + H, M + r <= N + H and H + r <= M + N:
      lambda = [2 (H + r)(M + N) - (M - N)^2 - (H + r)^2] / 8, plus 1/8 if M + H + N + r is odd;
    - else if M + H < N + r: lambda = (H M - H r + N r) / 2;
    - else if N + H < M + r: lambda = (H N - H r + M r) / 2;
    - else (M + N < H + r):  lambda = M N / 2.
    """
    M, H, N = (checks.check(name, v, checks.integer(1)) for v, name in ((M, "M"), (H, "H"), (N, "N")))
    r = checks.check("r", r, checks.integer(0))
    if r > min(M, H, N):
        raise InputError(f"r (true rank) must be <= min(M, H, N) = {min(M, H, N)}, got {r}")
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        lam = Fraction(2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2, 8)
        return lam + Fraction(1, 8) if (M + H + N + r) % 2 else lam
    if M + H < N + r:
        return Fraction(H * M - H * r + N * r, 2)
    if N + H < M + r:
        return Fraction(H * N - H * r + M * r, 2)
    return Fraction(M * N, 2)


def _aoyagi_subset(m: Sequence[int]) -> list[int]:
    """Values M_j (j in S) of Aoyagi's subset S for the non-negative M_j = H_j - r.

    S (|S| = l + 1 >= 2) must satisfy max_S M < min_notS M, sum_S M >= l max_S M and
    sum_S M < l min_notS M. Take S = the l + 1 smallest values, increasing l until the two
    conditions on the complement hold (or S is everything). The condition sum_S M >= l max_S M
    then holds automatically: at l = 1 it reads min M >= 0, and l grows only past a tie
    (max_S M = next M, so the sum gains max_S M) or past sum_S M >= l * next M, both of which
    give it for l + 1.
    """
    m = sorted(m)
    l = 1
    while l + 1 < len(m) and (m[l] == m[l + 1] or sum(m[: l + 1]) >= l * m[l + 1]):
        l += 1
    return m[: l + 1]


def dln_learning_coefficient(widths: Sequence[int], rank: int) -> tuple[Fraction, int]:
    """(lambda, multiplicity) of the deep linear network f(x) = W_L ... W_1 x (Aoyagi 2024).

    widths = [H_1 (input), H_2, ..., H_L, H_{L+1} (output)], L = len(widths) - 1 weight matrices,
    true product rank r = ``rank`` <= min(widths). Aoyagi, "Consideration on the learning
    efficiency of multiple-layered neural networks with linear units", Neural Networks 172 (2024):
    with M_j = H_j - r and the subset S of {1..L+1}, |S| = l + 1, found by ``_aoyagi_subset``,
    s = sum_S M_j, Mbar = ceil(s / l), a = s - (Mbar - 1) l,

        lambda = (-r^2 + r (H_1 + H_{L+1})) / 2 + a (l - a) / (4 l) - l (l - 1) / 4 * (s / l)^2
                 + (1/2) sum_{i < j in S} M_i M_j,
        multiplicity = a (l - a) + 1.

    One layer gives the regular value H_1 H_2 / 2 for every r; two layers give
    ``rrr_learning_coefficient``.
    """
    if not _is_sequence(widths) or len(widths) < 2:
        raise InputError(f"widths must be a list [input, hidden..., output] of >= 2 ints, got {widths!r}")
    hs = [checks.check(f"widths[{j}]", w, checks.integer(1)) for j, w in enumerate(widths)]
    r = checks.check("rank", rank, checks.integer(0))
    if r > min(hs):
        raise InputError(f"rank must be <= min(widths) = {min(hs)}, got {r}")
    subset = _aoyagi_subset([hj - r for hj in hs])
    l, s = len(subset) - 1, sum(subset)
    a = s - (-(-s // l) - 1) * l
    pairs = (s * s - sum(mj * mj for mj in subset)) // 2
    lam = (
        Fraction(-r * r + r * (hs[0] + hs[-1]), 2)
        + Fraction(a * (l - a), 4 * l)
        - Fraction(l * (l - 1), 4) * Fraction(s, l) ** 2
        + Fraction(pairs, 2)
    )
    return lam, a * (l - a) + 1


def exact_tempered_loss(
    k: Sequence[float], t: float, prior_scale: float = 1.0, h: Sequence[float] | None = None
) -> float:
    """t E_t[K] for K(w) = prod_j |w_j|^(2 k_j), w in R^1 or R^2, by quadrature.

    E_t is the tempered density p_t(w) ∝ rho(w) exp(-t K(w)) with the prior
    rho(w) ∝ prod_j |w_j|^(h_j) exp(-w_j^2 / (2 s^2)), s = prior_scale: the Gaussian N(0, s^2 I)
    for h = None (all h_j = 0), times the power prior |w_j|^(h_j), h_j >= 0, otherwise. As t -> infinity,
    t E_t[K] = lambda - (m - 1) / log t + ... with (lambda, m) from
    ``monomial_learning_coefficient`` (Watanabe 2009); this is the exact finite-t target of an LLC
    estimate at n beta = t. Coordinates with k_j = 0 factor out of both integrals and are dropped.

    Method: K is even in every w_j, so integrate over the positive orthant in x_j = log w_j, where
    the integrand exp((h_j+1) x_j - e^(2 x_j) / (2 s^2) - t e^(sum 2 k_j x_j)) is smooth on O(1)
    scales for every t. The trapezoid rule on such analytic, doubly-decaying integrands converges
    geometrically (error ~ exp(-2 pi d / step), d = pi / (8 max(k_j, 1)) from the strip of
    analyticity), so a step of 0.1 / max(k_j, 1) gives ~1e-10 relative accuracy. The grid runs
    from e^(-40 / (h_j + 1)) below the tempering scale t^(-1 / (2 k_j)) up to e^2.5 prior scales.
    """
    ks, hs = _exponents(k, h, _NONNEGATIVE)
    if len(ks) > 2:
        raise InputError(f"k must have length 1 or 2 for exact_tempered_loss, got length {len(ks)}")
    t = checks.check("t", t, checks.positive())
    s = checks.check("prior_scale", prior_scale, checks.positive())
    active = [(kj, hj) for kj, hj in zip(ks, hs) if kj > 0]
    top = math.log(s) + 2.5
    axes = []
    for j, (kj, hj) in enumerate(active):
        others = sum(2 * ki * top for i, (ki, _) in enumerate(active) if i != j)
        tempering_scale = -(math.log(t) + others) / (2 * kj)
        low = min(tempering_scale, math.log(s)) - 40 / (hj + 1)
        axes.append(np.arange(low, top, 0.1 / max(kj, 1.0)))
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    log_prior = sum((hj + 1) * x - np.exp(2 * x) / (2 * s * s) for x, (_, hj) in zip(grids, active))
    tk = t * np.exp(sum(2 * kj * x for x, (kj, _) in zip(grids, active)))
    log_weight = log_prior - tk
    weight = np.exp(log_weight - log_weight.max())
    return float(np.sum(weight * tk) / np.sum(weight))
