"""SGNHT, SGLD-CV, pSGLD and contour SGLD (issue 15) against closed forms and their own theory.

The conjugate linear regression (tests/conftest.py) has a Gaussian posterior N(mu, A^-1) with
A = X^T X + I. Every kernel's drift is linear in w there, so discrete-time stationary covariances
solve discrete Lyapunov equations, which is the theory these tests hold the step-size dependence to.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.linalg
import scipy.optimize
from arviz_stats.base import array_stats
from blackjax.sgmcmc import gradients

import fractalbayes as fb
from fractalbayes.samplers import csgld, sgld_cv
from fractalbayes.samplers.gradients import tempered_log_density_and_grad


def closed_form_parts(target):
    x = np.asarray(target.data["x"], np.float64)
    y = np.asarray(target.data["y"], np.float64)
    return x, y, x.T @ x + np.eye(x.shape[1])  # precision A for unit noise and prior scales


def gradient_noise_cov(target, draws):
    """Covariance of the minibatch likelihood gradient n mean_B x_i (y_i - x_i w), batches drawn with
    replacement: n^2 / B Cov_i[x_i r_i(w)], averaged over the given posterior draws."""
    x, y, _ = closed_form_parts(target)
    n, b = len(y), target.batch_size
    covs = [np.cov(x * (y - x @ w)[:, None], rowvar=False, bias=True) for w in draws]
    return n**2 / b * np.mean(covs, axis=0)


def mcse_mean(values):
    """MCSE of the mean of a (chain, draw) array (arviz-stats)."""
    return float(array_stats.mcse(np.asarray(values, np.float64), chain_axis=0, draw_axis=1))


def relative_error(estimate, reference):
    return np.linalg.norm(estimate - reference) / np.linalg.norm(reference)


def assert_mean_within_mcse(run, mean):
    # Linear drift: the stationary mean is exact for every kernel here, only MC error remains.
    for j in range(len(mean)):
        error = abs(run.positions[..., j].mean() - mean[j])
        assert error < 4 * mcse_mean(run.positions[..., j]), (j, error)


# --------------------------------------------------------------------------------------------------
# SGNHT
# --------------------------------------------------------------------------------------------------


def sgnht_stationary_cov(a, h, xi, alpha, noise, temperature=1.0):
    """Stationary covariance of (w, p) under BlackJAX's SGNHT step with the thermostat frozen at xi:
    w' = w + h p, p' = (1 - xi h) p - h A w + sqrt(2 alpha h T) nu + h eta, Cov eta = noise."""
    d = len(a)
    i, z = np.eye(d), np.zeros((d, d))
    f = np.block([[i, h * i], [-h * a, (1 - xi * h) * i]])
    q = np.block([[z, z], [z, 2 * alpha * h * temperature * i + h**2 * noise]])
    return scipy.linalg.solve_discrete_lyapunov(f, q)


@pytest.fixture(scope="module")
def sgnht_run(conjugate):
    target, _, _ = conjugate
    return fb.sample(target, "sgnht", num_chains=4, num_samples=20000, burn_in=2000, step_size=1e-2, seed=3,
                     stats="all")  # kinetic_energy is opt-in


def test_sgnht_thermostat_holds_the_temperature(sgnht_run):
    kinetic = sgnht_run.stats["kinetic_energy"]
    # xi' - xi = h (p.p/d - T): a stationary thermostat forces E[p.p/d] = T = 1 exactly; 4 MCSE.
    assert abs(kinetic.mean() - 1.0) < 4 * mcse_mean(kinetic)


def test_sgnht_mean_covariance_and_thermostat_follow_the_discrete_theory(conjugate, sgnht_run):
    target, mean, cov = conjugate
    _, _, a = closed_form_parts(target)
    h, alpha, d = 1e-2, 0.01, 3
    assert_mean_within_mcse(sgnht_run, mean)
    draws = sgnht_run.positions.reshape(-1, d)
    noise = gradient_noise_cov(target, draws[::400])
    xi = float(sgnht_run.stats["xi"].mean())
    predicted = sgnht_stationary_cov(a, h, xi, alpha, noise)
    # ESS of w ~ 5000 per coordinate (measured 5000-5500): each variance has relative sd
    # sqrt(2 / 5000) = 2 %; the prediction freezes xi at its mean (its sd is 14 % of it: a
    # second-order effect, ~1 %). 10 % is > 3 sd. At h = 1e-2 the Euler scheme inflates the
    # covariance by ~20 % over the posterior's: the prediction must see that, and it does.
    assert relative_error(np.cov(draws, rowvar=False), predicted[:d, :d]) < 0.10
    assert relative_error(predicted[:d, :d], cov) > 0.15
    # The thermostat settles where the predicted kinetic energy per dimension is T: xi* below.
    # Minibatch noise (n^2 / B Cov ~ 400 per coordinate) lifts it from alpha = 0.01 to ~4.
    def excess_kinetic(value):
        return np.trace(sgnht_stationary_cov(a, h, value, alpha, noise)[d:, d:]) / d - 1.0

    def spectral_radius(value):
        i = np.eye(d)
        return np.abs(np.linalg.eigvals(np.block([[i, h * i], [-h * a, (1 - value * h) * i]]))).max()

    grid = np.linspace(0.01, 50.0, 5000)
    grid = grid[[spectral_radius(v) < 1 for v in grid]]  # a frozen-xi chain is stable there
    excess = np.array([excess_kinetic(v) for v in grid])
    first = int(np.argmax(excess < 0))  # the kinetic energy falls through T once, as xi rises
    xi_star = scipy.optimize.brentq(excess_kinetic, grid[first - 1], grid[first])
    # MCSE of mean xi ~ 0.3 %; freezing xi's fluctuations ~ 1-2 % (measured 0.2 % at h=1e-2, 2.8 % at
    # h=5e-3): 6 %.
    assert abs(xi - xi_star) < 0.06 * xi_star, (xi, xi_star)


# --------------------------------------------------------------------------------------------------
# pSGLD
# --------------------------------------------------------------------------------------------------


def psgld_stationary_cov(target, h, noise, epsilon=1e-5):
    """Self-consistent stationary covariance of pSGLD with its preconditioner at equilibrium:
    S = (I - h P A) S (I - h P A)^T + 2 h P + h^2 P C P,  P = diag 1 / (eps + sqrt(V)),
    V = E[g g] = diag(A S A + C) (the gradient's stationary second moment), by fixed-point iteration."""
    _, _, a = closed_form_parts(target)
    s = np.linalg.inv(a)
    for _ in range(50):
        p = np.diag(1.0 / (epsilon + np.sqrt(np.diag(a @ s @ a + noise))))
        step = np.eye(len(a)) - h * p @ a
        s = scipy.linalg.solve_discrete_lyapunov(step, 2 * h * p + h**2 * p @ noise @ p)
    return s, p


def test_psgld_recovers_the_conjugate_posterior(conjugate):
    target, mean, cov = conjugate
    run = fb.sample(target, "psgld", num_chains=4, num_samples=10000, burn_in=2000, step_size=5e-3, seed=4)
    assert_mean_within_mcse(run, mean)
    # Bias: the preconditioned step h P A ~ 5e-3 * 0.04 * 200 = 0.04 inflates the covariance ~2 %
    # (+ ~2 % from minibatch noise); MC error sqrt(2 / ESS) ~ 5 % at ESS ~ 1000. 20 % is > 3 sd.
    assert relative_error(np.cov(run.positions.reshape(-1, 3), rowvar=False), cov) < 0.20


def test_psgld_covariance_grows_with_the_preconditioned_step_as_predicted(conjugate):
    target, _, cov = conjugate
    h = 5e-2
    run = fb.sample(target, "psgld", num_chains=4, num_samples=20000, burn_in=2000, step_size=h, seed=5)
    draws = run.positions.reshape(-1, 3)
    predicted, p = psgld_stationary_cov(target, h, gradient_noise_cov(target, draws[::400]))
    # The run's preconditioner is the predicted one (V averages ~100 steps of g*g: sd ~ 10 % per
    # step, far less over 80000 steps x 4 chains); 3 %.
    assert abs(run.stats["preconditioner"].mean() / np.diag(p).mean() - 1) < 0.03
    # ESS ~ 15000 per coordinate: relative sd of each variance sqrt(2 / 15000) = 1.2 %; 5 % is 4 sd.
    # The covariance is ~70 % above the posterior's at this step: the theory must carry h P A.
    assert relative_error(np.cov(draws, rowvar=False), predicted) < 0.05
    assert relative_error(predicted, cov) > 0.5


# --------------------------------------------------------------------------------------------------
# SGLD-CV
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_center(conjugate):
    target, _, _ = conjugate
    center, _ = fb.train(target, num_steps=2000, learning_rate=0.05, seed=0)
    return center


def test_sgld_cv_recovers_the_conjugate_posterior_and_records_its_centre(conjugate, trained_center):
    target, mean, cov = conjugate
    run = fb.sample(target, "sgld_cv", num_chains=4, num_samples=4000, burn_in=2000, thin=5, step_size=1e-4,
                    cv_center=trained_center, seed=6)
    assert_mean_within_mcse(run, mean)
    # As for SGLD (tests/test_samplers.py): Euler bias ~1 %, minibatch-noise bias smaller than
    # SGLD's 2 %, MC error ~4 % at ESS ~ 1000; 20 % is > 4 sd.
    assert relative_error(np.cov(run.positions.reshape(-1, 3), rowvar=False), cov) < 0.20
    np.testing.assert_array_equal(run.config.options["cv_center"], trained_center)


def test_sgld_cv_gradient_is_blackjax_control_variates(conjugate, trained_center):
    target, _, _ = conjugate
    n = float(target.n_data)
    estimate = jax.jit(sgld_cv.cv_gradient(target, localized=False))
    center = jnp.asarray(trained_center)
    cv_grad = jax.grad(target.full_loss)(center)

    def blackjax_estimator(z, batch):
        return jax.grad(lambda z: target.log_posterior_estimate(z, batch, n)[0])(z)

    reference = jax.jit(gradients.control_variates(blackjax_estimator, center, target.data))
    for seed in range(3):
        z = center + 0.1 * jax.random.normal(jax.random.key(seed), center.shape)
        batch = target.sample_batch(jax.random.key(10 + seed))
        _, ours = estimate(z, z, center, cv_grad, batch, n, 0.0)
        np.testing.assert_allclose(ours, reference(z, batch), rtol=1e-4, atol=1e-3)


def test_sgld_cv_gradient_variance_is_below_sgld_near_the_centre(conjugate, trained_center):
    target, mean, cov = conjugate
    n = float(target.n_data)
    estimate = sgld_cv.cv_gradient(target, localized=False)
    plain = tempered_log_density_and_grad(target, localized=False)
    center = jnp.asarray(trained_center)
    cv_grad = jax.grad(target.full_loss)(center)
    keys = jax.random.split(jax.random.key(0), 400)

    @jax.jit
    def variances(z):
        batches = jax.vmap(target.sample_batch)(keys)
        g_cv = jax.vmap(lambda b: estimate(z, z, center, cv_grad, b, n, 0.0)[1])(batches)
        g_plain = jax.vmap(lambda b: plain(z, z, b, n, 0.0)[1])(batches)
        return jnp.sum(jnp.var(g_cv, axis=0)), jnp.sum(jnp.var(g_plain, axis=0))

    points = np.random.default_rng(0).multivariate_normal(mean, cov, size=20).astype(np.float32)
    cv_var, plain_var = map(np.asarray, jax.vmap(variances)(jnp.asarray(points)))
    ratio = cv_var.sum() / plain_var.sum()
    print(f"SGLD-CV / SGLD gradient variance at posterior draws, batch {target.batch_size}: {ratio:.4f}")
    # Per coordinate j, plain SGLD's per-example gradient x_ij r_i has variance ~ sigma^2 E[x_j^2] = 1;
    # the control variate's x_ij x_i^T (w - w_hat) has ~ E[x_j^2 (x^T delta)^2] ~ |delta|^2 (1 + 2
    # delta_j^2 / |delta|^2), |delta|^2 ~ tr(A^-1) ~ 0.017 at posterior draws: a ratio ~ 0.02 (measured
    # 0.0135). Each of the 20 x 400-batch variances has relative sd sqrt(2 / 400) = 7 %, their sum
    # less: 0.05 is 2.5x the predicted ratio and ~20 sd above the measured one.
    assert ratio < 0.05
    cv_at_center, plain_at_center = map(float, variances(center))
    assert cv_at_center < 1e-6 * plain_at_center  # exactly the full-data gradient at the centre


def test_sgld_cv_centres_default_to_the_chain_starts_and_a_given_centre_is_shared(conjugate, trained_center):
    target, _, _ = conjugate
    spec, start = fb.SAMPLERS["sgld_cv"], jnp.asarray(trained_center)
    full_grad = jax.grad(target.full_loss)(start)
    kernel, hyper = sgld_cv.build(target, spec.resolve({}), 10)
    state = kernel.init(start, jax.random.key(0), jax.tree.map(jnp.asarray, hyper))
    np.testing.assert_array_equal(state.cv_center, trained_center)
    np.testing.assert_allclose(state.cv_grad, full_grad, rtol=1e-5)
    for options in ({"cv_center": trained_center}, {"center": trained_center}):
        kernel, hyper = sgld_cv.build(target, spec.resolve(options), 10)
        state = kernel.init(start + 1.0, jax.random.key(0), jax.tree.map(jnp.asarray, hyper))
        assert state.cv_center is None and state.cv_grad is None  # one centre for all chains, in hyper
        np.testing.assert_array_equal(hyper.cv_center, trained_center)
        np.testing.assert_allclose(hyper.cv_grad, full_grad, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Contour SGLD
# --------------------------------------------------------------------------------------------------


def two_modes(y, noise=0.5):
    """y ~ N(g(w), noise), g(w) = |w| on w > 0 and 2|w| on w < 0 (smoothed): minima of equal depth at
    w = 1 and w = -1/2 whose widths differ by 2, so the planted masses differ (~2:1)."""
    w = numpyro.sample("w", dist.Normal(0.0, 3.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(jnp.sqrt(w**2 + 0.01) * (1.5 - 0.5 * jnp.tanh(w / 0.05)), noise), obs=y)


def test_csgld_reweighting_recovers_planted_mode_masses_sgld_cannot_reach():
    target = fb.from_numpyro(two_modes, np.ones(8, np.float32))
    grid = np.linspace(-3, 3, 60001, dtype=np.float32)
    log_density = np.asarray(jax.vmap(lambda w: target.log_density(w[None]))(jnp.asarray(grid)), np.float64)
    weights = np.exp(log_density - log_density.max())
    planted = weights[grid > 0].sum() / weights.sum()  # quadrature on a 1e-4 grid: exact to ~1e-6
    lowest, barrier = -log_density.max(), -log_density[np.argmin(np.abs(grid))]
    assert barrier - lowest > 11  # an 11.5-nat barrier
    init = np.tile(np.array([[1.0], [-0.5]], np.float32), (16, 1))  # half the chains in each mode
    settings = {"num_chains": 32, "num_samples": 30000, "burn_in": 0, "step_size": 1e-3, "init": init,
                "progress": False}

    sgld = fb.sample(target, "sgld", seed=0, **settings)
    assert not np.any(np.diff(sgld.positions[..., 0] > 0, axis=1))  # plain SGLD never switches

    run = fb.sample(target, "csgld", seed=1, energy_gap=1.0, num_partitions=int(np.ceil(barrier - lowest)) + 2,
                    min_energy=float(lowest - 0.2), sa_step_size=0.05, zeta=0.75, **settings)
    labels = (run.positions[..., 0] > 0).astype(int)
    assert np.diff(labels, axis=1).any(axis=1).all()  # every contour chain crosses the barrier
    masses, se = csgld.mode_masses(run, labels, 2, skip=5000)
    # se: spread of the 32 per-chain estimates / sqrt(32) (each chain learns its own theta; 0.015-
    # 0.022 over seeds 1-6). Weighting a whole bin by theta(J) leaves a small bias: over seeds 1-6
    # the estimate sat 0.000 to +0.048 from the planted 0.653 (mean +0.017; z = 0.0 to 2.3), with the
    # learnt log theta within 0.5 nats of the quadrature's. 4 se + 0.01 (0.07-0.10) covers both; the
    # unweighted fraction of the flattened chains (0.75-0.77) lies outside it.
    assert abs(masses[1] - planted) < 4 * se[1] + 0.01, (masses, se, planted)
    assert labels[:, 5000:].mean() - planted > 4 * se[1] + 0.01
    assert np.isfinite(run.stats["log_weight"]).all() and not run.diverged.any()


# --------------------------------------------------------------------------------------------------
# Registry, suites and bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgnht", "sgld_cv", "psgld", "csgld"])
def test_registered_with_typed_documented_options(name):
    spec = fb.SAMPLERS[name]
    assert spec.kind == "kernel" and spec.option("step_size").default > 0
    assert all(row["meaning"] and row["allowed"] for row in spec.table_rows())


@pytest.mark.parametrize(
    "sampler, options, message",
    [
        ("sgnht", {"alpha": 0.0}, "alpha must be finite and > 0"),
        ("sgnht", {"beta": 1e6, "step_size": 1e-2}, "lower beta below 2 alpha"),
        ("psgld", {"decay": 1.0}, "decay must be < 1"),
        ("psgld", {"epsilon": -1.0}, "epsilon must be finite and > 0"),
        ("sgld_cv", {"cv_center": [0.0]}, "cv_center must be a flat unconstrained vector of length 3"),
        ("sgld_cv", {"cv_center": "map"}, "cv_center must be None, a flat unconstrained vector or a dict"),
        ("csgld", {"num_partitions": 1}, "num_partitions must be an integer >= 2"),
        ("csgld", {"sa_step_size": 2.0}, "sa_step_size must be finite"),
    ],
)
def test_bad_options_are_refused_before_work(conjugate, sampler, options, message):
    target, _, _ = conjugate
    with pytest.raises(fb.ModelError, match=message):
        fb.sample(target, sampler, num_samples=5, burn_in=0, **options)


def test_csgld_mode_masses_refuses_other_runs_and_bad_labels(conjugate):
    target, _, _ = conjugate
    run = fb.sample(target, "sgld", num_chains=2, num_samples=5, burn_in=0)
    with pytest.raises(fb.ModelError, match="reweights csgld runs"):
        csgld.mode_masses(run, np.zeros((2, 5), int))
    with pytest.raises(fb.ModelError, match="must both be"):
        csgld.reweighted_masses(np.zeros((2, 5)), np.zeros((2, 4), int), 2)
    # energies (-log pi ~ 300 here) far below min_energy all fall into the first bin: named, with the fix
    run = fb.sample(target, "csgld", num_chains=2, num_samples=20, burn_in=0, min_energy=1e6, progress=False)
    assert (run.stats["energy_index"] == 1).all()
    with pytest.warns(UserWarning, match="first or last energy bin.*set min_energy just below"):
        csgld.mode_masses(run, np.zeros((2, 20), int), 1)


@pytest.mark.parametrize("name, step_size", [("sgld_cv", 1e-5), ("psgld", 1e-3), ("csgld", 1e-5)])
def test_localized_tempered_runs_sample_the_localized_density(conjugate, name, step_size):
    target, mean, cov = conjugate
    start = np.asarray(mean + 20 * np.sqrt(np.diag(cov)), np.float32)  # 20 posterior sds away
    run = fb.sample(target, name, num_chains=4, num_samples=200, burn_in=500, thin=10, init=start, seed=7,
                    progress=False, nbeta=1.0, localization=1e4, step_size=step_size)
    # With nbeta = 1 the density is the prior times one example's likelihood (precision ~ 2) times
    # the pull exp(-1e4/2 ||w - start||^2): Gaussian about start (shifted by grad / 1e4 < 0.002) with
    # sd 1 / sqrt(1e4 + ~2) = 0.0100. Draws 10 steps apart are nearly independent here (per-step
    # contraction ~ 0.1), so ESS ~ 800 and each sd has relative error ~ 1 / sqrt(2 * 800) = 2.5 %
    # (plus Euler inflation ~ h 1e4 / 2 = 5 % for SGLD-type steps); 25 % is a wide margin. Without
    # the pull the chains would not be held at their start: sd ~ 1.
    sd = run.positions.reshape(-1, 3).std(axis=0)
    assert np.all(np.abs(sd / 0.01 - 1) < 0.25), sd
    assert np.abs(run.positions.reshape(-1, 3).mean(axis=0) - start).max() < 0.005
    assert run.config.options["localization"] == 1e4


def test_localized_sgnht_is_held_at_its_centre_and_keeps_its_temperature(conjugate):
    target, mean, cov = conjugate
    x, _, _ = closed_form_parts(target)
    h, gamma = 1e-2, 1e2
    start = np.asarray(mean + 20 * np.sqrt(np.diag(cov)), np.float32)
    run = fb.sample(target, "sgnht", num_chains=4, num_samples=1000, burn_in=2000, thin=10, init=start, seed=8,
                    progress=False, nbeta=1.0, localization=gamma, step_size=h, stats="all")
    draws = run.positions.reshape(-1, 3)
    # nbeta = 1: precision (gamma + 1) I + X^T X / n ~ 102, sd ~ 0.099 about the start (20 posterior sds,
    # ~1.5, from the posterior mean); without the pull the sd would be ~0.7. The explicit Euler steps
    # inflate the sd by O(h omega) ~ 10 % and the thermostat's own fluctuations (xi ~ 1 +- 1 here)
    # more, so only the order is checked: within a factor 1.5 (MC error ~3 % at ESS ~ 1900).
    exact = np.sqrt(np.diag(np.linalg.inv((gamma + 1.0) * np.eye(3) + x.T @ x / len(x))))
    assert np.all(np.abs(np.log(draws.std(axis=0) / exact)) < np.log(1.5)), draws.std(axis=0) / exact
    assert np.abs(draws.mean(axis=0) - start).max() < 0.05  # pulled to the start, not to the posterior
    kinetic = run.stats["kinetic_energy"]
    assert abs(kinetic.mean() - 1.0) < 4 * mcse_mean(kinetic)  # E[p.p/d] = T holds here too


SUITE = """
[suite]
name = "family"
seeds = [0]
analyses = ["summary"]

[model]
name = "linear_regression"
batch_size = 50

[data]
name = "linear_teacher"
options = { n = 100, d = 3, seed = 0 }

[arms.sgnht]
sampler = "sgnht"
options = { step_size = 1e-3, alpha = 0.05, init_xi = 0.1 }

[arms.psgld]
sampler = "psgld"
options = { step_size = 1e-3, decay = DECAY, epsilon = 1e-4 }

[arms.sgld_cv]
sampler = "sgld_cv"
options = { step_size = 1e-4, cv_center = [0.0, 0.0, 0.0] }

[arms.csgld]
sampler = "csgld"
options = { step_size = 1e-4, num_partitions = 64, energy_gap = 2.0, min_energy = 100.0, zeta = 0.5 }
"""


def test_suite_files_take_every_new_sampler_and_check_its_options(tmp_path):
    from fractalbayes.suite.spec import load_suite

    good = tmp_path / "family.toml"
    good.write_text(SUITE.replace("DECAY", "0.95"))
    suite = load_suite(good)
    assert {arm["sampler"] for arm in suite.base["arms"].values()} == {"sgnht", "psgld", "sgld_cv", "csgld"}
    bad = tmp_path / "bad.toml"
    bad.write_text(SUITE.replace("DECAY", "1.0"))
    with pytest.raises(fb.SuiteError, match="arms.psgld.options.decay: must be < 1"):
        load_suite(bad)
