"""NumPyro conformance zoo: the Target is NumPyro's density, whatever the model's constructs.

Thirteen models cover the constructs a NumPyro user writes: per-group latents sized by the data
(eight schools, centred and non-centred), nested plates, GLMs, ``handlers.scale``, ``factor``
inside and outside the data plate, ``handlers.mask``, ``handlers.condition`` with a deterministic
site, a data plate with ``subsample_size``, simplex, correlation-Cholesky and ordered supports, and
the MLP and DLN from ``fb.models``. For each:

- the Target's full-data log density equals ``-potential_energy`` of NumPyro's own
  ``initialize_model`` (joint log density plus the log |det J| of NumPyro's unconstraining maps) at
  50 random unconstrained points, to float32 precision, and splits into ``log_prior + sum log_lik``;
- (slow) ``fb.sample(target, "nuts")`` matches ``numpyro.infer.MCMC(NUTS)`` posterior means and sds
  within Monte Carlo error.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from arviz_stats.base import array_stats
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import OrderedTransform
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import initialize_model

import fractalbayes as fb

RNG = np.random.default_rng(0)

# --- the models -----------------------------------------------------------------------------


def eight_schools_centred(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", sigma.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentred(sigma, y=None):
    """As in posteriordb: theta_trans (size J) outside the plate, theta = mu + tau * theta_trans."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0).expand([sigma.shape[0]]).to_event(1))
    theta = numpyro.deterministic("theta", mu + tau * theta_trans)
    with numpyro.plate("J", sigma.shape[0]):
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def hierarchical_regression(group, x, y=None, *, num_groups: int = 3):
    """Group-specific slopes beta[g, d] in nested plates (groups x features), shared intercept."""
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    spread = numpyro.sample("spread", dist.HalfNormal(1.0))
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    with numpyro.plate("features", x.shape[1], dim=-1), numpyro.plate("groups", num_groups, dim=-2):
        beta = numpyro.sample("beta", dist.Normal(0.0, spread))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(intercept + jnp.sum(x * beta[group], -1), noise), obs=y)


def poisson_glm(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 0.5).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Poisson(jnp.exp(x @ w + b)), obs=y)


def robust_regression_factors(x, y):
    """A Student-t likelihood written as a factor inside the plate, a ridge factor outside it."""
    w = numpyro.sample("w", dist.Normal(0.0, 2.0).expand([x.shape[1]]).to_event(1))
    numpyro.factor("ridge", -0.5 * jnp.sum(w**2))
    with numpyro.plate("data", x.shape[0]):
        numpyro.factor("student", dist.StudentT(4.0, x @ w, 1.0).log_prob(y))


def masked_regression(x, mask, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 0.5))
    with numpyro.plate("data", x.shape[0]), handlers.mask(mask=mask):
        numpyro.sample("y", dist.Normal(x @ w, sigma), obs=y)


def regression_with_sigma(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.deterministic("snr", jnp.linalg.norm(w) / sigma)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, sigma), obs=y)


def subsampled_regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0], subsample_size=10):
        xb = numpyro.subsample(x, event_dim=1)
        yb = numpyro.subsample(y, event_dim=0) if y is not None else None
        numpyro.sample("y", dist.Normal(xb @ w, 1.0), obs=yb)


def dirichlet_categorical(y, *, num_classes: int = 4):
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(num_classes)))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Categorical(probs=p), obs=y)


def lkj_normal(y):
    d = y.shape[1]
    chol = numpyro.sample("chol", dist.LKJCholesky(d, 2.0))
    scale = numpyro.sample("scale", dist.HalfNormal(1.0).expand([d]).to_event(1))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.MultivariateNormal(jnp.zeros(d), scale_tril=scale[:, None] * chol), obs=y)


def ordered_logistic(x, y=None, *, num_classes: int = 4):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    cuts = numpyro.sample(
        "cutpoints", dist.TransformedDistribution(dist.Normal(0.0, 3.0).expand([num_classes - 1]), OrderedTransform())
    )
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.OrderedLogistic(x @ w, cuts), obs=y)


# --- their data -----------------------------------------------------------------------------

SIGMA8 = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32)
Y8 = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32)


def _x(n, d):
    return RNG.normal(size=(n, d)).astype(np.float32)


