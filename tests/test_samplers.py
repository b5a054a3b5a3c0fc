"""Samplers against closed forms: conjugate posterior, the SGD Lyapunov covariance, NUTS vs SGLD."""


import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import fractalbayes as fb


def mean_and_mcse(run, site="w"):
    table = fb.summary({"run": run}, var_names=[site])
    return table["mean"].to_numpy(), table["mcse_mean"].to_numpy(), table["ess_bulk"].to_numpy()


def sample_cov(run, site="w"):
    draws = run.sites[site].reshape(-1, run.sites[site].shape[-1])
    return np.cov(draws, rowvar=False)


def test_nuts_recovers_the_conjugate_posterior(conjugate, nuts_conjugate):
    _, mean, cov = conjugate
    est, mcse, ess = mean_and_mcse(nuts_conjugate)
    assert np.all(np.abs(est - mean) < 3 * mcse)
    # The sample covariance of ESS effective draws has relative sd about sqrt(2 / ESS) per entry
    # (Wishart); ESS >= 1500 here gives sd <= 3.7 %, so 10 % is about a 3-sigma band.
    assert ess.min() > 1500
    assert np.linalg.norm(sample_cov(nuts_conjugate) - cov) / np.linalg.norm(cov) < 0.10


@pytest.mark.slow
def test_sgld_recovers_the_conjugate_posterior(conjugate):
    target, mean, cov = conjugate
    run = fb.sample(target, "sgld", num_chains=4, num_samples=4000, burn_in=2000, thin=5,
                    step_size=1e-4, seed=1)
    est, mcse, ess = mean_and_mcse(run)
    # SGLD's drift is linear here, so its stationary mean is exact: only MC error remains.
    assert np.all(np.abs(est - mean) < 3 * mcse)
    # Bias in the covariance: Euler discretisation inflates it by h p / 2 (p ~ 200 the largest
    # posterior precision: 1 %), minibatch noise by h N^2 c / (2 B) (c ~ 1 per-example gradient
    # variance: 2 %); MC error sqrt(2 / ESS) ~ 4 % at ESS ~ 1000. 20 % (the bound) is > 4 sd.
    assert np.linalg.norm(sample_cov(run) - cov) / np.linalg.norm(cov) < 0.20


@pytest.mark.slow
def test_constant_sgd_covariance_solves_the_discrete_lyapunov_equation(conjugate):
    target, _, _ = conjugate
    eta, batch = 0.05, 10
    target = target.with_batch_size(batch)
    x = np.asarray(target.data["x"], np.float64)
    y = np.asarray(target.data["y"], np.float64)
    n = len(y)
    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    hessian = x.T @ x / n  # A: Hessian of the mean loss L(w) = (1/2n) sum (y_i - x_i w)^2
    grads = -x * (y - x @ w_star)[:, None]  # per-example gradients at the optimum
    noise = np.cov(grads, rowvar=False, bias=True)  # C; with-replacement batches give C / B
    step = np.eye(3) - eta * hessian
    # S = (I - eta A) S (I - eta A) + eta^2 C / B  <=>  A S + S A - eta A S A = (eta / B) C
    lyapunov = scipy.linalg.solve_discrete_lyapunov(step, eta**2 * noise / batch)
    run = fb.sample(target, "sgd", num_chains=4, num_samples=5000, burn_in=2000, thin=10,
                    learning_rate=eta, init=w_star, seed=2)
    draws = run.positions.reshape(-1, 3)
    # Iterates are AR(1) with rates eta * eig(A) >= 0.04, so draws 10 steps apart have correlation
    # <= 0.66 and ESS >= 20000 * (1 - 0.66) / (1 + 0.66) ~ 4000: relative sd of a variance
    # sqrt(2 / 4000) ~ 2.2 %, plus ~2 % from the state-dependent part of the gradient noise the
    # equation leaves out. 10 % (the bound) is about 3 sd.
    error = np.linalg.norm(np.cov(draws, rowvar=False) - lyapunov) / np.linalg.norm(lyapunov)
    assert error < 0.10
    assert np.all(np.abs(draws.mean(0) - w_star) < 4 * np.sqrt(np.diag(lyapunov) / 4000))


@pytest.mark.slow
def test_logistic_regression_sgld_agrees_with_nuts(logistic):
    nuts = fb.sample(logistic, "nuts", num_chains=4, num_samples=1000, burn_in=500, seed=3)
    sgld = fb.sample(logistic, "sgld", num_chains=4, num_samples=4000, burn_in=2000, thin=5,
                     step_size=5e-4, seed=4)
    for site in ("w", "b"):
        m1, e1, _ = mean_and_mcse(nuts, site)
        m2, e2, _ = mean_and_mcse(sgld, site)
        # Independent estimates: their difference has sd sqrt(mcse1^2 + mcse2^2); 3.5 sd.
        assert np.all(np.abs(m1 - m2) < 3.5 * np.hypot(e1, e2)), (site, m1, m2, e1, e2)


@pytest.mark.slow
def test_sghmc_targets_the_posterior_mean(conjugate):
    target, mean, cov = conjugate
    run = fb.sample(target, "sghmc", num_chains=4, num_samples=1000, burn_in=500, step_size=1e-3,
                    num_integration_steps=5, seed=5)
    est, mcse, _ = mean_and_mcse(run)
    assert np.all(np.abs(est - mean) < 4 * mcse + 0.05 * np.sqrt(np.diag(cov)))


