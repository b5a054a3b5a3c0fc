"""Diffusion analysis on real sampler runs: the paper's Fig. 1 and the SGD Ornstein–Uhlenbeck plateau."""

import functools

import numpy as np
import scipy.linalg

import fractalbayes as fb
from fractalbayes.slt import diffusion


def test_moons_sgd_ensemble_is_super_then_sub_diffusive():
    """Paper Fig. 1: early super-diffusion (slope > 1/2), late sub-diffusion (slope < 1/2)."""
    data = fb.data.moons(200, noise=0.2, seed=0)
    model = functools.partial(fb.models.mlp_classifier, widths=(16,), num_classes=2)
    target = fb.from_numpyro(model, data.x_train, data.y_train, batch_size=16)
    run = fb.sample(target, "sgd", num_chains=32, num_samples=10, burn_in=0, thin=1000, learning_rate=0.05,
                    num_checkpoints=80, seed=0)
    result = diffusion.analyze(run)
    fit = result.two_regime
    assert fit.early_slope > 0.5 > fit.late_slope, fit
    assert result.slope < 0.5 and result.r2 > 0.9


def test_constant_sgd_displacement_saturates_at_the_lyapunov_radius(conjugate):
    """Stationary OU: E||w_{t0+t} - w_{t0}||^2 -> 2 tr S for lags much longer than 1/(eta a_min)."""
    target, _, _ = conjugate
    eta, batch, burn_in = 0.05, 10, 2000
    target = target.with_batch_size(batch)
    x = np.asarray(target.data["x"], np.float64)
    y = np.asarray(target.data["y"], np.float64)
    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    hessian = x.T @ x / len(y)
    noise = np.cov(-x * (y - x @ w_star)[:, None], rowvar=False, bias=True)
    lyapunov = scipy.linalg.solve_discrete_lyapunov(np.eye(3) - eta * hessian, eta**2 * noise / batch)
    run = fb.sample(target, "sgd", num_chains=64, num_samples=20, burn_in=burn_in, thin=200, learning_rate=eta,
                    init=w_star, checkpoint_start=burn_in, num_checkpoints=40, seed=3)
    result = diffusion.analyze(run, t0=burn_in)
    relaxation = 1 / (eta * np.linalg.eigvalsh(hessian).min())
    late = result.lags > 10 * relaxation
    per_chain = (result.radius[:, late] ** 2).mean(axis=1)
    # chains are independent: the standard error of the ensemble mean is their sd / sqrt(64)
    se = per_chain.std(ddof=1) / np.sqrt(len(per_chain))
    assert late.sum() >= 3
    assert abs(per_chain.mean() - 2 * np.trace(lyapunov)) < 4 * se, (per_chain.mean(), 2 * np.trace(lyapunov), se)


def test_llc_trajectory_feeds_lambda_bar_and_the_spectral_dimension(conjugate):
    """lambda_bar is the time average of fb.llc.trajectory over the window; d_s = 2 lambda_bar slope."""
    target, _, _ = conjugate
    run = fb.sample(target, "sgd", num_chains=4, num_samples=20, burn_in=500, thin=50, learning_rate=0.05,
                    checkpoint_start=500, num_checkpoints=12, seed=4)
    trajectory = fb.llc.trajectory(run, every=3, nbeta=100.0, step_size=1e-4, num_draws=300, burn_in=100)
    assert trajectory.values.shape == trajectory.steps.shape and np.isfinite(trajectory.values).all()
    # A trained linear regression is regular: t E[L - L*] = sum_i t a_i / (2 (t a_i + 1/s^2)) with
    # a_i ~ 1 the Hessian's eigenvalues, s = 1: 1.485 at t = 100, 1 % below d / 2 = 1.5. Each
    # estimate is a mean of t (L - L*) ~ chi^2_3 / 2 (sd 1.22) over >= 4 x 300 correlated draws
    # (ESS >= 200): sd <= 0.09 per checkpoint; >= 2 late checkpoints averaged: sd <= 0.065, so
    # 15 % (0.22) is > 3 sd.
    late = trajectory.steps >= 500
    np.testing.assert_allclose(trajectory.values[late].mean(), 1.5, rtol=0.15)
    result = diffusion.analyze(run, t0=500, llc=trajectory)
    assert result.lambda_bar is not None and np.isfinite(result.lambda_bar)
    np.testing.assert_allclose(result.d_s, 2 * result.lambda_bar * result.slope, rtol=1e-12)
    assert result.bound_holds == (result.d_s <= result.lambda_bar)
    assert set(result.table()["quantity"]) >= {"slope", "d_s", "lambda_bar"}