X40 = _x(40, 2)
Y40 = (X40 @ np.array([1.0, -0.5]) + 0.7 * RNG.normal(size=40)).astype(np.float32)
GROUP = (np.arange(60) % 3).astype(np.int32)
XG = _x(60, 2)
YG = (np.sum(XG * np.array([[1.0, 0.0], [0.5, -1.0], [-0.5, 0.5]])[GROUP], -1) + 0.3 + 0.5 * RNG.normal(size=60)).astype(np.float32)
XP = _x(50, 2)
YP = RNG.poisson(np.exp(XP @ np.array([0.4, -0.3]) + 0.5)).astype(np.int32)
XL = _x(60, 2)
YL = (RNG.random(60) < 1 / (1 + np.exp(-(XL @ np.array([1.5, -1.0]))))).astype(np.int32)
MASK = RNG.random(40) < 0.7
YC = RNG.choice(4, size=50, p=[0.1, 0.2, 0.3, 0.4]).astype(np.int32)
CORR = np.array([[1.0, 0.6, 0.2], [0.6, 1.0, -0.3], [0.2, -0.3, 1.0]])
YM = RNG.multivariate_normal(np.zeros(3), CORR * np.outer([1.0, 0.5, 2.0], [1.0, 0.5, 2.0]), size=80).astype(np.float32)
XO = _x(60, 2)
YO = np.digitize(XO @ np.array([1.0, -1.0]) + RNG.logistic(size=60), [-1.5, 0.0, 1.5]).astype(np.int32)
XMLP = _x(30, 2)
YMLP = (XMLP[:, 0] * XMLP[:, 1] > 0).astype(np.int32)
XDLN = _x(30, 2)
YDLN = (XDLN @ np.array([[0.8, -0.4], [0.4, -0.2]]) + 0.5 * RNG.normal(size=(30, 2))).astype(np.float32)


class Case(NamedTuple):
    model: object
    args: tuple
    kwargs: dict
    minibatch: bool
    """Whether the model can be minibatched (else: minibatch_blockers names the sites)."""
    reference: object = None
    """The model NumPyro's reference samplers run (default: ``model``)."""
    accept: float = 0.8
    """NUTS target acceptance for both samplers (0.95 for the centred funnel, which diverges at 0.8)."""


def _conditioned(x, y=None):
    return handlers.condition(regression_with_sigma, data={"sigma": 0.7})(x, y)


_scaled_logistic = handlers.scale(fb.models.logistic_regression, scale=0.5)
_mlp = functools.partial(fb.models.mlp_classifier, widths=(3,), num_classes=2)
_mlp_weight_norm = functools.partial(fb.models.mlp_classifier, widths=(3,), num_classes=2, normalization="weight")
_dln = functools.partial(fb.models.deep_linear_network, hidden=(1,), noise_scale=0.5)

CASES = {
    "eight_schools_centred": Case(eight_schools_centred, (SIGMA8, Y8), {}, False, accept=0.95),
    "eight_schools_noncentred": Case(eight_schools_noncentred, (SIGMA8, Y8), {}, False),
    "hierarchical_regression": Case(hierarchical_regression, (GROUP, XG, YG), {}, True),
    "poisson_glm": Case(poisson_glm, (XP, YP), {}, True),
    "scaled_logistic": Case(_scaled_logistic, (XL, YL), {}, True),
    "factors": Case(robust_regression_factors, (X40, Y40), {}, True),
    "masked": Case(masked_regression, (X40, MASK, Y40), {}, True),
    "condition_deterministic": Case(_conditioned, (X40, Y40), {}, True),
    "subsample_plate": Case(subsampled_regression, (X40, Y40), {}, True,
                            handlers.substitute(subsampled_regression, data={"data": jnp.arange(40)})),
    "dirichlet": Case(dirichlet_categorical, (YC,), {}, True),
    "lkj_cholesky": Case(lkj_normal, (YM,), {}, True),
    "ordered": Case(ordered_logistic, (XO, YO), {}, True),
    "mlp": Case(_mlp, (XMLP, YMLP), {}, True),
    "mlp_weight_norm": Case(_mlp_weight_norm, (XMLP, YMLP), {}, True),
    "dln": Case(_dln, (XDLN, YDLN), {}, True),
}


@pytest.fixture(scope="module")
def targets():
    return {name: fb.from_numpyro(c.model, *c.args, **c.kwargs) for name, c in CASES.items()}


