"""Tests for fractalbayes.slt: exact learning coefficients and exact tempered losses."""

import itertools
import math
import time
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate

from fractalbayes.slt.exact import (
    _aoyagi_subset,
    dln_learning_coefficient,
    exact_tempered_loss,
    monomial_learning_coefficient,
    regular_learning_coefficient,
    rrr_learning_coefficient,
)

# ---------------------------------------------------------------------------------------------
# Learning coefficients
# ---------------------------------------------------------------------------------------------


def test_regular_is_half_the_dimension():
    assert regular_learning_coefficient(7) == Fraction(7, 2)
    assert isinstance(regular_learning_coefficient(4), Fraction)
    assert regular_learning_coefficient(0) == 0


@pytest.mark.parametrize(
    ("k", "h", "expected"),
    [
        ([2], None, (Fraction(1, 4), 1)),  # w^4
        ([1, 2], None, (Fraction(1, 4), 1)),  # w1^2 w2^4: min(1/2, 1/4)
        ([1, 1], None, (Fraction(1, 2), 2)),  # w1^2 w2^2: both coordinates attain 1/2
        ([1], None, (Fraction(1, 2), 1)),  # w^2
        ([1, 2], [0, 1], (Fraction(1, 2), 2)),  # (0+1)/2 = (1+1)/4 = 1/2
        ([0, 3], None, (Fraction(1, 6), 1)),  # k_j = 0 coordinates do not count
        ([Fraction(1, 2)], [Fraction(1, 2)], (Fraction(3, 2), 1)),  # |w| with prior |w|^(1/2)
    ],
)
def test_monomial_examples(k, h, expected):
    assert monomial_learning_coefficient(k, h) == expected


def test_rrr_worked_values():
    # Case 1, M+H+N+r = 5 odd: [2*1*4 - 0 - 1]/8 + 1/8 = 1.
    assert rrr_learning_coefficient(2, 1, 2, 0) == 1
    # Case 1, 14 even: [2*4*10 - 0 - 16]/8 = 8.
    assert rrr_learning_coefficient(5, 4, 5, 0) == 8
    # Case 2, M+H = 7 < N+r = 9: (3*4 - 3*1 + 8*1)/2 = 17/2; case 3 is its mirror image.
    assert rrr_learning_coefficient(4, 3, 8, 1) == Fraction(17, 2)
    assert rrr_learning_coefficient(8, 3, 4, 1) == Fraction(17, 2)
    # Case 4, M+N = 7 < H+r = 8: M N / 2 = 6.
    assert rrr_learning_coefficient(3, 8, 4, 0) == 6


def test_dln_two_layers_equals_rrr():
    for m, h, n in itertools.product(range(1, 7), repeat=3):
        for r in range(min(m, h, n) + 1):
            lam, _ = dln_learning_coefficient([m, h, n], r)
            assert lam == rrr_learning_coefficient(m, h, n, r), (m, h, n, r)


def test_dln_one_layer_is_regular():
    # One layer: S = {1, 2}, l = 1, s = M + N - 2r, a = 1, so lambda = (-r^2 + r(M+N))/2
    # + (M-r)(N-r)/2 = MN/2 for every true rank r: the model W x has MN identifiable parameters.
    for m, n in itertools.product(range(1, 7), repeat=2):
        for r in range(min(m, n) + 1):
            assert dln_learning_coefficient([m, n], r) == (Fraction(m * n, 2), 1)


@pytest.mark.parametrize("n_layers", range(2, 7))
def test_dln_width_one_chain(n_layers):
    # K = (w_1 ... w_L)^2: lambda = 1/2 with multiplicity L.
    assert dln_learning_coefficient([1] * (n_layers + 1), 0) == (Fraction(1, 2), n_layers)


