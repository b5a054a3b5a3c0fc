"""fb.models.mlp_classifier(normalization="weight"): the scale-invariant net of the MLP suite's
variants (Salimans & Kingma 2016 weight normalisation, w_j = g_j v_j / ||v_j||)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.model import data

MODEL = functools.partial(fb.models.mlp_classifier, widths=(6, 5), num_classes=3, normalization="weight")


@pytest.fixture(scope="module")
def small():
    x = np.asarray(jax.random.normal(jax.random.key(0), (40, 4)), np.float32)
    y = (np.arange(40) % 3).astype(np.int32)
    return fb.from_numpyro(MODEL, x, y)


def test_sites_are_directions_gains_and_a_plain_output_layer(small):
    assert set(small.latent_sites) == {"v0", "g0", "b0", "v1", "g1", "b1", "w2", "b2"}
    assert small.dim == 4 * 6 + 6 + 6 + 6 * 5 + 5 + 5 + 5 * 3 + 3


def test_likelihood_is_invariant_to_the_scale_of_each_direction(small):
    z = jax.random.normal(jax.random.key(1), (small.dim,))
    sites = small.constrain(z)
    factors = jax.random.uniform(jax.random.key(2), (2, 6), minval=0.01, maxval=100.0)
    scaled = dict(sites, v0=sites["v0"] * factors[0], v1=sites["v1"] * factors[1, :5])
    z_scaled = small.unconstrain(scaled)
    before = np.asarray(small.log_lik(z, small.data))
    after = np.asarray(small.log_lik(z_scaled, small.data))
    # float32: v / ||v|| is the same unit vector up to a few ulps (~1e-7 relative) for any scale in
    # [0.01, 100]; pushed through two layers and a log-softmax of O(1-10) logits, 1e-5 absolute
    # per example bounds the rounding. The prior is not invariant, and must change.
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    assert abs(float(small.log_prior(z_scaled) - small.log_prior(z))) > 1.0


def test_sgd_on_the_likelihood_only_grows_the_directions(small):
    """The likelihood's gradient is orthogonal to each v_j, so a plain SGD step v <- v - eta grad
    gives ||v'||^2 = ||v||^2 + eta^2 ||grad||^2: never smaller (Salimans & Kingma, section 2.1)."""
    run = fb.sample(small, "sgd", num_chains=2, num_samples=50, burn_in=0, learning_rate=0.5, seed=3,
                    progress=False)
    for site in ("v0", "v1"):
        norms = np.linalg.norm(np.asarray(run.sites[site]), axis=-2)  # (chain, draw, unit)
        growth = np.diff(norms, axis=1)
        # float32 norms of O(1-10): rounding ~1e-6 relative, so a "decrease" beyond 1e-5 is real
        assert np.all(growth >= -1e-5 * norms[:, 1:]), site
        # a dead ReLU unit gets no gradient and keeps its norm; the layer as a whole grows
        assert np.all(norms[:, -1].sum(-1) > norms[:, 0].sum(-1)), site


def test_trains_on_digits_with_sgd_and_adam_on_the_map_objective():
    digits = data.digits(n=600, seed=0)
    model = functools.partial(fb.models.mlp_classifier, widths=(16,), num_classes=10, normalization="weight")
    target = fb.from_numpyro(model, digits.x_train, digits.y_train, batch_size=32)
    for optimizer, rate in (("sgd", 0.1), ("adam", 3e-3)):
        run = fb.sample(target, "sgd", num_chains=2, num_samples=1, burn_in=1500, seed=0, progress=False,
                        optimizer=optimizer, learning_rate=rate, objective="map")
        probs = fb.predict.class_probabilities(target, run.positions[:, -1], digits.x_test)
        accuracy = (probs.argmax(-1) == digits.y_test).mean(axis=-1)
        # 150 test images, chance 0.1; with seed 0 these nets reach 0.87 (SGD) and 0.91-0.93 (Adam).
        # 0.75 sits > 4 binomial sds (sqrt(.87 * .13 / 150) = 0.027) below the lower, and far above
        # what an untrained net gets.
        assert np.all(accuracy > 0.75), (optimizer, accuracy)
        assert np.all(np.isfinite(np.asarray(run.positions)))


def test_unknown_normalization_is_refused_by_name():
    x, y = np.zeros((5, 2), np.float32), np.zeros(5, np.int32)
    with pytest.raises(fb.ModelError, match="normalization must be one of 'none', 'weight'; got 'batch'"):
        fb.from_numpyro(functools.partial(fb.models.mlp_classifier, normalization="batch"), x, y)


def test_default_is_the_plain_net():
    x, y = np.zeros((5, 2), np.float32), np.zeros(5, np.int32)
    target = fb.from_numpyro(fb.models.mlp_classifier, x, y)
    assert set(target.latent_sites) == {"w0", "b0", "w1", "b1"}
    assert jnp.isfinite(target.log_density(jnp.zeros(target.dim)))