def _numpyro_potential(case: Case):
    """NumPyro's own unconstrained potential and its flat layout (ravel of initialize_model's z)."""
    model = case.reference or case.model
    info = initialize_model(jax.random.key(1), model, model_args=case.args, model_kwargs=case.kwargs)
    _, unravel = ravel_pytree(info.param_info.z)
    return lambda flat: info.potential_fn(unravel(flat))


@pytest.mark.parametrize("name", list(CASES))
def test_log_density_is_numpyros(name, targets):
    case, target = CASES[name], targets[name]
    potential = _numpyro_potential(case)
    points = jax.random.uniform(jax.random.key(2), (50, target.dim), minval=-2.0, maxval=2.0)
    ours = jax.jit(jax.vmap(target.log_density))(points)
    theirs = -jax.jit(jax.vmap(potential))(points)
    split = jax.jit(jax.vmap(lambda z: target.log_prior(z) + jnp.sum(target.log_lik(z, target.data))))(points)
    # float32: both sum the same terms in a different order; rounding is ~1e-7 relative per term
    # and the terms' magnitudes reach |log density| (<= 1e5 here), so 2e-6 * |value| + 1e-3 bounds it.
    tolerance = 2e-6 * np.abs(np.asarray(theirs)) + 1e-3
    assert np.all(np.isfinite(theirs))
    assert np.all(np.abs(np.asarray(ours) - np.asarray(theirs)) <= tolerance), name
    assert np.all(np.abs(np.asarray(split) - np.asarray(theirs)) <= tolerance), name


@pytest.mark.parametrize("name", list(CASES))
def test_minibatching_is_allowed_or_refused_by_site(name, targets):
    case, target = CASES[name], targets[name]
    assert (not target.minibatch_blockers) == case.minibatch, target.minibatch_blockers
    if case.minibatch:
        assert target.with_batch_size(5).batch_size == 5
    else:
        with pytest.raises(fb.ModelError, match="cannot be minibatched: site"):
            target.with_batch_size(5)


# --- NUTS against NumPyro's NUTS --------------------------------------------------------------

CHAINS, WARMUP, DRAWS = 4, 500, 500
PROBE = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [0.5, -2.0]], np.float32)


