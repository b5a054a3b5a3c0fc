"""The driver's outputs: statistics only when asked for, sites without a constraining pass when
constraining is only reshaping, lazily otherwise, and the same draws either way."""

import pickle

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.engine.sample import LazySites, _constrain_fn


@pytest.fixture(scope="module")
def positive_scale():
    """A model with a constrained site (a HalfNormal noise scale): its sites need the transform."""
    import numpyro
    import numpyro.distributions as dist

    def model(x, y=None):
        w = numpyro.sample("w", dist.Normal(0, 1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(w * x, sigma), obs=y)

    rng = np.random.default_rng(0)
    x = rng.normal(size=50).astype(np.float32)
    return fb.from_numpyro(model, x, (0.5 * x + rng.normal(size=50)).astype(np.float32), batch_size=10)


def test_grad_norm_only_when_asked(logistic):
    kw = dict(num_chains=2, num_samples=20, burn_in=10, step_size=1e-3, seed=4)
    default = fb.sample(logistic, "sgld", **kw)
    every = fb.sample(logistic, "sgld", stats="all", **kw)
    named = fb.sample(logistic, "sgld", stats=("loss",), **kw)
    assert set(default.stats) == {"loss", "step_size", "diverging", "frozen"}
    assert set(every.stats) == set(default.stats) | {"grad_norm"}
    assert set(named.stats) == {"loss", "diverging", "frozen"}
    # the statistics kept do not change the draws
    np.testing.assert_array_equal(default.positions, every.positions)
    np.testing.assert_array_equal(default.positions, named.positions)
    np.testing.assert_array_equal(default.stats["loss"], every.stats["loss"])
    assert np.all(every.stats["grad_norm"] > 0)
    with pytest.raises(fb.InputError, match="stats"):
        fb.sample(logistic, "sgld", stats=("gradnorm",), **kw)


def test_reshaped_sites_are_views_of_the_draws(logistic):
    run = fb.sample(logistic, "sgld", num_chains=2, num_samples=20, burn_in=10, step_size=1e-3, seed=4)
    assert type(run.sites) is dict
    for value in run.sites.values():
        assert np.shares_memory(value, run.positions)
    reference = _constrain_fn(logistic)(run.positions.reshape(-1, logistic.dim))
    for name, value in reference.items():
        np.testing.assert_array_equal(run.sites[name], np.asarray(value).reshape(run.sites[name].shape))


def test_constrained_sites_are_computed_when_read(positive_scale, tmp_path):
    run = fb.sample(positive_scale, "sgld", num_chains=2, num_samples=30, burn_in=10, step_size=1e-3, seed=2)
    assert isinstance(run.sites, LazySites) and "not computed" in repr(run.sites)
    sigma = run.sites["sigma"]
    assert sigma.shape == (2, 30) and np.all(sigma > 0) and "computed" in repr(run.sites)
    # the unconstrained coordinate of sigma is its log: exp(z) is the site
    layout = run.site_layout()
    index = list(layout).index("sigma")
    np.testing.assert_allclose(sigma, np.exp(run.positions[..., index]), rtol=1e-6)
    copied = pickle.loads(pickle.dumps(run.sites))
    assert type(copied) is dict and set(copied) == set(run.sites)
    np.testing.assert_array_equal(copied["sigma"], sigma)
    loaded = fb.load_run(run.save(tmp_path / "run.nc"))
    np.testing.assert_array_equal(loaded.sites["sigma"], sigma)
    np.testing.assert_array_equal(loaded.positions, run.positions)


def test_checkpoints_written_by_the_loop_equal_the_trajectory(conjugate):
    """Checkpoints that are not draws (step 0, burn-in, between thinned draws) are written inside the
    loop, the others are read from the draws: both must be the trajectory's positions. The step keys
    do not depend on thinning, so a thin-1 run with the same seed visits the same positions at every
    step and serves as the reference for a thin-3 run's checkpoints."""
    target, _, _ = conjugate
    common = dict(num_chains=2, burn_in=10, step_size=1e-4, num_checkpoints=25, seed=4, progress=False)
    thinned = fb.sample(target, "sgld", num_samples=20, thin=3, record_window=(30, 7), **common)
    every = fb.sample(target, "sgld", num_samples=60, thin=1, **common)
    steps = thinned.checkpoint_steps
    assert np.any((steps > 10) & ((steps - 10) % 3 != 0))  # some checkpoints come from the loop
    later = steps > 10
    np.testing.assert_array_equal(thinned.checkpoints[:, later], every.positions[:, steps[later] - 11])
    np.testing.assert_array_equal(thinned.checkpoints[:, 0], every.checkpoints[:, 0])
    burn = (steps > 0) & (steps <= 10)
    np.testing.assert_array_equal(thinned.checkpoints[:, burn],
                                  every.checkpoints[:, np.searchsorted(every.checkpoint_steps, steps[burn])])


def test_shared_batches_give_every_chain_the_same_minibatch(logistic):
    """SGD is deterministic given its minibatches: from one start, chains that share every batch stay
    identical, chains with their own batches part; SGLD's noise stays per chain either way."""
    start = np.zeros((3, logistic.dim), np.float32)
    common = dict(num_chains=3, num_samples=20, burn_in=5, init=start, seed=2, progress=False)
    shared = fb.sample(logistic, "sgd", learning_rate=0.1, shared_batches=True, **common)
    own = fb.sample(logistic, "sgd", learning_rate=0.1, **common)
    np.testing.assert_array_equal(shared.positions[0], shared.positions[1])
    np.testing.assert_array_equal(shared.positions[0], shared.positions[2])
    assert not np.array_equal(own.positions[0], own.positions[1])
    assert shared.config.shared_batches and not own.config.shared_batches
    noisy = fb.sample(logistic, "sgld", step_size=1e-3, shared_batches=True, **common)
    assert not np.array_equal(noisy.positions[0], noisy.positions[1])


def test_prng_impl_changes_the_loop_keys_only(logistic):
    common = dict(num_chains=2, num_samples=10, burn_in=3, step_size=1e-3, seed=5, progress=False)
    rbg, again = (fb.sample(logistic, "sgld", prng_impl="rbg", **common) for _ in range(2))
    threefry = fb.sample(logistic, "sgld", **common)
    np.testing.assert_array_equal(rbg.positions, again.positions)  # deterministic per seed
    assert not np.array_equal(rbg.positions, threefry.positions)
    np.testing.assert_array_equal(rbg.checkpoints[:, 0], threefry.checkpoints[:, 0])  # same start
    assert rbg.config.prng_impl == "rbg" and threefry.config.prng_impl == "threefry2x32"
    estimate = fb.llc.estimate(logistic, threefry.positions[0, -1], num_chains=2, num_draws=50, burn_in=10,
                               shared_batches=True, prng_impl="rbg", seed=0)
    assert np.isfinite(estimate.mean) and estimate.run.config.shared_batches and estimate.run.config.prng_impl == "rbg"


def test_bad_loop_settings_fail_before_work(logistic):
    with pytest.raises(fb.ModelError, match="prng_impl.*'threefry2x32', 'rbg', 'unsafe_rbg'"):
        fb.sample(logistic, "sgld", prng_impl="philox")
    with pytest.raises(fb.ModelError, match="shared_batches.*True or False"):
        fb.sample(logistic, "sgld", shared_batches="yes")
    with pytest.raises(fb.ModelError, match="does not take \\['shared_batches'\\]"):
        fb.sample(logistic, "fractal", shared_batches=True)
    with pytest.raises(fb.ModelError, match="prng_impl"):
        fb.llc.estimate(logistic, np.zeros(logistic.dim), prng_impl="mt19937")


def test_checkpoints_are_assembled_when_first_read(logistic, tmp_path):
    """Most checkpoints are draws: the run keeps a gather and builds the (chain, K, param) array on
    the first read; `Run(**run.__dict__)` and saving work before and after."""
    run = fb.sample(logistic, "sgld", num_chains=2, num_samples=40, burn_in=5, thin=2, step_size=1e-3, seed=1,
                    progress=False)
    assert callable(run.__dict__["checkpoints"])
    rebuilt = fb.Run(**run.__dict__)
    first = run.checkpoints
    assert isinstance(run.__dict__["checkpoints"], np.ndarray) and run.checkpoints is first
    np.testing.assert_array_equal(rebuilt.checkpoints, first)
    run.save(tmp_path / "run.nc")
    np.testing.assert_array_equal(fb.load_run(tmp_path / "run.nc").checkpoints, first)
