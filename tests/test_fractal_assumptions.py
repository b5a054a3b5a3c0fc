"""The fractal sampler's constants checked on planted answers (issue 10, item 5; SGHMC's momentum).

gamma_eff from the measured gradient-noise covariance, validated on a linear-Gaussian model where
SGD's stationary covariance is known (discrete Lyapunov); the prior power of the basins (SGD's MAP
objective at n beta_k is rho^(n beta_k / n)); draws labelled by assignment; SGHMC's momentum law.
"""

import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.linalg import solve_discrete_lyapunov

import fractalbayes as fb
from fractalbayes.methods.fractal import sampler as fractal

SIGMA, PRIOR_SCALE, N, B, ETA = 0.5, 1.0, 1000, 10, 0.01


def linear(x, y=None):
    """y_i ~ N(x_i . w, SIGMA^2), w ~ N(0, PRIOR_SCALE^2 I)."""
    w = numpyro.sample("w", dist.Normal(0, PRIOR_SCALE).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, SIGMA), obs=y)


@pytest.fixture(scope="module")
def regression():
    # Whitened design (X^T X / n = I exactly) and well-specified noise: the NLL Hessian
    # A = X^T X / (n SIGMA^2) = 4 I and the per-example gradient covariance C ~ I / SIGMA^2 ~ 4 I
    # (eigenvalues 3.75 and 4.19 in this sample) are isotropic, so SGD's OU covariance
    # S ~ eta A^-1 C / 2B ~ I eta / 2B has the tempered posterior's shape (n beta A)^-1, at
    # n beta = 2 B / (eta c), c = tr C / d ~ 4: the "sgd" rule's C = I is off by that factor.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 2))
    x = (x @ np.linalg.inv(np.linalg.cholesky(x.T @ x / N)).T).astype(np.float32)
    y = (x @ np.array([0.5, -0.3]) + SIGMA * rng.normal(size=N)).astype(np.float32)
    return x, y, fb.from_numpyro(linear, x, y, batch_size=B)


def exact_moments(x, y, w):
    """(A, C) of the NLL at w: Hessian X^T X / (n SIGMA^2), per-example gradient covariance (ddof 0)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    grads = -x * ((y - x @ w) / SIGMA**2)[:, None]
    return x.T @ x / (len(x) * SIGMA**2), np.cov(grads.T, ddof=0)


def test_gradient_noise_trace_is_the_per_example_covariance_trace(regression):
    x, y, target = regression
    w = np.array([0.4, -0.2])
    _, c = exact_moments(x, y, w)
    # float32 per-example gradients summed over 400 rows: ~1e-6 relative
    assert fractal.gradient_noise_trace(target, w) == pytest.approx(np.trace(c), rel=1e-4)


SGD = {"num_chains": 40, "burn_in": 2000, "num_samples": 50, "thin": 20, "learning_rate": ETA}


@pytest.fixture(scope="module")
def fractal_and_sgd(regression):
    _, _, target = regression
    # xi = 1 makes D_k = 1 whatever lambda_k and d_s: n beta_k = gamma_eff,k exactly, and lambda_k do
    # not enter (the LLC at n beta = 20, below SGD's ~500, only has to be >= 0). NUTS samples each
    # basin (full batch: SGLD's own minibatch noise would add h nbeta^2 c / 2B ~ 1.3x the injected
    # variance at h = 2e-5). localization 1e-3 is ~1e-6 of the precision n beta a ~ 2000.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = fb.sample(target, "fractal", num_chains=4, num_samples=1000, burn_in=300, seed=0, kernel="nuts",
                        d_s=1.0, xi=1.0, localization=1e-3, sgd=SGD,
                        llc={"nbeta": 20.0, "num_draws": 200, "burn_in": 100},
                        basins={"feature": "weights", "k_range": (2, 2)})
    sgd = fb.sample(target, "sgd", seed=0, objective="map", **SGD)
    return run, sgd


def map_point(x, y):
    """The minimiser of SGD's MAP objective L_n - log rho / n (ridge regression)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    return np.linalg.solve(x.T @ x + SIGMA**2 / PRIOR_SCALE**2 * np.eye(2), x.T @ y)


