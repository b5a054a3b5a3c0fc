"""Data checked at the door (issue 12): bad arrays are a ModelError before the model runs or JAX
compiles anything; names come from the model's signature; seeds may be JAX keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpyro import handlers

import fractalbayes as fb

X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
Y = (X @ np.array([1.0, -1.0])).astype(np.float32)

CALLS = {"model": 0, "compile": 0}


def _count_compiles(event: str, duration: float, **kwargs) -> None:
    if event.startswith("/jax/core/compile") or "compile" in event:
        CALLS["compile"] += 1


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


def regression(x, y=None):
    CALLS["model"] += 1
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def masked(x, mask, y):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]), handlers.mask(mask=mask):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=jnp.where(mask, y, 0.0))


def _refused_before_work(args, kwargs, match):
    CALLS.update(model=0, compile=0)
    with pytest.raises(fb.ModelError, match=match):
        fb.from_numpyro(regression, *args, **kwargs)
    assert CALLS == {"model": 0, "compile": 0}


def test_nonfinite_data_named_with_count_and_first_index():
    y = Y.copy()
    y[[3, 7, 9]] = [np.nan, np.inf, np.nan]
    _refused_before_work((X, y), {}, r"argument 'y' has 3 non-finite value\(s\) \(NaN or inf\) of 20, the "
                                     r"first at index \(3,\).*allow_nonfinite=True")
    x = X.copy()
    x[5, 1] = -np.inf
    _refused_before_work((jnp.asarray(x), Y), {}, r"argument 'x' has 1 non-finite.*index \(5, 1\)")


def test_empty_ragged_and_object_data_refused():
    _refused_before_work((X[:0], Y[:0]), {}, r"argument 'x' is empty \(shape \(0, 2\)\)")
    _refused_before_work((np.array([[1.0], [2.0, 3.0]], dtype=object), Y), {}, "dtype object")
    _refused_before_work(([[1.0, 2.0], [3.0]], Y), {}, "ragged nested sequence")
    _refused_before_work((X, Y[:15]), {}, "mismatched leading dimensions: x has 20 rows, y has 15 rows")
    _refused_before_work((X,), {"z": Y}, "cannot be called with these arguments")


def test_nonfinite_observed_site_from_condition():
    def model(x):
        regression(x)

    conditioned = handlers.condition(model, data={"y": np.where(np.arange(20) == 4, np.nan, Y)})
    with pytest.raises(fb.ModelError, match=r"observed site 'y' has 1 non-finite.*\(4,\)"):
        fb.from_numpyro(conditioned, X)


def test_allow_nonfinite_lets_masked_values_through():
    mask = np.arange(20) % 4 != 0
    y = np.where(mask, Y, np.nan).astype(np.float32)
    with pytest.raises(fb.ModelError, match="argument 'y' has 5 non-finite"):
        fb.from_numpyro(masked, X, mask, y)
    target = fb.from_numpyro(masked, X, mask, y, allow_nonfinite=True, batch_size=5)
    z = jnp.array([0.3, -0.2])
    value, grad = jax.jit(jax.value_and_grad(target.log_density))(z)
    expected = jnp.sum(dist.Normal(0, 1).log_prob(z)) + jnp.sum(dist.Normal(X[mask] @ z, 1.0).log_prob(Y[mask]))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert np.all(np.isfinite(grad))


finite_floats = st.floats(-1e3, 1e3, width=32)
bad_floats = st.sampled_from([np.nan, np.inf, -np.inf])


@st.composite
def bad_data(draw):
    """(x, y) where at least one of: a NaN/inf entry, zero rows, ragged rows, mismatched lengths."""
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 3))
    x = draw(hnp.arrays(np.float32, (n, d), elements=finite_floats))
    y = draw(hnp.arrays(np.float32, (n,), elements=finite_floats))
    kind = draw(st.sampled_from(["nonfinite_x", "nonfinite_y", "empty", "ragged", "mismatched"]))
    if kind == "nonfinite_x":
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(bad_floats)
    elif kind == "nonfinite_y":
        y[draw(st.integers(0, n - 1))] = draw(bad_floats)
    elif kind == "empty":
        x, y = x[:0], y[:0]
    elif kind == "ragged":
        x = [list(row) for row in x] + [[0.0] * (d + 1)]
    else:
        y = np.concatenate([y, y[:1]])
    return kind, x, y


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_data())
def test_bad_arrays_never_reach_the_model_or_compilation(case):
    kind, x, y = case
    CALLS.update(model=0, compile=0)
    with pytest.raises(fb.ModelError):
        fb.from_numpyro(regression, x, y)
    assert CALLS == {"model": 0, "compile": 0}, kind


def test_the_counters_see_a_good_call():
    """Control for the property test: a valid call with fresh shapes runs the model and compiles."""
    CALLS.update(model=0, compile=0)
    fb.from_numpyro(regression, X[:7, :1], Y[:7])
    assert CALLS["model"] > 0 and CALLS["compile"] > 0


def test_arguments_keep_the_models_names():
    target = fb.from_numpyro(regression, X, y=Y)
    assert list(target.data) == ["x", "y"]
    z = jnp.array([[0.5, -0.5]])
    mean = fb.predict.predictive_mean(target, z, {"x": X[:3]})
    np.testing.assert_allclose(mean[0], X[:3] @ np.array([0.5, -0.5]), rtol=1e-5)
    np.testing.assert_allclose(fb.predict.predictive_mean(target, z, X[:3]), mean)
    with pytest.raises(fb.ModelError, match=r"inputs \['arg0'\] are not data arguments.*\['x', 'y'\]"):
        fb.predict.predictive_mean(target, z, {"arg0": X[:3]})


def test_seed_accepts_a_jax_key_and_numpyro_spellings_name_ours():
    target = fb.from_numpyro(regression, X, Y)
    key = jax.random.key(3)
    as_int = int(jax.random.bits(key))
    run = fb.sample(target, "sgld", num_chains=2, num_samples=5, burn_in=5, seed=key, step_size=1e-3)
    again = fb.sample(target, "sgld", num_chains=2, num_samples=5, burn_in=5, seed=as_int, step_size=1e-3)
    assert run.config.seed == as_int
    np.testing.assert_array_equal(run.positions, again.positions)
    assert fb.checks.seed("seed", jax.random.PRNGKey(3)) == fb.checks.seed("seed", jax.random.key(3))
    with pytest.raises(fb.ModelError, match=r"seed must be an integer >= 0 or a JAX PRNG key"):
        fb.sample(target, "sgld", seed=-1)
    for numpyro_name, ours in [("num_warmup", "burn_in"), ("thinning", "thin"), ("rng_key", "seed"),
                               ("progress_bar", "progress")]:
        with pytest.raises(fb.ModelError, match=f"{numpyro_name}= -> {ours}="):
            fb.sample(target, "nuts", **{numpyro_name: 1})
