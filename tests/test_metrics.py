"""Tests for fractalbayes.metrics: exact cases where they exist, MC tolerances derived otherwise."""

import math

import numpy as np
import pytest
import scipy.stats

from fractalbayes.stats import metrics


def _normal(seed: int, n: int, d: int, shift=0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# --------------------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------------------


def test_mmd_same_distribution_not_rejected():
    # Under H0 the permutation p-value is ~Uniform(0, 1): any single draw has a 5 % chance of
    # falling below 0.05. Data and permutations are seeded, so this is a deterministic regression
    # check of one such draw (a broken statistic or null, e.g. a biased estimator or labels not
    # permuted, gives p ~ 1/(1 + num_permutations) instead), not a statement about power.
    x, y = _normal(0, 200, 2), _normal(1, 200, 2)
    result = metrics.mmd_rbf(x, y, seed=0)
    assert result.p_value > 0.05


def test_mmd_detects_one_sigma_shift():
    # A mean shift of one standard deviation at n = m = 200 has power ~1; the smallest attainable
    # p-value is 1/201 < 0.01, reached when no relabelling beats the observed statistic.
    x, y = _normal(0, 200, 2), _normal(1, 200, 2, shift=[1.0, 0.0])
    result = metrics.mmd_rbf(x, y, seed=0)
    assert result.p_value < 0.01


def test_mmd_matches_direct_formula_and_median_heuristic():
    x, y = _normal(2, 30, 3), _normal(3, 20, 3, shift=0.5)
    z = np.concatenate([x, y])
    d2 = np.sum((z[:, None] - z[None]) ** 2, axis=-1)
    sigma = np.median(np.sqrt(d2[np.triu_indices(50, k=1)]))
    k = np.exp(-d2 / (2 * sigma**2))
    kxx, kyy, kxy = k[:30, :30], k[30:, 30:], k[:30, 30:]
    expected = (
        (kxx.sum() - np.trace(kxx)) / (30 * 29)
        + (kyy.sum() - np.trace(kyy)) / (20 * 19)
        - 2 * kxy.mean()
    )
    result = metrics.mmd_rbf(x, y, num_permutations=50)
    # float32 kernel sums of ~2500 terms of size <= 1: absolute error well below 1e-5
    assert result.bandwidth == pytest.approx(sigma, rel=1e-5)
    assert result.statistic == pytest.approx(expected, abs=1e-5)
    assert 1 / 51 <= result.p_value <= 1.0


def test_mmd_validation():
    x = _normal(0, 10, 2)
    with pytest.raises(ValueError, match="same variables"):
        metrics.mmd_rbf(x, _normal(1, 10, 3))
    with pytest.raises(ValueError, match="bandwidth"):
        metrics.mmd_rbf(x, x, bandwidth=0.0)


# --------------------------------------------------------------------------------------------------
# Wasserstein
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_wasserstein_1d_shift_is_exact(p):
    # Shifting the same sample by c moves every quantile by c, so W_p = c exactly (float32).
    x = _normal(0, 500, 1)
    assert metrics.sliced_wasserstein(x, x + 0.7, p=p) == pytest.approx(0.7, rel=1e-5)


def test_sliced_wasserstein_unequal_sizes_matches_scipy():
    # In 1-D the sliced distance is the exact W1 between empirical distributions, which
    # scipy.stats.wasserstein_distance computes from the CDFs; n != m exercises the merged grid.
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=137), rng.normal(0.3, 1.5, size=59)
    expected = scipy.stats.wasserstein_distance(x, y)
    assert metrics.sliced_wasserstein(x, y) == pytest.approx(expected, rel=1e-5)
    assert metrics.predictive_wasserstein(x[:, None], y[:, None]) == pytest.approx(
        expected, rel=1e-5
    )


