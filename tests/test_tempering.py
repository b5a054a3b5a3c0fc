"""Tests for fractalbayes.tempering on masses generated exactly from the paper's model.

Identifiability of the synthetic setting: log e_k = log s + a_k log xi with a_k = 2 - d_walk,k is
affine in (log xi, log s) with distinct slopes a_k (distinct lambdas), and K = 4 basins give
K - 1 = 3 constraints for 2 parameters, so (xi, s) is identifiable in both xi ranges. (With K = 2,
or all lambdas equal, only one combination would be.) The data are noise-free, so the optimum is
exact (objective 0) and the tolerances below reflect optimiser convergence only.
"""

import math

import numpy as np
import pytest

from fractalbayes.slt.tempering import basin_diffusion_coefficient, fit_tempering, permutation_test

P_B = np.array([0.1, 0.2, 0.3, 0.4])
LAMBDAS = np.array([0.5, 1.0, 1.5, 2.2])
XI, SCALE, D_S, M = 0.5, 1.7, 1.3, 500


def _sgd_masses(p_b, lambdas, xi, scale, d_s, fractal_dim="lambda"):
    """q ∝ p_b^{1/e}, e = s D(xi): the prediction the fit should invert."""
    e = scale * basin_diffusion_coefficient(lambdas, xi, d_s, fractal_dim)
    q = p_b ** (1 / e)
    return q / q.sum()


def test_basin_diffusion_coefficient_hand_values():
    # d_walk = 2 lambda / d_s: lambda = d_s gives D = xi^0 = 1, lambda = 0 gives xi^2,
    # lambda = 2 d_s gives xi^-2; with "2lambda" the same D = 1 needs lambda = d_s / 2.
    d = basin_diffusion_coefficient([1.3, 0.0, 2.6], 0.5, 1.3)
    np.testing.assert_allclose(d, [1.0, 0.25, 4.0], rtol=1e-14)
    d = basin_diffusion_coefficient([0.65], 0.5, 1.3, fractal_dim="2lambda")
    np.testing.assert_allclose(d, [1.0], rtol=1e-14)


@pytest.mark.parametrize("xi_range", ["paper", "free"])
@pytest.mark.parametrize("fractal_dim", ["lambda", "2lambda"])
def test_fit_recovers_generating_parameters(xi_range, fractal_dim):
    p_sgd = _sgd_masses(P_B, LAMBDAS, XI, SCALE, D_S, fractal_dim)
    fit = fit_tempering(
        p_sgd, P_B, LAMBDAS, d_s=D_S, m=M, xi_range=xi_range, fractal_dim=fractal_dim
    )
    assert fit.objective < 1e-8
    assert fit.xi == pytest.approx(XI, rel=1e-3)
    assert fit.scale == pytest.approx(SCALE, rel=1e-3)
    np.testing.assert_allclose(fit.q, p_sgd, atol=1e-6)
    # the default ("inverse") tempering maps the SGD masses back onto the posterior masses
    np.testing.assert_allclose(fit.p_tempered, P_B, atol=1e-6)
    assert fit.kl_tempered < 1e-8 and fit.js_tempered < 1e-8 and fit.wasserstein_tempered < 1e-6
    # one exponent for every basin cannot fit basin-dependent exponents
    assert fit.objective_global > 1e-4
    assert fit.objective_global <= fit.objective_untempered
    assert fit.kl_untempered > fit.kl_global > fit.kl_tempered
    assert (fit.xi_range, fit.scale_mode, fit.fractal_dim, fit.tempering) == (
        xi_range, "fit", fractal_dim, "inverse"
    )


def test_power_tempering_is_the_literal_operation():
    p_sgd = _sgd_masses(P_B, LAMBDAS, XI, SCALE, D_S)
    fit = fit_tempering(p_sgd, P_B, LAMBDAS, d_s=D_S, m=M, tempering="power")
    literal = p_sgd**fit.exponents
    np.testing.assert_allclose(fit.p_tempered, literal / literal.sum(), rtol=1e-12)
    # With basin-dependent exponents the normaliser of q enters each basin with a different
    # power, so p_sgd^e does not recover p_b even for an exact fit.
    assert fit.objective < 1e-8 and fit.kl_tempered > 0.1


