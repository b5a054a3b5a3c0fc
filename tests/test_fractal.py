"""The fractal-constrained sampler and the tempering test, end to end."""

import dataclasses
import functools
import math
import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import fractalbayes as fb
from fractalbayes.methods.fractal import mixture_weights, tempered_free_energy, tempering_test
from fractalbayes.slt.tempering import basin_diffusion_coefficient
from planted_runs import corner_run


def double_well(x, y=None):
    """K(w) = (w0 - 1)^2 (w0 + 1)^4 + w1^2: lambda = 1/2 + 1/2 = 1 at (1, 0) (regular) and
    1/4 + 1/2 = 3/4 at (-1, 0) (quartic in w0); a barrier K(0, 0) = 1 separates them."""
    w = numpyro.sample("w", dist.Normal(0, 1).expand([2]).to_event(1))
    f = jnp.stack([(w[0] - 1) * (w[0] + 1) ** 2, w[1]])
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x[:, None] * f, 1.0).to_event(1), obs=y)


@pytest.fixture(scope="module")
def well_target():
    # x_i^2 = 2 and y = 0 make the mean NLL exactly K(w) + const: no minibatch noise in the loss.
    n = 200
    x = np.where(np.arange(n) % 2 == 0, np.sqrt(2), -np.sqrt(2)).astype(np.float32)
    return fb.from_numpyro(double_well, x, np.zeros((n, 2), np.float32), batch_size=50)


FRACTAL = dict(
    num_chains=4, num_samples=200, burn_in=200, thin=5, step_size=1e-6, d_s=1.0, gamma_eff=1000.0, xi=0.5,
    sgd={"num_chains": 40, "burn_in": 4000, "num_samples": 10, "thin": 10, "learning_rate": 0.005,
         "objective": "nll", "init": "uniform"},
    llc={"nbeta": 1000.0, "step_size": 3e-6, "localization": 1.0, "num_chains": 4, "num_draws": 20000, "burn_in": 2000},
    basins={"feature": "weights", "k_range": (2, 2)},
)