def test_measured_gamma_eff_matches_sgds_discrete_lyapunov_covariance(regression):
    x, y, target = regression
    centre = map_point(x, y)
    gamma, record = fractal._gamma_eff("measured", target, {"optimizer": "sgd", "learning_rate": ETA, "momentum": 0.0},
                                       centre[None])
    nbeta = float(gamma[0])  # D_k = 1 (xi = 1): n beta_k = gamma_eff,k
    power = float(fractal._prior_powers("objective", gamma, target, {"objective": "map"})[0])
    a, c = exact_moments(x, y, centre)
    assert record["noise_trace"][0] == pytest.approx(np.trace(c), rel=1e-4)
    hessian = a + np.eye(2) / (N * PRIOR_SCALE**2)  # of SGD's MAP objective L - log rho / n
    # SGD: w' - w* = (I - eta H)(w - w*) + eta xi, Cov xi = C / B (batches drawn with replacement)
    s = solve_discrete_lyapunov(np.eye(2) - ETA * hessian, ETA**2 * c / B)
    # the basin's tempered posterior rho^p exp(-nbeta L) with p = nbeta / n has precision nbeta H
    tempered = np.linalg.inv(nbeta * a + power * np.eye(2) / PRIOR_SCALE**2)
    # deterministic: the neglected eta H S H term (eta a / 2 ~ 2 %) and C's anisotropy (eigenvalues
    # 3.75 vs 4.19: ~5 %) are the whole difference (measured 5.8 %); the bound is 15 %
    assert np.linalg.norm(tempered - s) / np.linalg.norm(s) < 0.15
    # the C = I rule ("sgd", Mandt et al.'s unit noise) is off by the factor c = tr C / d ~ 3-4
    rule_sgd = np.linalg.inv(2 * B / ETA * hessian)
    assert np.trace(s) / np.trace(rule_sgd) > 2.5


@pytest.mark.slow
def test_fractal_run_records_measured_gamma_and_the_objectives_prior_power(fractal_and_sgd):
    run, _ = fractal_and_sgd
    basins = run.groups["basins"]
    assert run.config.method["gamma_eff"]["rule"] == "measured"
    np.testing.assert_allclose(basins["gamma_eff"].values, run.config.method["gamma_eff"]["values"])
    np.testing.assert_allclose(basins["nbeta"].values, basins["gamma_eff"].values / basins["D"].values)
    np.testing.assert_allclose(basins["prior_power"].values, basins["nbeta"].values / N)


@pytest.mark.slow
def test_fractal_draws_have_sgds_stationary_covariance(fractal_and_sgd):
    run, sgd = fractal_and_sgd
    ours = np.cov(run.positions.reshape(-1, 2).T)
    theirs = np.cov(sgd.positions.reshape(-1, 2).T)
    # MC error of a covariance from ESS draws: relative sd ~ sqrt(2 / ESS) per variance. NUTS's 4000
    # draws on a 2-D Gaussian have ESS ~ 3000 (3 %); SGD's 40 x 50 draws, 20 steps apart with
    # per-step contraction 1 - eta a ~ 0.96 (lag-1 correlation 0.44), have ESS ~ 2000 x 0.56 / 1.44
    # ~ 780 (5 %). The Frobenius relative error of the 2 x 2 difference has sd ~ 6 %; with the ~6 %
    # deterministic gap (C's anisotropy, above) the 15 % is 1.5 sd beyond it (measured 9.7 %).
    # The "sgd" rule would be off by ~300 %.
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 0.15


@pytest.mark.slow
def test_draws_are_labelled_by_assignment(fractal_and_sgd):
    run, _ = fractal_and_sgd
    start, assigned = run.stats["basin_start"], run.stats["basin"]
    assert start.shape == assigned.shape == run.positions.shape[:2]
    # "weights" features: the nearest k-means centroid of each draw, recomputed by hand
    from sklearn.metrics import pairwise_distances

    basins = run.groups["basins"]
    assert run.config.method["labels"].startswith("assignment")
    # evidence weights (the default) come from the free energies, not from SGD's masses
    free = basins["free_energy"].values
    boltzmann = np.exp(-(free - free.min()))
    np.testing.assert_allclose(basins["weight"].values, boltzmann / boltzmann.sum(), rtol=1e-10)
    assert run.config.method["weights"] == "evidence"
    # both basins of one Gaussian split it in halves: assignment is not the start label
    assert set(np.unique(assigned)) == {0, 1} and np.any(assigned != start)
    centroids = np.stack([run.positions[assigned == j].mean(0) for j in (0, 1)])
    nearest = pairwise_distances(run.positions.reshape(-1, 2), centroids).argmin(1)
    # k-means centroids of the SGD endpoints vs the draws' own class means: the halves agree on
    # all but the draws near the dividing line (a few %)
    assert np.mean(nearest == assigned.ravel()) > 0.9