def test_inverse_and_power_agree_for_equal_exponents():
    # equal lambdas -> equal exponents: both operations are p_sgd^c normalised
    lambdas = np.full(4, 1.0)
    p_sgd = _sgd_masses(P_B, lambdas, XI, SCALE, D_S)
    fits = [
        fit_tempering(p_sgd, P_B, lambdas, d_s=D_S, m=M, tempering=t) for t in ("inverse", "power")
    ]
    np.testing.assert_allclose(fits[0].p_tempered, fits[1].p_tempered, rtol=1e-10)
    np.testing.assert_allclose(fits[0].p_tempered, P_B, atol=1e-6)


def test_true_assignment_ranks_first():
    p_sgd = _sgd_masses(P_B, LAMBDAS, XI, SCALE, D_S)
    test = permutation_test(p_sgd, P_B, LAMBDAS)
    assert test.rank == 1 and test.ties == 0 and test.p_value == pytest.approx(1 / 24)
    assert test.objectives.shape == (math.factorial(4),)
    assert test.objectives[0] < 1e-8 and np.all(test.objectives[1:] > 1e-5)


def test_permutation_sampling_is_seeded():
    p_sgd = _sgd_masses(P_B, LAMBDAS, XI, SCALE, D_S)
    first = permutation_test(p_sgd, P_B, LAMBDAS, max_permutations=6, seed=3)
    again = permutation_test(p_sgd, P_B, LAMBDAS, max_permutations=6, seed=3)
    assert first.rank == 1 and not first.exact and first.objectives.shape == (6,)
    np.testing.assert_array_equal(first.objectives, again.objectives)


@pytest.mark.parametrize("seed", range(8))
def test_nested_models_never_fit_worse(seed):
    # The global model contains c = 1 (untempered) and, with scale="fit", the tempering model
    # contains the global one (xi = 1, s = c); the optimiser starts at both nested points.
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    p_sgd, p_b = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
    lambdas, d_s = rng.uniform(0.0, 3.0, size=k), float(rng.uniform(0.5, 3.0))
    for xi_range in ("paper", "free"):
        fit = fit_tempering(p_sgd, p_b, lambdas, d_s=d_s, m=M, xi_range=xi_range)
        assert fit.objective_global <= fit.objective_untempered
        assert fit.objective <= fit.objective_global
        assert abs(fit.p_tempered.sum() - 1.0) < 1e-12


def test_fixed_scale_modes():
    p_sgd = _sgd_masses(P_B, LAMBDAS, XI, SCALE, D_S)
    fit = fit_tempering(p_sgd, P_B, LAMBDAS, d_s=D_S, m=M, scale="m")
    assert (fit.scale_mode, fit.m) == ("m", M)
    assert fit.scale == pytest.approx(M, rel=1e-12) and 0 < fit.xi <= 1
    assert math.isfinite(fit.objective) and fit.objective_global <= fit.objective_untempered
    # with the true scale fixed, xi alone is recovered
    fit = fit_tempering(p_sgd, P_B, LAMBDAS, d_s=D_S, m=M, scale=SCALE)
    assert (fit.scale_mode, fit.scale) == ("fixed", SCALE)
    assert fit.objective < 1e-8 and fit.xi == pytest.approx(XI, rel=1e-3)


def test_zero_sgd_mass_is_allowed():
    p_sgd = np.array([0.0, 0.3, 0.3, 0.4])
    fit = fit_tempering(p_sgd, P_B, LAMBDAS, d_s=D_S, m=M)
    assert math.isfinite(fit.objective) and fit.p_tempered[0] == 0.0
    assert fit.kl_tempered == math.inf


GOOD = dict(p_sgd=[0.5, 0.5], p_b=[0.4, 0.6], lambdas=[1.0, 2.0], d_s=1.0, m=100)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(p_sgd=[1.0], p_b=[1.0], lambdas=[1.0]), "at least two basins"),
        (dict(lambdas=[1.0, 2.0, 3.0]), "lengths"),
        (dict(p_sgd=[1.5, -0.5]), "negative"),
        (dict(p_b=[0.4, 0.4]), r"normalise with p_b / p_b.sum\(\)"),
        (dict(p_b=[0.0, 1.0]), "pseudo-counts"),
        (dict(d_s=0.0), "d_s"),
        (dict(d_s=math.nan), "d_s"),
        (dict(lambdas=[1.0, math.nan]), "lambdas"),
        (dict(lambdas=[-1.0, 1.0]), "lambdas"),
        (dict(m=0), "m must be finite and > 0"),
        (dict(xi_range="wide"), "xi_range"),
        (dict(scale="auto"), "scale"),
        (dict(scale=-1.0), "scale"),
        (dict(fractal_dim="d"), "fractal_dim"),
        (dict(tempering="exact"), "tempering"),
        (dict(form="entropy"), "form"),
    ],
)
def test_validation(change, match):
    with pytest.raises(ValueError, match=match):
        fit_tempering(**{**GOOD, **change})


