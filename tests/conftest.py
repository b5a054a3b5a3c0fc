"""Shared, session-scoped targets and runs: every compiled sampler is built once per test session."""

import numpy as np
import pytest

import fractalbayes as fb

PRIOR_SCALE = 1.0
NOISE_SCALE = 1.0


@pytest.fixture(scope="session")
def conjugate():
    """Bayesian linear regression with known noise: the posterior is Gaussian in closed form.

    Sigma = (X^T X / s_n^2 + I / s_p^2)^{-1},  mu = Sigma X^T y / s_n^2.
    """
    data = fb.data.linear_teacher(200, 3, noise=NOISE_SCALE, test_fraction=0.0, seed=1)
    x, y = data.x_train.astype(np.float64), data.y_train.astype(np.float64)
    precision = x.T @ x / NOISE_SCALE**2 + np.eye(3) / PRIOR_SCALE**2
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y / NOISE_SCALE**2
    target = fb.from_numpyro(
        fb.models.linear_regression, data.x_train, data.y_train, batch_size=100,
        prior_scale=PRIOR_SCALE, noise_scale=NOISE_SCALE,
    )
    return target, mean, cov


@pytest.fixture(scope="session")
def logistic():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    logits = x @ np.array([1.5, -1.0]) + 0.3
    y = (rng.random(300) < 1 / (1 + np.exp(-logits))).astype(np.int32)
    return fb.from_numpyro(fb.models.logistic_regression, x, y, batch_size=50)


@pytest.fixture(scope="session")
def nuts_conjugate(conjugate):
    target, _, _ = conjugate
    return fb.sample(target, "nuts", num_chains=4, num_samples=1000, burn_in=500, seed=0)