def test_prior_power_rules():
    nbetas = np.array([50.0, 200.0])

    class Stub:
        n_data = 100

    np.testing.assert_allclose(fractal._prior_powers("objective", nbetas, Stub, {"objective": "map"}), [0.5, 2.0])
    np.testing.assert_allclose(fractal._prior_powers("objective", nbetas, Stub, {"objective": "nll"}), [0.0, 0.0])
    np.testing.assert_allclose(fractal._prior_powers(1.0, nbetas, Stub, {"objective": "map"}), [1.0, 1.0])


def test_gamma_eff_rules_refuse_adam(regression):
    _, _, target = regression
    with pytest.raises(fb.ModelError, match="plain SGD"):
        fractal._gamma_eff("measured", target, {"optimizer": "adam", "learning_rate": 0.01, "momentum": 0.0},
                           np.zeros((2, 2)))
    values, record = fractal._gamma_eff("sgd", target, {"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.5},
                                        np.zeros((2, 2)))
    np.testing.assert_allclose(values, 2 * B / (0.01 / 0.5))  # heavy-ball: eta / (1 - mu)
    assert record["rule"] == "sgd"


@pytest.mark.parametrize("sampler", [pytest.param("nuts", marks=pytest.mark.slow), "sgld"])
def test_prior_power_gives_the_closed_form_tempered_covariance(regression, sampler):
    x, _, target = regression
    a = x.astype(np.float64).T @ x / (N * SIGMA**2)
    nbeta = 50.0
    for power in (0.0, 3.0):
        options = {"step_size": 1e-4} if sampler == "sgld" else {}
        # SGLD's minibatch noise: h nbeta^2 c / 2B = 1e-4 * 2500 * 4 / 20 = 5 % extra variance; its Euler
        # bias h a nbeta / 2 = 1 %: compare SGLD at 1.07 x the exact covariance.
        inflation = 1.07 if sampler == "sgld" else 1.0
        run = fb.sample(target, sampler, num_chains=8, num_samples=1000, burn_in=500, thin=2, seed=1, nbeta=nbeta,
                        prior_power=power, progress=False, **options)
        exact = np.linalg.inv(nbeta * a + power * np.eye(2) / PRIOR_SCALE**2)
        trace = np.trace(np.cov(run.positions.reshape(-1, 2).T))
        # the prior moves the variance by power / (nbeta a) ~ 1.5 % per unit power: power 3 vs 0 is ~14 %.
        # 8000 draws with ESS >= 2000: sd of a trace estimate ~ sqrt(2 / 2000) / sqrt(2) ~ 2.2 %; 3 sd
        assert trace / (inflation * np.trace(exact)) == pytest.approx(1.0, abs=0.066)
    run1 = fb.sample(target, sampler, num_chains=2, num_samples=10, burn_in=10, seed=1, nbeta=nbeta, prior_power=1.0,
                     progress=False, **({"step_size": 1e-4} if sampler == "sgld" else {}))
    assert run1.config.options["prior_power"] == 1.0


def test_sghmc_momentum_follows_the_temperature(regression):
    _, _, target = regression
    # Full batch: SGHMC at temperature T samples pi^(1/T), covariance T Sigma. Its discretisation
    # bias (here ~10 %) does not depend on T, so Var(T = 2) / Var(T = 0.5) = 4. BlackJAX's N(0, I)
    # momentum refresh (every 10 steps, friction alpha h = 1e-4 negligible) pins the kinetic energy
    # at T = 1 and gives a ratio near 1. 8 x 2000 draws thinned by 5: ESS ~ 8000 per run, sd of a
    # trace ratio ~ sqrt(2 * 2 / 8000 / 2) ~ 1.6 %; 4 sd ~ 6.5 %.
    full = target.with_batch_size(None)
    traces = {}
    for temperature in (0.5, 2.0):
        run = fb.sample(full, "sghmc", num_chains=8, num_samples=2000, burn_in=500, thin=5, seed=0, nbeta=100.0,
                        step_size=3e-3, temperature=temperature, progress=False)
        traces[temperature] = np.trace(np.cov(run.positions.reshape(-1, 2).T))
    assert traces[2.0] / traces[0.5] == pytest.approx(4.0, rel=0.065)
