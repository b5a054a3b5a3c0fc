"""The fractal-constrained sampler and the tempering test, end to end."""

import functools
import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import fractalbayes as fb
from fractalbayes.methods.fractal import mixture_weights, tempered_free_energy, tempering_test
from fractalbayes.slt.tempering import basin_diffusion_coefficient


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


def test_two_basin_toy_learning_coefficients_and_formulas(well_run):
    basins = well_run.groups["basins"]
    regular = int(np.argmax(basins["center"].values[:, 0]))  # the basin at w0 = +1
    lambdas = basins["llc"].values
    # The 20 %: SGLD's Euler bias inflates the stiffest direction's variance by h p / 2
    # (h = 3e-6, p = 32 * 1000: ~5 %), and MC error of a 4 x 20000-draw trace is ~3 %.
    np.testing.assert_allclose(lambdas[regular], 1.0, rtol=0.2)
    np.testing.assert_allclose(lambdas[1 - regular], 0.75, rtol=0.2)
    D = basins["D"].values
    np.testing.assert_allclose(D, 0.5 ** (2 - 2 * lambdas / 1.0), rtol=1e-6)
    np.testing.assert_allclose(D, basin_diffusion_coefficient(lambdas, 0.5, 1.0, "lambda"), rtol=1e-12)
    np.testing.assert_allclose(basins["nbeta"].values, 1000.0 / D, rtol=1e-6)
    np.testing.assert_allclose(basins["weight"].values, basins["mass_sgd"].values)  # "reachability"
    assert well_run.config.method["d_s_source"] == {"given": True}


def test_draws_follow_the_mixture_weights(well_run):
    weights = well_run.groups["basins"]["weight"].values
    labels = well_run.stats["basin"].ravel()
    frequency = np.bincount(labels, minlength=2) / labels.size
    # basins are drawn i.i.d. per slot: binomial standard error sqrt(w (1 - w) / N); 4 SE
    assert np.all(np.abs(frequency - weights) < 4 * np.sqrt(weights * (1 - weights) / labels.size))
    centres = well_run.groups["basins"]["center"].values
    near = np.linalg.norm(well_run.positions[..., None, :] - centres, axis=-1).argmin(-1)
    assert np.mean(near == well_run.stats["basin"]) > 0.99  # each draw sits in the basin it is labelled with
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


@pytest.fixture(scope="module")
def moons():
    data = fb.data.moons(200, noise=0.2, seed=0)
    model = functools.partial(fb.models.mlp_classifier, widths=(4,), num_classes=2)
    target = fb.from_numpyro(model, data.x_train, data.y_train, batch_size=32)
    sgd = fb.sample(target, "sgd", num_chains=100, num_samples=20, burn_in=1500, thin=25, learning_rate=0.05,
                    objective="map", checkpoint_start=1500, num_checkpoints=40, seed=1)
    posterior = fb.sample(target, "sgld", num_chains=4, num_samples=100, burn_in=1000, thin=10, step_size=1e-3, seed=2)
    return target, sgd, posterior


def test_moons_tempering_test_runs_and_every_number_is_finite(moons):
    target, sgd, posterior = moons
    result = tempering_test(sgd, posterior, k_range=(2, 3), num_splits=6, llc_options={"num_draws": 200})
    assert list(result.table.index) == ["untempered", "global", "llc", "llc_shuffled"]
    assert np.isfinite(result.table.to_numpy()).all()
    assert np.isfinite(result.per_k.to_numpy()).all() and set(result.per_k.index) == {2, 3}
    assert 1 <= result.permutation_rank <= result.num_permutations
    assert np.isfinite(result.lambdas).all() and result.d_s > 0
    assert result.mixing["mean_switches"] >= 0 and len(result.mixing["basin_switches_per_chain"]) == 4
    # the global model contains the untempered one (c = 1): never a worse fit in-sample
    assert result.fit.objective_global <= result.fit.objective_untempered + 1e-12
    result.figure()


def test_moons_fractal_sampler_reports_its_steady_state(moons):
    target, _, _ = moons
    run = fb.sample(target, "fractal", num_chains=2, num_samples=50, burn_in=100, thin=2, step_size=1e-4,
                    sgd={"num_chains": 60, "burn_in": 1500, "num_samples": 20, "thin": 25},
                    llc={"num_draws": 200}, basins={"k_range": (2, 3)})
    state = run.config.method["steady_state"]
    assert {"stationary", "loss_z", "weight_norm_z", "llc_z"} <= set(state)
    assert run.config.method["d_s"] > 0 and np.isfinite(run.positions).all()
    tree = run.to_arviz()
    assert tree["basins"]["llc"].shape == (run.config.method["k"],)
    assert fb.load_run(run.save("/tmp/fractal_run_test.nc")).groups["basins"]["D"].shape == tree["basins"]["D"].shape


def test_bad_input(moons, well_target):
    target, sgd, posterior = moons
    other = fb.sample(well_target, "sgld", num_chains=2, num_samples=10, burn_in=10, step_size=1e-6)
    with pytest.raises(fb.ModelError, match="samples another target"):
        tempering_test(sgd, other)
    with pytest.raises(fb.ModelError, match="d_s must be finite and > 0"):
        tempering_test(sgd, posterior, d_s=-1.0, lambdas=[1.0, 1.0], k=2)
    with pytest.raises(fb.ModelError, match="d_s must be finite and > 0"):
        fb.sample(target, "fractal", d_s=float("nan"))
    identical = sgd.positions.copy()
    identical[:] = identical[0, -1]
    clones = fb.Run(**{**sgd.__dict__, "positions": identical})
    with pytest.raises(fb.ModelError, match="fewer than two basins"):
        tempering_test(clones, posterior)
    with pytest.raises(ValueError, match="sums to 1.1, not 1"):
        fb.tempering.fit_tempering([0.5, 0.6], [0.5, 0.5], [1.0, 2.0], d_s=1.0, m=100)
    with pytest.raises(fb.ModelError, match="unknown key"):
        fb.sample(target, "fractal", sgd={"learning_rat": 0.1})
