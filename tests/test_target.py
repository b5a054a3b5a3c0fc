"""Target construction: densities match NumPyro, and every bad input is a ModelError first."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

import fractalbayes as fb

X = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0])).astype(np.float32)


def scale_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([2]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("w_norm", jnp.linalg.norm(w))
    with numpyro.plate("data", x.shape[0]):
        numpyro.deterministic("mean", x @ w)
        numpyro.sample("y", dist.Normal(x @ w, sigma), obs=y)


def test_log_density_matches_numpyro_with_jacobian():
    target = fb.from_numpyro(scale_model, X, Y)
    z = jnp.array([0.3, -0.2, 0.5])  # ravel order: sigma (log scale), w
    sites = target.constrain(z)
    joint, _ = log_density(scale_model, (X, Y), {}, {"w": sites["w"], "sigma": sites["sigma"]})
    log_jacobian = z[0]  # d sigma / d log sigma = sigma
    np.testing.assert_allclose(target.log_density(z), joint + log_jacobian, rtol=1e-5)
    np.testing.assert_allclose(target.full_loss(z), -np.mean(target.log_lik(z, target.data)), rtol=1e-6)
    assert set(sites) == {"w", "sigma", "w_norm"}  # per-example deterministic "mean" left out
    np.testing.assert_allclose(target.unconstrain(sites), z, rtol=1e-6)


def test_minibatch_gradient_is_unbiased_and_scaled():
    target = fb.from_numpyro(scale_model, X, Y, batch_size=8)
    z = jnp.array([0.1, 0.4, -0.3])
    grad = jax.grad(lambda z, b: target.log_posterior_estimate(z, b, target.n_data)[0])
    keys = jax.random.split(jax.random.key(0), 2000)
    grads = jax.jit(jax.vmap(lambda k: grad(z, target.sample_batch(k))))(keys)  # (2000, 3)
    full = jax.grad(target.log_density)(z)
    # Each minibatch gradient is unbiased for the full one; the 2000-batch mean has standard error
    # sd/sqrt(2000), sd measured from the same draws: compare within 4 standard errors.
    assert jnp.all(jnp.abs(grads.mean(0) - full) < 4 * grads.std(0) / np.sqrt(2000))


def test_several_observed_sites_in_one_plate():
    def two_heads(x, y1=None, y2=None):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([2]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y1", dist.Normal(x @ w, 1.0), obs=y1)
            numpyro.sample("y2", dist.Normal(-(x @ w), 2.0), obs=y2)

    target = fb.from_numpyro(two_heads, X, Y, -Y, batch_size=10)
    assert target.observed_sites == ("y1", "y2")
    z = jnp.array([0.5, 0.5])
    expected = dist.Normal(X @ z, 1.0).log_prob(Y) + dist.Normal(-(X @ z), 2.0).log_prob(-Y)
    np.testing.assert_allclose(target.log_lik(z, target.data), expected, rtol=1e-5)


def test_named_plate_among_nested_plates():
    def multi(x, y=None):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([2, 3]).to_event(2))
        with numpyro.plate("outputs", 3, dim=-1), numpyro.plate("rows", x.shape[0], dim=-2):
            numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)

    y = np.zeros((40, 3), np.float32)
    target = fb.from_numpyro(multi, X, y)  # "rows" has the data's length, "outputs" does not
    assert target.data_plate == "rows"
    assert target.log_lik(jnp.zeros(6), target.data).shape == (40,)
    assert fb.from_numpyro(multi, X, y, data_plate="rows").data_plate == "rows"


def discrete_model(x, y=None):
    k = numpyro.sample("k", dist.Bernoulli(0.5))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(k * x[:, 0], 1.0), obs=y)


def no_plate_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1))
    numpyro.sample("y", dist.Normal(w * x[:, 0], 1.0).to_event(1), obs=y)


def ambiguous_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1))
    with numpyro.plate("a", x.shape[0], dim=-1), numpyro.plate("b", x.shape[0], dim=-2):
        numpyro.sample("y", dist.Normal(w * x[:, 0], 1.0), obs=y)


def fixed_plate_model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0, 1))
    with numpyro.plate("data", 40):
        numpyro.sample("y", dist.Normal(w * x[:, 0], 1.0), obs=y)


@pytest.mark.parametrize(
    "model, args, kwargs, message",
    [
        (discrete_model, (X, Y), {}, "latent site 'k' is discrete"),
        (fb.models.linear_regression, (X,), {}, "no observed site"),
        (no_plate_model, (X, Y), {}, "no data plate"),
        (ambiguous_model, (X, Y), {}, "ambiguous data plate"),
        (fixed_plate_model, (X, Y), {"batch_size": 8}, "take its size from the data"),
        (fb.models.linear_regression, (X, Y), {"batch_size": 0}, "batch_size=0 is outside"),
        (fb.models.linear_regression, (X, Y), {"batch_size": 41}, "batch_size=41 is outside"),
        (fb.models.linear_regression, (X, Y), {"batch_size": 2.5}, "batch_size must be an int"),
        (fb.models.linear_regression, (X, Y[:30]), {}, "mismatched leading dimensions"),
        (fb.models.linear_regression, (X, Y), {"data_plate": "rows"}, "data_plate='rows'"),
    ],
)
def test_bad_input_is_a_model_error(model, args, kwargs, message):
    with pytest.raises(fb.ModelError, match=message):
        fb.from_numpyro(model, *args, **kwargs)


def test_constants_bound_with_partial_are_not_data():
    model = functools.partial(fb.models.mlp_classifier, widths=(4,), num_classes=3)
    y = np.arange(40) % 3
    target = fb.from_numpyro(model, X, y, batch_size=5)
    assert set(target.data) == {"x", "y"} and target.dim == 2 * 4 + 4 + 4 * 3 + 3