def test_a_diverging_chain_is_flagged_and_does_not_poison_the_rest(conjugate):
    target, _, _ = conjugate
    good = np.zeros((4, target.dim), np.float32)
    bad = good.copy()
    bad[0] = 1e30  # the loss overflows at once
    kwargs = dict(num_chains=4, num_samples=50, burn_in=10, step_size=1e-4, seed=6)
    reference = fb.sample(target, "sgld", init=good, **kwargs)
    with pytest.warns(UserWarning, match="1 of 4 chains diverged"):
        run = fb.sample(target, "sgld", init=bad, **kwargs)
    assert run.diverged.tolist() == [True, False, False, False] and run.diverged_at[0] == 0
    # it left the finite set during burn-in: no draw marks the step, every draw is frozen
    assert not run.stats["diverging"].any()
    assert run.stats["frozen"][0].all() and not run.stats["frozen"][1:].any()
    np.testing.assert_array_equal(run.positions[1:], reference.positions[1:])


def test_all_chains_diverging_is_a_sampler_error_with_the_partial_run(conjugate):
    target, _, _ = conjugate
    with pytest.raises(fb.SamplerError, match="all 2 chains diverged.*smaller step size") as info:
        fb.sample(target, "sgd", num_chains=2, num_samples=20, burn_in=0, learning_rate=50.0)
    assert info.value.run.positions.shape == (2, 20, 3)
    assert np.isfinite(info.value.run.positions).all()  # last finite states are kept


def test_same_seed_same_numbers(conjugate):
    target, _, _ = conjugate
    a, b, c = (fb.sample(target, "sgld", num_chains=2, num_samples=30, burn_in=5, step_size=1e-4, seed=s)
               for s in (7, 7, 8))
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.checkpoints, b.checkpoints)
    assert not np.array_equal(a.positions, c.positions)


def test_checkpoints_are_geometric_and_match_draws(conjugate):
    target, _, _ = conjugate
    run = fb.sample(target, "sgld", num_chains=2, num_samples=200, burn_in=100, thin=2,
                    step_size=1e-4, num_checkpoints=30, record_window=(250, 20), seed=9)
    steps = run.checkpoint_steps
    assert steps[0] == 0 and steps[-1] == 500 and np.all(np.diff(steps) > 0)
    # the draw d (0-based) is the position after step burn_in + (d + 1) * thin
    for k, step in enumerate(steps):
        if step > 100 and (step - 100) % 2 == 0:
            np.testing.assert_array_equal(run.checkpoints[:, k], run.positions[:, (step - 100) // 2 - 1])
    assert run.lag_window.shape == (2, 20, 3) and run.lag_window_start == 250


def test_schedules_are_applied(conjugate):
    target, _, _ = conjugate
    poly = fb.sample(target, "sgld", num_chains=1, num_samples=10, burn_in=0, seed=0,
                     schedule={"kind": "polynomial", "a": 1e-3, "b": 10.0, "gamma": 0.55})
    np.testing.assert_allclose(poly.stats["step_size"][0], 1e-3 * (10.0 + np.arange(10)) ** -0.55, rtol=1e-5)
    cyc = fb.sample(target, "sgld", num_chains=1, num_samples=8, burn_in=0, seed=0, step_size=1e-3,
                    schedule={"kind": "cyclical", "num_cycles": 2})
    expected = 1e-3 / 2 * (np.cos(np.pi * (np.arange(8) % 4) / 4) + 1)
    np.testing.assert_allclose(cyc.stats["step_size"][0], expected, rtol=1e-5)
    custom = fb.sample(target, "sgd", num_chains=1, num_samples=5, burn_in=0,
                       schedule=lambda t: 0.1 / (1.0 + t))
    np.testing.assert_allclose(custom.stats["step_size"][0], 0.1 / (1.0 + np.arange(5)), rtol=1e-6)


def test_adam_momentum_weight_decay_and_map_run(conjugate):
    target, mean, _ = conjugate
    best = float(target.full_loss(jnp.asarray(mean, jnp.float32)))
    for options in ({"optimizer": "adam", "learning_rate": 1e-2},
                    {"momentum": 0.9, "weight_decay": 1e-3, "objective": "map"}):
        run = fb.sample(target, "sgd", num_chains=2, num_samples=50, burn_in=200, **options)
        # trained from the prior to near the optimum (minibatch losses of 100 examples, sd ~ 0.1)
        assert np.isfinite(run.positions).all() and run.stats["loss"][:, -1].mean() < best + 0.3


@pytest.mark.parametrize(
    "sampler, options, message",
    [
        ("sgdd", {}, "unknown sampler 'sgdd'"),
        ("sgld", {"stepsize": 1e-3}, r"unknown option\(s\) \['stepsize'\]"),
        ("sgld", {"step_size": -1.0}, "step_size must be finite and > 0"),
        ("sgd", {"optimizer": "rmsprop"}, "optimizer must be one of"),
        ("sgld", {"schedule": {"kind": "linear"}}, "schedule must be None"),
        ("sgld", {"center": [0.0]}, "center must be a flat unconstrained vector of length 3"),
        ("sgld", {"num_chains": 0}, "num_chains must be an integer >= 1"),
        ("nuts", {"burn_in": 0}, "adapts its step size during burn-in"),
    ],
)
def test_bad_sampler_input(conjugate, sampler, options, message):
    target, _, _ = conjugate
    with pytest.raises(fb.ModelError, match=message):
        fb.sample(target, sampler, **options)
