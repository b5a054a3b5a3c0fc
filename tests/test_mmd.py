"""fb.metrics.mmd_test holds its level on autocorrelated chains; the draw-permutation test does not."""

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.slt.walks import ar1_chains as ar1
from fractalbayes.stats import mmd


@pytest.fixture(scope="module")
def null_pairs():
    rng = np.random.default_rng(0)
    return [(ar1(rng, 4, 400, 2, 0.99), ar1(rng, 4, 400, 2, 0.99)) for _ in range(100)]


def test_chain_permutation_holds_its_level_on_ar1_chains(null_pairs):
    p = np.array([fb.metrics.mmd_test(x, y, max_draws_per_chain=50, seed=i).p_value
                  for i, (x, y) in enumerate(null_pairs)])
    # 4 + 4 chains: C(8, 4) = 70 splits in complementary pairs of equal statistic, so p takes values
    # k/70 with k even, and P(p <= 0.05) = P(k = 2) = 1/35 = 0.029 exactly under H0. Over 100
    # independent pairs the rejection count is Binomial(100, 0.029): sd 1.7; 7 rejections is 2.5 sd
    # above the mean. The null p-values average (36/35)/2 = 0.514 with sd 0.29 / sqrt(100) = 0.029.
    assert np.mean(p <= 0.05) <= 0.07
    assert abs(p.mean() - 0.514) < 3 * 0.029


def test_draw_permutation_rejects_same_law_chains(null_pairs):
    # The exchangeability it assumes fails: rho = 0.99 gives ~2 effective draws per chain of 400, so
    # the chains' sample means differ by O(1) and the naive test rejects nearly always (SCIENCE.md §7).
    rejected = [fb.metrics.mmd_rbf(x.reshape(-1, 2)[::8], y.reshape(-1, 2)[::8], seed=i).p_value <= 0.05
                for i, (x, y) in enumerate(null_pairs[:20])]
    assert np.mean(rejected) >= 0.8


def test_power_against_a_one_sd_shift():
    rng = np.random.default_rng(1)
    # rho = 0.9: ESS ~ 400 * 0.1 / 1.9 = 21 per chain, 84 per set; a 1-sd mean shift gives an MMD far
    # above the permutation null (the power measured in docs/calibration.md is 1.00 at this size).
    p = [fb.metrics.mmd_test(ar1(rng, 4, 400, 2, 0.9), ar1(rng, 4, 400, 2, 0.9, shift=1.0),
                             max_draws_per_chain=50, seed=i).p_value for i in range(10)]
    assert np.mean(np.array(p) <= 0.05) >= 0.9


def test_auto_method_and_thinning():
    rng = np.random.default_rng(2)
    x, y = ar1(rng, 1, 2000, 1, 0.95), ar1(rng, 1, 2000, 1, 0.95)
    result = fb.metrics.mmd_test(x, y, seed=0)
    # One chain per set: no chain split can reach 0.05, so auto thins to the autocorrelation time,
    # tau = (1 + rho) / (1 - rho) = 39 for AR(1). ArviZ's split-chain bulk ESS of one chain of
    # ~50 effective draws overestimates tau (between-half variance), which only thins more: the
    # estimate must not fall below tau / 1.5 (anti-conservative) and stays within 4 tau here.
    taus = [mmd.autocorrelation_time(c) for c in (x, y)]
    assert all(39 / 1.5 <= t <= 4 * 39 for t in taus)
    assert result.method == "thin" and result.draws_per_chain == len(range(0, 2000, int(np.ceil(max(taus)))))
    assert fb.metrics.mmd_test(ar1(rng, 5, 100, 1, 0.5), ar1(rng, 5, 100, 1, 0.5)).method == "chains"


@pytest.mark.parametrize("x, y, match", [
    (np.zeros((2, 1, 3)), np.zeros((2, 5, 3)), ">= 2 draws"),
    (np.full((2, 5, 3), np.nan), np.zeros((2, 5, 3)), "NaN"),
    (np.zeros((2, 5, 3)), np.zeros((2, 5, 2)), "same variables"),
])
def test_bad_input(x, y, match):
    with pytest.raises(fb.InputError, match=match):
        fb.metrics.mmd_test(x, y)
    with pytest.raises(fb.InputError, match="method must be one of"):
        fb.metrics.mmd_test(np.zeros((2, 5, 1)), np.ones((2, 5, 1)), method="blocks")