@pytest.fixture(scope="module")
def well_run(well_target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GD on a deterministic loss: the late window is flat anyway
        return fb.sample(well_target, "fractal", **FRACTAL)


@pytest.mark.slow
def test_two_basin_toy_learning_coefficients_and_formulas(well_run):
    basins = well_run.groups["basins"]
    regular = int(np.argmax(basins["center"].values[:, 0]))  # the basin at w0 = +1
    lambdas = basins["llc"].values
    # The issue's 20 %: SGLD's Euler bias inflates the stiffest direction's variance by h p / 2
    # (h = 3e-6, p = 32 * 1000: ~5 %), and MC error of a 4 x 20000-draw trace is ~3 %.
    np.testing.assert_allclose(lambdas[regular], 1.0, rtol=0.2)
    np.testing.assert_allclose(lambdas[1 - regular], 0.75, rtol=0.2)
    D = basins["D"].values
    np.testing.assert_allclose(D, 0.5 ** (2 - 2 * lambdas / 1.0), rtol=1e-6)
    np.testing.assert_allclose(D, basin_diffusion_coefficient(lambdas, 0.5, 1.0, "lambda"), rtol=1e-12)
    np.testing.assert_allclose(basins["nbeta"].values, 1000.0 / D, rtol=1e-6)
    # "evidence" (the default): exp(-F_k), F_k = n beta_k L(w_k) + lambda_k log n beta_k; SGD's NLL
    # objective implies no prior (p_k = 0), so no prior term
    np.testing.assert_allclose(basins["prior_power"].values, 0.0)
    free = basins["nbeta"].values * basins["loss"].values + lambdas * np.log(basins["nbeta"].values)
    np.testing.assert_allclose(basins["free_energy"].values, free, rtol=1e-10)
    np.testing.assert_allclose(basins["weight"].values, np.exp(-(free - free.min())) / np.exp(-(free - free.min())).sum(),
                               rtol=1e-8)
    assert well_run.config.method["weights"] == "evidence"
    assert well_run.config.method["gamma_eff"] == {"rule": "given", "value": 1000.0}
    assert well_run.config.method["d_s_source"] == {"given": True}


@pytest.mark.slow
def test_draws_follow_the_mixture_weights(well_run):
    weights = well_run.groups["basins"]["weight"].values
    labels = well_run.stats["basin_start"].ravel()
    frequency = np.bincount(labels, minlength=2) / labels.size
    # basins are drawn i.i.d. per slot: binomial standard error sqrt(w (1 - w) / N); 4 SE
    assert np.all(np.abs(frequency - weights) <= 4 * np.sqrt(weights * (1 - weights) / labels.size))
    # stats["basin"] is the assignment: with feature "weights", the nearest k-means centroid of the
    # SGD endpoints; the localized chains stay in the basin they started in
    assigned = well_run.stats["basin"]
    assert well_run.config.method["labels"].startswith("assignment")
    assert np.mean(assigned == well_run.stats["basin_start"]) > 0.99
    assert "basins" in well_run.to_arviz().children


def test_evidence_weights_follow_the_free_energy():
    nbetas, losses, lambdas = np.array([100.0, 400.0]), np.array([0.2, 0.1]), np.array([1.0, 0.75])
    free = tempered_free_energy(nbetas, losses, lambdas)
    np.testing.assert_allclose(free, [20 + np.log(100), 40 + 0.75 * np.log(400)])
    weights = mixture_weights("evidence", np.array([0.5, 0.5]), free)
    np.testing.assert_allclose(weights, np.exp(-free) / np.exp(-free).sum())
    np.testing.assert_allclose(mixture_weights("reachability", np.array([0.3, 0.1]), free), [0.75, 0.25])
    with pytest.raises(fb.ModelError, match="weights must be one of"):
        mixture_weights("posterior", np.array([0.5, 0.5]), free)


# --------------------------------------------------------------------------------------------------
# The tempering test's permutation rank on planted basin masses
# --------------------------------------------------------------------------------------------------

PLANTED_LAMBDAS = np.array([2.5, 1.5, 1.0, 0.5])
"""lambda_k of basins 0..3 (basins are numbered by decreasing SGD mass)."""
PLANTED_D_S = 2.0
POSTERIOR_COUNTS = np.array([1000, 1100, 900, 1000])


def planted_sgd_counts(num_nets: int = 400) -> np.ndarray:
    """SGD counts that obey the paper's prediction exactly (up to rounding) for PLANTED_LAMBDAS:
    q_k ∝ p_b,k^{1/e_k}, e_k = D_k(xi = 0.5) = 0.5^{2 - 2 lambda_k / d_s} (scale 1), with p_b the
    Jeffreys-smoothed posterior masses, as tempering_test computes them."""
    exponents = basin_diffusion_coefficient(PLANTED_LAMBDAS, 0.5, PLANTED_D_S)
    p_b = (POSTERIOR_COUNTS + 0.5) / (POSTERIOR_COUNTS.sum() + 2)
    q = p_b ** (1 / exponents)
    return np.round(q / q.sum() * (num_nets + 2) - 0.5).astype(int)


@pytest.fixture(scope="module")
def planted_runs(well_target):
    counts = planted_sgd_counts()
    assert counts.tolist() == [248, 106, 33, 13]  # decreasing, so basin k is corner k
    rng = np.random.default_rng(0)
    sgd = corner_run(well_target, "sgd", rng.permutation(np.repeat(np.arange(4), counts))[:, None], 1)
    posterior = corner_run(well_target, "sgld", rng.permutation(np.repeat(np.arange(4), POSTERIOR_COUNTS)).reshape(4, 1000), 2)
    return sgd, posterior


def planted_test(planted_runs, lambdas):
    sgd, posterior = planted_runs
    # every one of the 4! assignments is tried (max_permutations >= 24), so the planted one is
    # among the "shuffles" whenever it is not the given one
    return tempering_test(sgd, posterior, feature="weights", k_range=(4, 4), lambdas=lambdas, d_s=PLANTED_D_S,
                          num_splits=2, max_permutations=24)


@pytest.fixture(scope="module")
def planted_true(planted_runs):
    return planted_test(planted_runs, PLANTED_LAMBDAS)


@pytest.fixture(scope="module")
def planted_swapped(planted_runs):
    """The control: the same masses with basins 1 and 2's lambda_k swapped."""
    return planted_test(planted_runs, PLANTED_LAMBDAS[[0, 2, 1, 3]])


def test_the_true_lambdas_rank_first_when_the_masses_obey_the_prediction(planted_true):
    result = planted_true
    np.testing.assert_allclose(result.p_sgd, (planted_sgd_counts() + 0.5) / 402)
    assert result.num_permutations == math.factorial(4)
    assert result.permutation_rank == 1 and result.p_value == pytest.approx(1 / 24)
    assert result.verdict.startswith("LLC form beats a global exponent: yes")
    # the planted exponents come back up to the rounding of the counts (1/(2 * 13) relative at worst)
    assert result.fit.objective < 1e-6 and abs(result.fit.xi - 0.5) < 0.05 and abs(result.fit.scale - 1) < 0.1
    kl = result.table["kl_in_sample"]
    assert kl["llc"] < 1e-6 < kl["global"] < kl["untempered"] and kl["llc_shuffled"] > 1e-3


def test_a_wrong_assignment_of_lambdas_does_not_rank_first(planted_true, planted_swapped):
    """The planted assignment is now one of the "shuffles" and fits exactly: the given one cannot
    rank first, cannot reach p <= 0.05, and fits orders of magnitude worse than the true one."""
    result = planted_swapped
    assert result.permutation_rank > 1 and result.p_value > 0.05
    assert not result.verdict.startswith("LLC form beats a global exponent: yes")
    assert result.fit.objective > 1e-3 > 1e3 * planted_true.fit.objective
    assert result.table.loc["llc", "kl_in_sample"] > 100 * planted_true.table.loc["llc", "kl_in_sample"]


@pytest.fixture(scope="module")
def moons():
    data = fb.data.moons(200, noise=0.2, seed=0)
    model = functools.partial(fb.models.mlp_classifier, widths=(4,), num_classes=2)
    target = fb.from_numpyro(model, data.x_train, data.y_train, batch_size=32)
    sgd = fb.sample(target, "sgd", num_chains=100, num_samples=20, burn_in=1500, thin=25, learning_rate=0.05,
                    objective="map", checkpoint_start=1500, num_checkpoints=40, seed=1)
    posterior = fb.sample(target, "sgld", num_chains=4, num_samples=100, burn_in=1000, thin=10, step_size=1e-3, seed=2)
    return target, sgd, posterior


@pytest.mark.slow
def test_moons_tempering_test_runs_and_every_number_is_finite(moons):
    target, sgd, posterior = moons
    result = tempering_test(sgd, posterior, k_range=(2, 3), num_splits=6, llc_options={"num_draws": 200})
    table = result.table
    assert list(table.index) == ["untempered", "global", "llc", "free_energy", "llc_shuffled"]
    scores = table.drop(columns="degenerate")
    healthy = table["degenerate"] == ""  # a model predicting mass 0 for a basin is scored NaN and named
    assert np.isfinite(scores[healthy].to_numpy()).all() and healthy[["untempered", "global"]].all()
    assert np.isfinite(result.per_k.to_numpy(float)[:, :4]).all() and set(result.per_k.index) == {2, 3}
    assert result.num_permutations == math.factorial(result.basins.k)  # every assignment, the true one included
    # with K <= 3 basins the smallest possible p-value is 1/K! >= 1/6: never a "yes" or a "no"
    assert result.p_value >= 1 / result.num_permutations and "undetermined" in result.verdict
    assert np.isfinite(result.lambdas).all() and np.all(result.lambdas > 0) and result.d_s > 0
    np.testing.assert_allclose([result.p_sgd.sum(), result.p_b.sum()], 1.0)
    switches = result.mixing["basin_switches_per_chain"]
    assert len(switches) == 4 and result.mixing["mean_switches"] == pytest.approx(np.mean(switches))
    # the global model contains the untempered one (c = 1): never a worse fit in-sample
    assert result.fit.objective_global <= result.fit.objective_untempered + 1e-12
    assert scores.loc["global", "kl_in_sample"] <= scores.loc["untempered", "kl_in_sample"] + 1e-12
    result.figure()


@pytest.mark.slow
def test_moons_fractal_sampler_reports_its_steady_state(moons, tmp_path):
    target, _, _ = moons
    run = fb.sample(target, "fractal", num_chains=2, num_samples=50, burn_in=100, thin=2, step_size=1e-4,
                    sgd={"num_chains": 60, "burn_in": 1500, "num_samples": 20, "thin": 25},
                    llc={"num_draws": 200}, basins={"k_range": (2, 3)})
    state, k = run.config.method["steady_state"], run.config.method["k"]
    z_scores = [state[f"{name}_z"] for name in ("loss", "weight_norm", "llc")]
    assert np.all(np.isfinite(z_scores)) and state["stationary"] == all(abs(z) <= 3.0 for z in z_scores)
    assert run.config.method["d_s"] > 0 and np.isfinite(run.positions).all() and k in (2, 3)
    basins = run.groups["basins"]
    np.testing.assert_allclose([basins["weight"].sum(), basins["mass_sgd"].sum()], 1.0)
    assert set(np.unique(run.stats["basin"])) <= set(range(k))
    loaded = fb.load_run(run.save(tmp_path / "fractal.nc"))
    for name in ("D", "nbeta", "weight", "center"):
        np.testing.assert_array_equal(loaded.groups["basins"][name].values, basins[name].values)
    assert loaded.config.method == run.config.method


def test_bad_input(planted_runs, well_target):
    sgd, posterior = planted_runs
    elsewhere = dataclasses.replace(posterior.config, target=dataclasses.replace(posterior.config.target,
                                                                                 fingerprint="another"))
    with pytest.raises(fb.ModelError, match="samples another target"):
        tempering_test(sgd, fb.Run(**{**posterior.__dict__, "config": elsewhere}))
    with pytest.raises(fb.ModelError, match="d_s must be finite and > 0"):
        tempering_test(sgd, posterior, d_s=-1.0, lambdas=PLANTED_LAMBDAS, feature="weights", k=4)
    with pytest.raises(fb.ModelError, match="masses must be 'count' or 'free_energy'"):
        tempering_test(sgd, posterior, masses="counts")
    with pytest.raises(fb.ModelError, match="needs the target"):
        tempering_test(fb.Run(**{**sgd.__dict__, "target": None}), fb.Run(**{**posterior.__dict__, "target": None}))
    identical = sgd.positions.copy()
    identical[:] = identical[0, -1]
    with pytest.raises(fb.ModelError, match="fewer than two basins"):
        tempering_test(fb.Run(**{**sgd.__dict__, "positions": identical}), posterior, feature="weights")
    with pytest.raises(ValueError, match="sums to 1.1, not 1"):
        fb.tempering.fit_tempering([0.5, 0.6], [0.5, 0.5], [1.0, 2.0], d_s=1.0, m=100)
    with pytest.raises(fb.ModelError, match="d_s must be finite and > 0"):
        fb.sample(well_target, "fractal", d_s=float("nan"))