def test_permutation_validation():
    masses = {k: GOOD[k] for k in ("p_sgd", "p_b", "lambdas")}
    with pytest.raises(ValueError, match="max_permutations"):
        permutation_test(**masses, max_permutations=1)
    with pytest.raises(ValueError, match="xi_range"):
        permutation_test(**masses, xi_range="wide")


def _free_energy_masses(p_b, lambdas, xi, scale, d_s, m):
    """q_k ∝ exp(-(m/e_k) L_k - lambda_k log(m/e_k)) with p_b,k ∝ exp(-m L_k - lambda_k log m),
    written directly from the basin energies m L_k = -log p_b,k - lambda_k log m (p_b normalised)."""
    e = scale * basin_diffusion_coefficient(lambdas, xi, d_s)
    m_energy = -np.log(p_b) - lambdas * np.log(m)
    log_q = -m_energy / e - lambdas * np.log(m / e)
    q = np.exp(log_q - log_q.max())
    return q / q.sum()


@pytest.mark.parametrize("planted, other", [("free_energy", "power"), ("power", "free_energy")])
def test_each_form_fits_its_own_planted_masses_and_not_the_others(planted, other):
    # K = 4 basins give 3 constraints for the 2 parameters (A, B) of log e_k = A + B lambda_k, so an
    # exact fit is not automatic (at K <= 3 it nearly always is). Noise-free masses: the planted form's
    # objective is 0 up to optimiser tolerance; the other form's is bounded away from 0 (measured
    # 1.3e-3 for power masses under the free-energy form, 0.50 the other way).
    make = {"free_energy": lambda: _free_energy_masses(P_B, LAMBDAS, XI, SCALE, D_S, M),
            "power": lambda: _sgd_masses(P_B, LAMBDAS, XI, SCALE, D_S)}
    p_sgd = make[planted]()
    own = fit_tempering(p_sgd, P_B, LAMBDAS, d_s=D_S, m=M, form=planted)
    assert own.form == planted and own.objective < 1e-8
    assert own.xi == pytest.approx(XI, rel=1e-3) and own.scale == pytest.approx(SCALE, rel=1e-3)
    np.testing.assert_allclose(own.q, p_sgd, atol=1e-7)
    # its tempered masses invert its own prediction: back onto the posterior
    np.testing.assert_allclose(own.p_tempered, P_B, atol=1e-6)
    wrong = fit_tempering(p_sgd, P_B, LAMBDAS, d_s=D_S, m=M, form=other)
    assert wrong.objective > 1e-4 and wrong.kl_tempered > 1e-4


def test_free_energy_form_is_the_power_form_times_the_entropy_factor():
    # q_k ∝ p_b,k^{1/e_k} m^{lambda_k (1/e_k - 1)} e_k^{lambda_k}: the brief's closed form
    e = SCALE * basin_diffusion_coefficient(LAMBDAS, XI, D_S)
    closed = P_B ** (1 / e) * M ** (LAMBDAS * (1 / e - 1)) * e**LAMBDAS
    np.testing.assert_allclose(_free_energy_masses(P_B, LAMBDAS, XI, SCALE, D_S, M), closed / closed.sum(),
                               rtol=1e-10)


def test_warm_start_reaches_the_same_optimum():
    rng = np.random.default_rng(5)
    p_sgd = _sgd_masses(P_B, LAMBDAS, XI, SCALE, D_S)
    cold = fit_tempering(p_sgd, P_B, LAMBDAS, d_s=D_S, m=M)
    nearby = rng.dirichlet(2000 * p_sgd)
    warm = fit_tempering(nearby, P_B, LAMBDAS, d_s=D_S, m=M, start=cold)
    again = fit_tempering(nearby, P_B, LAMBDAS, d_s=D_S, m=M)
    assert warm.objective == pytest.approx(again.objective, rel=1e-6, abs=1e-10)