def _quantities(name: str, target, sites: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What to compare, each (chain, draw): latent sites' elements, or for the MLP and DLN (whose
    weights are identified only up to permutations and signs) functions of the weights."""
    if name in ("mlp", "mlp_weight_norm"):
        flat = jax.vmap(jax.vmap(target.unconstrain))({k: jnp.asarray(v) for k, v in sites.items()})
        probs = fb.predict.class_probabilities(target, np.asarray(flat), PROBE)[..., 1]
        return {f"p(y=1|probe{i})": probs[..., i] for i in range(len(PROBE))}
    if name == "dln":
        product = np.einsum("cdij,cdjk->cdik", sites["w0"], sites["w1"])
        return {f"(W0 W1)[{i},{j}]": product[..., i, j] for i in range(2) for j in range(2)}
    out = {}
    for site in target.latent_sites:
        value = np.asarray(sites[site]).reshape(*np.shape(sites[site])[:2], -1)
        for i in range(value.shape[-1]):
            if np.std(value[..., i]) > 1e-6:  # constant elements (the LKJ factor's diagonal corner, zeros)
                out[f"{site}[{i}]"] = value[..., i]
    return out


def _numpyro_nuts(case: Case) -> dict[str, np.ndarray]:
    mcmc = MCMC(NUTS(case.reference or case.model, target_accept_prob=case.accept), num_warmup=WARMUP, num_samples=DRAWS, num_chains=CHAINS,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(11), *case.args, **case.kwargs)
    return {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_nuts_matches_numpyro_nuts(name, targets):
    case, target = CASES[name], targets[name]
    run = fb.sample(target, "nuts", num_chains=CHAINS, num_samples=DRAWS, burn_in=WARMUP, seed=5, progress=False,
                    target_acceptance_rate=case.accept)
    ours = _quantities(name, target, run.sites)
    theirs = _quantities(name, target, _numpyro_nuts(case))
    assert set(ours) == set(theirs) and ours
    for q in ours:
        a, b = ours[q], theirs[q]
        # Monte Carlo standard errors from each sampler's own ESS (ArviZ): for a mean sd^2 / ESS; for
        # an sd, by the delta method on the sample variance, sd^2 (kurtosis - 1) / (4 ESS_sd). The two
        # runs are independent, so the difference has the summed variance; 5 standard errors keeps the
        # family-wise false-alarm rate over the ~150 comparisons of this test below 1e-4.
        ess_a, ess_b = (float(array_stats.ess(x, method="mean")) for x in (a, b))
        se_mean = np.sqrt(a.var() / ess_a + b.var() / ess_b)
        assert abs(a.mean() - b.mean()) <= 5 * se_mean, (name, q, a.mean(), b.mean(), se_mean)
        kurt = [np.mean((x - x.mean()) ** 4) / x.var() ** 2 for x in (a, b)]
        ess_sd = [float(array_stats.ess(x, method="sd")) for x in (a, b)]
        se_sd = np.sqrt(sum(x.var() * (k - 1) / (4 * e) for x, k, e in zip((a, b), kurt, ess_sd)))
        assert abs(a.std() - b.std()) <= 5 * se_sd, (name, q, a.std(), b.std(), se_sd)


# --- what cannot be minibatched is named ----------------------------------------------------


def coupled(x, y):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    numpyro.factor("coupling", -0.5 * jnp.sum(x @ w) ** 2)  # one term over all examples
    numpyro.factor("size_penalty", -0.01 * x.shape[0] * jnp.sum(w**2))  # depends on n only
    numpyro.factor("ridge", -0.5 * jnp.sum(w**2))  # data-free: fine on minibatches
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def data_scaled_prior(x, y):
    w = numpyro.sample("w", dist.Normal(0.0, jnp.std(y)).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def test_data_dependent_terms_outside_the_plate_are_named():
    target = fb.from_numpyro(coupled, X40, Y40)
    assert set(target.minibatch_blockers) == {"factor 'coupling'", "factor 'size_penalty'"}
    assert "data's values" in target.minibatch_blockers["factor 'coupling'"]
    assert "number of rows" in target.minibatch_blockers["factor 'size_penalty'"]
    with pytest.raises(fb.ModelError, match=r"batch_size=8 asks for minibatches .* factor 'coupling'"):
        fb.from_numpyro(coupled, X40, Y40, batch_size=8)
    assert set(fb.from_numpyro(data_scaled_prior, X40, Y40).minibatch_blockers) == {"site 'w'"}


def test_noncentred_eight_schools_samples_full_batch_and_refuses_minibatches(targets):
    target = targets["eight_schools_noncentred"]
    run = fb.sample(target, "sgld", num_chains=2, num_samples=20, burn_in=20, step_size=1e-3, progress=False)
    assert run.sites["theta_trans"].shape == (2, 20, 8) and run.sites["theta"].shape == (2, 20, 8)
    with pytest.raises(fb.ModelError, match=r"site 'theta_trans': its shape follows the number of examples"):
        fb.from_numpyro(eight_schools_noncentred, SIGMA8, Y8, batch_size=4)
    assert "latent inside the data plate" in targets["eight_schools_centred"].minibatch_blockers["site 'theta'"]


def test_scale_handler_halves_the_loss():
    plain = fb.from_numpyro(fb.models.logistic_regression, XL, YL)
    scaled = fb.from_numpyro(_scaled_logistic, XL, YL)
    z = jnp.array([0.3, -0.4, 0.1])
    np.testing.assert_allclose(scaled.full_loss(z), 0.5 * plain.full_loss(z), rtol=1e-6)
    np.testing.assert_allclose(scaled.log_prior(z), 0.5 * plain.log_prior(z), rtol=1e-6)


def test_param_sites_are_refused_by_name():
    def with_param(x, y):
        w = numpyro.param("w", jnp.zeros(x.shape[1]))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)

    with pytest.raises(fb.ModelError, match=r"site\(s\) \['w'\] are numpyro.param"):
        fb.from_numpyro(with_param, X40, Y40)


def test_subsample_plate_gives_the_default_batch_and_plain_per_example_terms(targets):
    target = targets["subsample_plate"]
    assert target.batch_size == 10  # the data plate's own subsample_size
    z = jnp.array([0.4, -0.7])
    batch = target.sample_batch(jax.random.key(0))
    expected = dist.Normal(batch["x"] @ z, 1.0).log_prob(batch["y"])  # no N/B factor per example
    np.testing.assert_allclose(target.log_lik(z, batch), expected, rtol=1e-6)