def test_sliced_wasserstein_shift_in_3d():
    # For y = x + delta every projection is shifted by theta . delta, so W1 = |theta . delta|
    # exactly and SW1 = mean_l |theta_l . delta|. For theta uniform on the sphere in 3-D,
    # theta . delta / |delta| is Uniform(-1, 1) (Archimedes): mean 1/2, variance 1/3 - 1/4 = 1/12.
    # With |delta| = 2 and L = 1024 directions the MC sd is 2 * sqrt(1/12) / 32 = 0.018; allow 4 sd.
    x = _normal(5, 300, 3)
    delta = np.array([2.0, 0.0, 0.0])
    sw = metrics.sliced_wasserstein(x, x + delta, num_projections=1024, seed=1)
    assert sw == pytest.approx(1.0, abs=4 * 2 * math.sqrt(1 / 12) / 32)


def test_marginal_wasserstein_shift_is_exact():
    # Same draws shifted per dimension: each marginal W1 is |shift_j|; ArviZ sums them.
    x = _normal(6, 400, 2)
    assert metrics.marginal_wasserstein(x, x + [0.5, -1.0]) == pytest.approx(1.5, rel=1e-12)


def test_marginal_wasserstein_unequal_sizes_runs():
    x, y = _normal(7, 300, 2), _normal(8, 200, 2)
    assert 0.0 <= metrics.marginal_wasserstein(x, y, seed=3) < 0.5


# --------------------------------------------------------------------------------------------------
# KL
# --------------------------------------------------------------------------------------------------


def test_gaussian_kl_closed_form_hand_cases():
    # S1 = [[2, 1], [1, 2]] has det 3 and inverse [[2, -1], [-1, 2]] / 3, so against N(0, I) with
    # mu1 = (1, 1): tr(S1^-1) = 4/3, Mahalanobis term 2/3, KL = (4/3 + 2/3 - 2 + log 3) / 2.
    s1 = [[2.0, 1.0], [1.0, 2.0]]
    kl = metrics.gaussian_kl_closed_form(np.zeros(2), np.eye(2), np.ones(2), s1)
    assert kl == pytest.approx(0.5 * math.log(3), rel=1e-12)
    # Equal means, S0 = [[1, .5], [.5, 1]] (det 3/4), S1 = I: KL = (2 - 2 - log 3/4) / 2.
    s0 = [[1.0, 0.5], [0.5, 1.0]]
    kl = metrics.gaussian_kl_closed_form(np.zeros(2), s0, np.zeros(2), np.eye(2))
    assert kl == pytest.approx(-0.5 * math.log(0.75), rel=1e-12)
    with pytest.raises(ValueError, match="positive definite"):
        metrics.gaussian_kl_closed_form(np.zeros(2), np.eye(2), np.zeros(2), np.zeros((2, 2)))


def test_gaussian_kl_from_samples_within_mc_error():
    # 1-D, x ~ N(0, 1), y ~ N(1, 4): KL = log 2 + (1 + 1) / 8 - 1/2.
    # Delta method for KL(m0, v0, m1, v1) = (v0/v1 + (m1-m0)^2/v1 - 1 + log v1 - log v0) / 2 with
    # Var(mean) = v/n and Var(sample variance) = 2 v^2/n: the partials are -1/4, +1/4, -3/8, 1/16,
    # so Var = (1/16)/n + (1/16)(4/m) + (9/64)(2/n) + (1/256)(32/m) = 0.34375/n + 0.375/m.
    # n = m = 10_000 gives sd 0.0085; the plug-in bias is O(1/n) ~ 1e-4. Allow 4 sd.
    n = m = 10_000
    x = np.random.default_rng(9).normal(0.0, 1.0, size=(n, 1))
    y = np.random.default_rng(10).normal(1.0, 2.0, size=(m, 1))
    expected = math.log(2) + 2 / 8 - 0.5
    sd = math.sqrt(0.34375 / n + 0.375 / m)
    assert metrics.gaussian_kl(x, y) == pytest.approx(expected, abs=4 * sd)