@pytest.mark.parametrize(
    ("widths", "rank", "expected"),
    [
        # M = H - r = [4, 2, 3, 1], sorted 1, 2, 3, 4. l = 1: S = {1, 2}, sum 3 < 1 * 3 fails.
        # l = 2: S = {1, 2, 3}: 3 < 4, 6 >= 2 * 3, 6 < 2 * 4. s = 6, Mbar = 3, a = 6 - 2*2 = 2:
        # (-1 + 1*(5+2))/2 + 2*0/8 - (2*1/4)*3^2 + (1*2 + 1*3 + 2*3)/2 = 3 - 9/2 + 11/2 = 4, mult 1.
        ([5, 3, 4, 2], 1, (Fraction(4), 1)),
        # M = [3, 3, 3, 3]: ties force S = everything, l = 3, s = 12, Mbar = 4, a = 3:
        # 0 + 0 - (3*2/4)*4^2 + (6 pairs * 9)/2 = -24 + 27 = 3, mult 1.
        ([3, 3, 3, 3], 0, (Fraction(3), 1)),
        # M = [1, 5, 2, 2, 6], sorted 1, 2, 2, 5, 6. l = 1 fails on the tie 2 = 2. l = 2:
        # S = {1, 2, 2}: 2 < 5, 5 >= 4, 5 < 10. s = 5, Mbar = 3, a = 5 - 2*2 = 1:
        # (-1 + 1*(2+7))/2 + 1*1/8 - (2*1/4)*(5/2)^2 + (2 + 2 + 4)/2 = 4 + 1/8 - 25/8 + 4 = 5,
        # mult 1*1 + 1 = 2.
        ([2, 6, 3, 3, 7], 1, (Fraction(5), 2)),
        # M = [4, 4, 4, 5, 9]. l = 2: S = {4, 4, 4}, 12 < 2*5 fails. l = 3: S = {4, 4, 4, 5}:
        # 5 < 9, 17 >= 15, 17 < 27. s = 17, Mbar = 6, a = 17 - 5*3 = 2:
        # 0 + 2*1/12 - (3*2/4)*(17/3)^2 + (3*16 + 3*20)/2 = 1/6 - 289/6 + 54 = 6, mult 2*1 + 1 = 3.
        ([4, 4, 4, 5, 9], 0, (Fraction(6), 3)),
    ],
)
def test_dln_worked_values(widths, rank, expected):
    assert dln_learning_coefficient(widths, rank) == expected


def test_aoyagi_subset_matches_brute_force():
    # Every subset S satisfying Aoyagi's three conditions has the same multiset of M_j values,
    # and it is the one the sorted-prefix search returns.
    def valid_subsets(m):
        found = set()
        for size in range(2, len(m) + 1):
            for idx in itertools.combinations(range(len(m)), size):
                s = [m[i] for i in idx]
                rest = [m[i] for i in range(len(m)) if i not in idx]
                l = size - 1
                complement_ok = not rest or (max(s) < min(rest) and sum(s) < l * min(rest))
                if sum(s) >= l * max(s) and complement_ok:
                    found.add(tuple(sorted(s)))
        return found

    for n_layers in range(1, 5):
        for widths in itertools.product(range(1, 5), repeat=n_layers + 1):
            for r in range(min(widths) + 1):
                m = [w - r for w in widths]
                assert valid_subsets(m) == {tuple(_aoyagi_subset(m))}, (widths, r)


# ---------------------------------------------------------------------------------------------
# Exact tempered loss t E_t[K]
# ---------------------------------------------------------------------------------------------

TEMPERATURES = [1.0, 10.0, 100.0, 1e3, 1e4]


@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_tempered_quadratic_closed_form(t, scale):
    # K = w^2, prior N(0, s^2): p_t ∝ exp(-w^2 (1/(2 s^2) + t)) is N(0, 1/(2t + 1/s^2)).
    assert exact_tempered_loss([1], t, scale) == pytest.approx(t / (2 * t + 1 / scale**2), rel=1e-6)
    # With the power prior |w|^h N(0, s^2), w^2 is Gamma((h+1)/2, rate t + 1/(2 s^2)).
    h = 2.5
    expected = (h + 1) * t / (2 * t + 1 / scale**2)
    assert exact_tempered_loss([1], t, scale, h=[h]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("k", "lam"), [([1], 0.5), ([2], 0.25), ([1, 1], 0.5), ([1, 2], 0.25)])
def test_tempered_loss_rises_towards_lambda(k, lam):
    values = [exact_tempered_loss(k, t) for t in TEMPERATURES]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert all(v < lam for v in values)
    assert lam == float(monomial_learning_coefficient(k)[0])
    if k == [2]:  # no log correction: t E_t[w^4] = 1/4 - O(t^(-1/2))
        assert values[-1] > 0.245


def _tempered_w1w2_by_1d_quadrature(t, s):
    """t E_t[w1^2 w2^2] under N(0, s^2 I) with w2 integrated out in closed form.

    int N(w2; 0, s^2) exp(-tau w2^2) dw2 = (1 + 2 tau s^2)^(-1/2) and
    int N(w2; 0, s^2) w2^2 exp(-tau w2^2) dw2 = s^2 (1 + 2 tau s^2)^(-3/2), tau = t w1^2, leaving a
    1-D integral over w1, done by scipy.integrate.quad on pieces graded at the scale t^(-1/2).
    """
    prior = lambda w: math.exp(-w * w / (2 * s * s))  # noqa: E731
    num = lambda w: prior(w) * t * w * w * s * s * (1 + 2 * t * s * s * w * w) ** -1.5  # noqa: E731
    den = lambda w: prior(w) * (1 + 2 * t * s * s * w * w) ** -0.5  # noqa: E731
    c = (t * s * s) ** -0.5
    edges = [0.0] + [c * 10.0**i for i in range(-3, 8) if c * 10.0**i < 40 * s] + [40 * s]

    def integral(f):
        pieces = zip(edges, edges[1:])
        return sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0] for a, b in pieces)

    return integral(num) / integral(den)


