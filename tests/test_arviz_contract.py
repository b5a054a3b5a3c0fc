"""Every sampler's DataTree works with ArviZ's own tools, with ArviZ's names and sensible values."""

import warnings

import arviz_plots
import arviz_stats
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import fractalbayes as fb

matplotlib.use("Agg")

FRACTAL = {
    "num_chains": 4, "num_samples": 100, "burn_in": 100, "step_size": 1e-4, "d_s": 1.0, "gamma_eff": 200.0,
    "sgd": {"num_chains": 8, "burn_in": 1000, "num_samples": 5, "thin": 5, "learning_rate": 0.01},
    "llc": {"nbeta": 200.0, "step_size": 1e-4, "localization": 1.0, "num_chains": 2, "num_draws": 500, "burn_in": 100},
    "basins": {"feature": "weights", "k": 2},
}
"""A cheap fractal run on the conjugate target: 8 SGD nets split into 2 weight-space basins."""


@pytest.fixture(scope="module")
def runs(conjugate, nuts_conjugate):
    target, _, _ = conjugate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fractal run's small SGD ensemble warns about its own size
        fractal = fb.sample(target, "fractal", **FRACTAL)
    return {
        "nuts": nuts_conjugate,
        "sgld": fb.sample(target, "sgld", num_chains=4, num_samples=400, burn_in=300, thin=2, step_size=2e-4, seed=21),
        "sghmc": fb.sample(target, "sghmc", num_chains=4, num_samples=400, burn_in=2000, step_size=1e-3,
                           num_integration_steps=5, seed=22),
        "sgd": fb.sample(target, "sgd", num_chains=4, num_samples=200, burn_in=300, learning_rate=0.05, seed=23),
        "fractal": fractal,
    }


@pytest.fixture(scope="module")
def trees(runs):
    return {name: run.to_arviz(posterior_predictive=True) for name, run in runs.items()}