def test_gaussian_kl_identical_and_singular():
    x = _normal(11, 100, 3)
    assert metrics.gaussian_kl(x, x) == pytest.approx(0.0, abs=1e-9)
    # a duplicated coordinate makes both covariances singular; the ridge keeps the value finite
    singular = np.concatenate([x, x[:, :1]], axis=1)
    assert math.isfinite(metrics.gaussian_kl(singular, singular + 0.1))


def test_nn_kl_close_to_truth():
    # KL(N(0,1) || N(1,1)) = 1/2. The 1-NN estimator has no simple variance formula; over 40 seeds
    # at n = 2000 its sd was 0.046 and its mean 0.493, so 0.2 is ~4 sd.
    x, y = _normal(12, 2000, 1), _normal(13, 2000, 1, shift=1.0)
    assert metrics.nn_kl(x, y) == pytest.approx(0.5, abs=0.2)


# --------------------------------------------------------------------------------------------------
# Predictive distributions
# --------------------------------------------------------------------------------------------------


def test_identical_predictives():
    logits = np.random.default_rng(14).normal(size=(5, 40, 3))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert metrics.predictive_agreement(probs, probs) == 1.0
    assert metrics.predictive_tv(probs, probs) == 0.0
    # per-draw input is averaged over draws first
    assert metrics.predictive_tv(probs, probs.mean(0)) == pytest.approx(0.0, abs=1e-15)


def test_predictive_hand_example():
    p = np.array([[0.7, 0.3], [0.4, 0.6]])
    q = np.array([[0.6, 0.4], [0.6, 0.4]])
    assert metrics.predictive_agreement(p, q) == 0.5
    assert metrics.predictive_tv(p, q) == pytest.approx((0.1 + 0.2) / 2)
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.predictive_tv(p, 2 * q)
    with pytest.raises(ValueError, match="same probe points"):
        metrics.predictive_agreement(p, q[:1])


def test_predictive_wasserstein_shift():
    samples = _normal(15, 100, 7)
    assert metrics.predictive_wasserstein(samples, samples) == 0.0
    assert metrics.predictive_wasserstein(samples, samples - 0.3) == pytest.approx(0.3, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# Basin masses
# --------------------------------------------------------------------------------------------------


def test_mass_divergences_identical_is_zero():
    p = np.array([0.2, 0.5, 0.3])
    assert metrics.mass_divergences(p, p) == {"kl": 0.0, "js": 0.0, "wasserstein": 0.0}


def test_mass_divergences_hand_example():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    out = metrics.mass_divergences(p, q)
    # KL = 2 * 0.5 log(0.5 / 0.25) (0 log 0 = 0); r = (3/8, 3/8, 1/4) gives
    # JS = 0.5 log(4/3) + 0.5 * 0.5 log(4/3) = 0.75 log(4/3);
    # CDFs (.5, 1, 1) vs (.25, .5, 1) give W1 = .25 + .5 = .75
    assert out["kl"] == pytest.approx(math.log(2), rel=1e-12)
    assert out["js"] == pytest.approx(0.75 * math.log(4 / 3), rel=1e-12)
    assert out["wasserstein"] == pytest.approx(0.75, rel=1e-12)
    assert metrics.mass_divergences(q, p)["kl"] == math.inf
    assert metrics.mass_divergences(q, p)["js"] == pytest.approx(out["js"], rel=1e-12)


@pytest.mark.parametrize(
    "p, q, match",
    [
        ([0.5, 0.5], [0.2, 0.3, 0.5], "same basins"),
        ([1.2, -0.2], [0.5, 0.5], "negative"),
        ([0.5, 0.6], [0.5, 0.5], r"normalise with p / p.sum\(\)"),
        ([0.5, 0.5], [2.0, 3.0], r"normalise with q / q.sum\(\)"),
    ],
)
def test_mass_divergences_validation(p, q, match):
    with pytest.raises(ValueError, match=match):
        metrics.mass_divergences(p, q)