@pytest.mark.parametrize("t", [1.0, 100.0, 1e4])
@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_tempered_2d_against_1d_quadrature(t, scale):
    expected = _tempered_w1w2_by_1d_quadrature(t, scale)
    assert exact_tempered_loss([1, 1], t, scale) == pytest.approx(expected, rel=1e-6)


def test_tempered_2d_against_monte_carlo():
    # Independent check at t = 5: draw w ~ N(0, I) from the prior and form the self-normalised
    # ratio R = sum(a_i) / sum(b_i), b_i = exp(-t K_i), a_i = t K_i b_i. By the delta method its
    # standard error is SE = std(a - R b) / (sqrt(n) mean(b)) (about 2.5e-4 for n = 2e6). The
    # tolerance is 5 SE: a correct quadrature fails with probability ~6e-7 under the normal
    # approximation (and never for this fixed seed), while SE << the change of t E_t[K] between
    # neighbouring temperatures (t = 4 gives 0.253 vs 0.263), so the check is discriminating.
    t, n = 5.0, 2_000_000
    w = np.random.default_rng(0).standard_normal((2, n))
    tk = t * (w[0] * w[1]) ** 2
    b = np.exp(-tk)
    a = tk * b
    ratio = a.sum() / b.sum()
    se = np.std(a - ratio * b) / (math.sqrt(n) * b.mean())
    assert se < 1e-3
    assert abs(exact_tempered_loss([1, 1], t) - ratio) < 5 * se


def test_tempered_loss_inputs_and_speed():
    # Zero exponents factor out; coordinate order does not matter; numpy arrays are accepted.
    reference = exact_tempered_loss([1, 2], 30.0)
    assert exact_tempered_loss([1, 0], 30.0) == pytest.approx(exact_tempered_loss([1], 30.0), rel=1e-12)
    assert exact_tempered_loss([2, 1], 30.0) == pytest.approx(reference, rel=1e-10)
    assert exact_tempered_loss(np.array([1.0, 2.0]), 30.0) == pytest.approx(reference, rel=1e-12)
    start = time.perf_counter()
    exact_tempered_loss([2, 2], 1e4)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: regular_learning_coefficient(-1), "d"),
        (lambda: regular_learning_coefficient(2.5), "d"),
        (lambda: monomial_learning_coefficient([]), "k"),
        (lambda: monomial_learning_coefficient([-1, 2]), "k"),
        (lambda: monomial_learning_coefficient([0, 0]), "k"),
        (lambda: monomial_learning_coefficient([0.5]), r"k\[0\]"),
        (lambda: monomial_learning_coefficient([1], [-1]), "h"),
        (lambda: monomial_learning_coefficient([1, 2], [0]), "h"),
        (lambda: rrr_learning_coefficient(0, 1, 1, 0), "M"),
        (lambda: rrr_learning_coefficient(3, 2, 3, 3), "r"),
        (lambda: rrr_learning_coefficient(3, 2, 3, -1), "r"),
        (lambda: dln_learning_coefficient([3], 0), "widths"),
        (lambda: dln_learning_coefficient([3, -2, 4], 0), r"widths\[1\]"),
        (lambda: dln_learning_coefficient([3, 2, 4], 3), "rank"),
        (lambda: dln_learning_coefficient([3, 2, 4], -1), "rank"),
        (lambda: exact_tempered_loss([], 1.0), "k"),
        (lambda: exact_tempered_loss([-1], 1.0), r"k\[0\]"),
        (lambda: exact_tempered_loss([1, 1, 1], 1.0), "length 1 or 2"),
        (lambda: exact_tempered_loss([1], 0.0), "t"),
        (lambda: exact_tempered_loss([1], -3.0), "t"),
        (lambda: exact_tempered_loss([1], math.nan), "t"),
        (lambda: exact_tempered_loss([1], 1.0, prior_scale=0.0), "prior_scale"),
        (lambda: exact_tempered_loss([1], 1.0, h=[-0.5]), r"h\[0\]"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