SAMPLERS = ["nuts", "sgld", "sghmc", "sgd", "fractal"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_groups_and_names(trees, runs, name):
    tree = trees[name]
    assert {"posterior", "unconstrained_posterior", "sample_stats", "log_likelihood", "posterior_predictive",
            "observed_data"} <= set(tree.children)
    # one variable per latent site with its unconstrained shape, not one flat z(param)
    assert list(tree["unconstrained_posterior"].data_vars) == ["w"]
    assert tree["unconstrained_posterior"]["w"].shape == (4, runs[name].num_draws, 3)
    assert tree["log_likelihood"]["y"].shape == (4, runs[name].num_draws, 200)
    assert tree["posterior_predictive"]["y"].dims == tree["log_likelihood"]["y"].dims
    stats = set(tree["sample_stats"].data_vars)
    assert {"diverging", "frozen"} <= stats
    if name == "nuts":
        assert {"lp", "energy", "n_steps", "tree_depth", "acceptance_rate"} <= stats
    assert ("lp" in stats) == (name in ("nuts", "sgld", "sghmc"))  # SGD and the mixture target no one density
    # the model's other data argument under its own name (linear_regression(x, y)); y is observed_data
    assert list(tree["constant_data"].data_vars) == ["x"]
    np.testing.assert_array_equal(tree["constant_data"]["x"].values, np.asarray(runs[name].target.data["x"]))


@pytest.mark.parametrize("name", SAMPLERS)
def test_arviz_stats_run_and_make_sense(trees, runs, name):
    tree = trees[name]
    table = arviz_stats.summary(tree, round_to="none")
    assert np.isfinite(table.loc[:, ["mean", "sd"]].to_numpy(float)).all()
    ess = arviz_stats.ess(tree)["w"].values
    assert (ess > 0).all()
    rhat = arviz_stats.rhat(tree)["w"].values
    assert np.isfinite(rhat).all()
    loo = arviz_stats.loo(tree)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 200
    reference = arviz_stats.loo(trees["nuts"])
    # All but SGD sample (an approximation of) the posterior; SGD's iterates sit at its mode, whose
    # lppd differs from the posterior's by about the p_loo of 3 parameters. The elpd's own standard
    # error (~10 here) bounds the difference between any two near-posterior sample sets.
    assert abs(loo.elpd - reference.elpd) < reference.se
    if name == "nuts":
        # the conjugate NUTS run: 4 x 1000 draws, R-hat within 1.01 of 1 (Vehtari et al. 2021)
        assert (np.abs(rhat - 1) < 0.01).all() and (ess > 400).all()
        bfmi = arviz_stats.bfmi(tree)["energy"].values
        # E-BFMI of a Gaussian posterior in 3 dimensions is about 1; < 0.3 signals trouble (ArviZ)
        assert (bfmi > 0.3).all()


@pytest.mark.parametrize("name", SAMPLERS)
def test_arviz_plots_run(trees, name):
    tree = trees[name]
    plots = [arviz_plots.plot_trace_dist(tree), arviz_plots.plot_rank(tree), arviz_plots.plot_ess(tree),
             arviz_plots.plot_ppc_dist(tree, num_samples=20)]
    if name == "nuts":
        plots.append(arviz_plots.plot_energy(tree))
    assert all(p is not None for p in plots)
    matplotlib.pyplot.close("all")


def test_arviz_compare_ranks_the_samplers_by_loo(trees):
    table = arviz_stats.compare({name: trees[name] for name in ("nuts", "sgld", "sgd")})
    assert set(table.index) == {"nuts", "sgld", "sgd"} and np.isfinite(table["elpd"].to_numpy(float)).all()


def test_nuts_lp_is_the_log_density_and_sg_lp_the_tempered_one(runs, trees, conjugate):
    import jax.numpy as jnp

    target, _, _ = conjugate
    for name in ("nuts", "sgld"):
        lp = trees[name]["sample_stats"]["lp"].values
        z = runs[name].positions[1, -1]
        # float32 sums over 200 examples: relative error ~1e-6
        np.testing.assert_allclose(lp[1, -1], float(target.log_density(jnp.asarray(z))), rtol=1e-5)


def test_log_likelihood_is_numpyros(runs, conjugate):
    from numpyro.infer.util import log_likelihood

    target, _, _ = conjugate
    run = runs["sgld"]
    ours = run.to_arviz()["log_likelihood"]["y"].values
    samples = {"w": run.sites["w"][0, :5]}
    data = {k: np.asarray(v) for k, v in target.data.items()}
    theirs = log_likelihood(fb.models.linear_regression, samples, **data, prior_scale=1.0, noise_scale=1.0)["y"]
    np.testing.assert_allclose(ours[0, :5], np.asarray(theirs), rtol=1e-5, atol=1e-5)


def test_log_likelihood_size_limit_and_opt_in(runs, monkeypatch):
    from fractalbayes.engine import run as run_module

    run = runs["sgld"]
    monkeypatch.setattr(run_module, "LOG_LIKELIHOOD_LIMIT", 10)
    assert "log_likelihood" not in run.to_arviz().children
    assert "log_likelihood" in run.to_arviz(log_likelihood=True).children
    monkeypatch.undo()
    assert "log_likelihood" not in run.to_arviz(log_likelihood=False).children
    assert "posterior_predictive" not in run.to_arviz().children


def test_saved_file_keeps_the_model_groups_for_arviz(runs, tmp_path):
    run = runs["sgld"]
    path = run.save(tmp_path / "sgld.nc", posterior_predictive=True)
    loaded = fb.load_run(path)
    assert loaded.target is None and loaded.unconstrained_sites == {"w": (3,)}
    np.testing.assert_array_equal(loaded.positions, run.positions)
    tree = loaded.to_arviz(posterior_predictive=True)
    assert np.isfinite(arviz_stats.loo(tree).elpd)
    np.testing.assert_array_equal(tree["log_likelihood"]["y"].values, run.to_arviz()["log_likelihood"]["y"].values)
    np.testing.assert_array_equal(tree["constant_data"]["x"].values, np.asarray(run.target.data["x"]))
    with pytest.raises(fb.InputError, match="needs the model.*run.target"):
        fb.load_run(run.save(tmp_path / "bare.nc", log_likelihood=False)).to_arviz(log_likelihood=True)


def masked_regression(x, mask, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]), handlers.mask(mask=mask):
        numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)


def test_masked_observations_have_zero_log_likelihood_and_loo_runs_on_the_kept_ones():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5]) + 0.5 * rng.normal(size=40)).astype(np.float32)
    mask = rng.random(40) < 0.7
    target = fb.from_numpyro(masked_regression, x, mask, y)
    run = fb.sample(target, "sgld", num_chains=2, num_samples=300, burn_in=300, step_size=1e-3, seed=5)
    tree = run.to_arviz()
    log_lik = tree["log_likelihood"]["y"].values
    assert (log_lik[..., ~mask] == 0).all() and (log_lik[..., mask] < 0).all()
    loo = arviz_stats.loo(tree.isel(y_dim_0=np.flatnonzero(mask)))
    assert np.isfinite(loo.elpd) and loo.n_data_points == mask.sum()


def test_a_model_the_log_likelihood_fails_on_still_converts(runs, monkeypatch):
    from fractalbayes.engine import arviz_groups

    def broken(run):
        raise ValueError("no predictive for this site")

    monkeypatch.setattr(arviz_groups, "log_likelihood", broken)
    with pytest.warns(UserWarning, match="log_likelihood group is left out.*no predictive.*log_likelihood=True"):
        tree = runs["sgld"].to_arviz()
    assert "log_likelihood" not in tree.children and "posterior" in tree.children
    with pytest.raises(ValueError, match="no predictive"):
        runs["sgld"].to_arviz(log_likelihood=True)
