"""Tests of fractalbayes.diffusion against processes with known diffusion exponents.

Every tolerance is derived from the Monte Carlo error of the estimate; where the estimate is
compared with an exact finite-time value the only slack is that error. SE_boot below is the
chain-bootstrap standard error that the library reports, SE = (ci_high - ci_low) / (2 * 1.96)
for the default 95 % interval.
"""

import functools
import tracemalloc
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import scipy.linalg
from scipy.special import erf, erfc

from fractalbayes.slt import diffusion as fd
from fractalbayes.slt.diffusion.independent import _MAX_DF_POINTS, _covering_counts
from fractalbayes.slt.diffusion.fits import _log_thin

Z95 = 1.959964


def se(ci: tuple[float, float]) -> float:
    return (ci[1] - ci[0]) / (2 * Z95)


def geometric_steps(t_max: float, n: int) -> np.ndarray:
    return np.unique(np.r_[0, np.geomspace(1, t_max, n).astype(int)])


def random_walk_at(steps: np.ndarray, chains: int, dim: int, seed: int) -> np.ndarray:
    """Gaussian random walk (unit-variance steps) observed at `steps`, exactly: the increment
    between recorded steps s < s' is N(0, (s' - s) I)."""
    rng = np.random.default_rng(seed)
    inc = rng.standard_normal((chains, steps.size - 1, dim)) * np.sqrt(np.diff(steps))[:, None]
    return np.concatenate([np.zeros((chains, 1, dim)), np.cumsum(inc, axis=1)], axis=1)


# ------------------------------------------------------------------------------------------
# Analytic controls
# ------------------------------------------------------------------------------------------
def test_brownian_msd_exponent_is_one():
    steps = geometric_steps(1e4, 60)
    result = fd.analyze(random_walk_at(steps, chains=200, dim=10, seed=0), steps)
    # E R(t) = sqrt(t) E||N(0, I_10)|| exactly, so log E R has slope 1/2 at every t; the log of a
    # 200-chain mean has a t-independent bias -CV^2/(2*200), no slope bias. Per-lag relative
    # error CV/sqrt(200) = 0.22/14 = 1.6 % (CV of chi_10 ~ 1/sqrt(20)) over ln(1e4) = 9.2 gives
    # a slope SE ~ 0.003, an MSD-exponent SE ~ 0.006: the 0.05 is > 4 SE, checked here.
    se_msd = 2 * se(result.slope_ci)
    assert 4 * se_msd < 0.05
    assert abs(result.msd_exponent - 1.0) < 0.05
    # The bootstrap interval is honest: the exact slope lies within 4 of its SEs.
    assert abs(result.slope - 0.5) < 4 * se(result.slope_ci)
    assert result.d_walk == pytest.approx(2.0, abs=0.1)


def test_ballistic_drift_msd_exponent_is_two():
    steps = geometric_steps(1e5, 40)
    velocity = np.random.default_rng(1).standard_normal((8, 1, 5))
    result = fd.analyze(velocity * steps[None, :, None], steps)
    # R = |v| t exactly: no Monte Carlo error, only rounding.
    assert result.msd_exponent == pytest.approx(2.0, abs=1e-9)
    assert result.r2 == pytest.approx(1.0, abs=1e-12)
    assert result.preferred_model == "power_law"


@functools.cache
def _ou_simulation():
    """Constant-step SGD on L(w) = w^T A w / 2 with gradient noise N(0, C), started in its
    stationary law N(0, S): w <- w - eta (A w + noise) = M w - eta noise, M = I - eta A."""
    dim, eta, chains, n_steps = 3, 0.05, 1000, 2000
    a = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    c = np.array([[1.0, 0.4, 0.0], [0.4, 2.0, 0.0], [0.0, 0.0, 0.5]])
    m = np.eye(dim) - eta * a
    s = scipy.linalg.solve_discrete_lyapunov(m, eta**2 * c)  # S = M S M^T + eta^2 C
    key_init, key_noise = jax.random.split(jax.random.key(2))
    chol_s, chol_c = np.linalg.cholesky(s), np.linalg.cholesky(c)
    w0 = jax.random.normal(key_init, (chains, dim)) @ chol_s.T

    def step(w, key):
        noise = jax.random.normal(key, (chains, dim)) @ chol_c.T
        w = w - eta * (w @ a.T + noise)
        return w, w

    _, path = jax.lax.scan(step, w0, jax.random.split(key_noise, n_steps))
    path = np.asarray(path).transpose(1, 0, 2)  # (chains, steps, dim)
    positions = np.concatenate([np.asarray(w0)[:, None], path], axis=1)
    return positions, m, s


def test_ornstein_uhlenbeck_saturates_at_lyapunov_covariance():
    positions, m, s = _ou_simulation()
    steps = geometric_steps(positions.shape[1] - 1, 50)
    result = fd.analyze(positions[:, steps], steps)
    chains = positions.shape[0]
    # Stationary Gaussian chain: w_{t0+t} - w_{t0} ~ N(0, Sigma_t), Sigma_t = 2S - M^t S - S M^tT,
    # so E R^2 = tr Sigma_t and Var R^2 = 2 tr Sigma_t^2; the chain mean has SE
    # sqrt(2 tr Sigma_t^2 / chains). 5 SE per lag: family-wise false alarm < 50 * 6e-7.
    for lag, msd in zip(result.lags, result.msd):
        mt_s = np.linalg.matrix_power(m, int(lag)) @ s
        sigma = 2 * s - mt_s - mt_s.T
        assert abs(msd - np.trace(sigma)) < 5 * np.sqrt(2 * np.trace(sigma @ sigma) / chains)
    # Plateau: from lag 500, > 10 relaxation times 1/(eta lambda_min(A)) = 47 steps, the
    # remaining term 2 tr(M^t S) is < 1e-4 of 2 tr S, far below the Monte Carlo error.
    # The mean of correlated lag estimates has variance <= the largest single-lag variance,
    # 2 tr (2S)^2 / chains; the delta method carries it to sqrt(MSD): SE / (2 sqrt(MSD)).
    late = result.lags >= 500
    plateau = np.sqrt(result.msd[late].mean())
    se_plateau = np.sqrt(8 * np.trace(s @ s) / chains) / (2 * plateau)
    assert plateau == pytest.approx(np.sqrt(2 * np.trace(s)), abs=4 * se_plateau)
    # Saturation in the fit: on the plateau the displacement slope is 0 within 4 bootstrap SEs.
    flat = fd.analyze(positions[:, steps], steps, window=(500, 2000))
    assert abs(flat.slope) < 4 * se(flat.slope_ci)


# ------------------------------------------------------------------------------------------
# Continuous-time random walk (Metzler & Klafter 2000) and the Alexander-Orbach comparison
# ------------------------------------------------------------------------------------------
CTRW_SCALE = 0.01
CTRW_STEPS = geometric_steps(1e4, 50)


@functools.cache
def _ctrw(walkers: int = 4000, seed: int = 3, n_jumps: int = 7000) -> np.ndarray:
    """1-D CTRW with unit Gaussian jumps and Levy waiting times tau = c / Z^2: psi(t) ~ t^{-3/2},
    alpha = 1/2. The Levy law is 1/2-stable, so the n-th renewal time is n^2 tau in law and
    P(N(t) >= n) = erfc(n sqrt(c / 2t)) exactly. Positions at the recorded steps use
    S_N(t') - S_N(t) ~ sqrt(N(t') - N(t)) N(0, 1)."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(walkers // 500):
        renewals = np.cumsum(CTRW_SCALE / rng.standard_normal((500, n_jumps)) ** 2, axis=1)
        assert np.all(renewals[:, -1] > CTRW_STEPS[-1])  # enough jumps drawn for every walker
        jumps = np.stack([np.searchsorted(row, CTRW_STEPS, side="right") for row in renewals])
        inc = np.sqrt(np.diff(jumps, axis=1, prepend=0)) * rng.standard_normal(jumps.shape)
        parts.append(np.cumsum(inc, axis=1))
    return np.concatenate(parts)[:, :, None]


def _ctrw_exact(t: np.ndarray, xi: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact E R(t) = sqrt(2/pi) E sqrt(N(t)) and P0(t) = sum_n P(N = n) erf(xi / sqrt(2n))."""
    n = np.arange(40000)[:, None]
    at_least = erfc(n * np.sqrt(CTRW_SCALE / (2 * t[None, :])))
    mean_r = np.sqrt(2 / np.pi) * ((np.sqrt(n[1:]) - np.sqrt(n[1:] - 1)) * at_least[1:]).sum(0)
    exactly = at_least - np.vstack([at_least[1:], np.zeros((1, t.size))])
    inside = np.where(n == 0, 1.0, erf(xi / np.sqrt(2 * np.maximum(n, 1))))
    return mean_r, (exactly * inside).sum(0)


def test_ctrw_msd_exponent_is_alpha():
    result = fd.analyze(_ctrw(), CTRW_STEPS, window=(10, 1e4))
    exact_r, _ = _ctrw_exact(result.lags, xi=0.5)
    w = result.fitted
    exact_msd_exponent = 2 * fd.fit_power_law(result.lags[w], exact_r[w]).slope
    se_msd = 2 * se(result.slope_ci)
    # Finite-time bias of the same fit on the exact curve (0.004) plus 4 SE (SE ~ 0.007 with
    # 4000 walkers: Mittag-Leffler spread of N(t)) stays inside the 0.05.
    assert abs(exact_msd_exponent - 0.5) + 4 * se_msd < 0.05
    assert abs(result.msd_exponent - 0.5) < 0.05
    assert abs(result.msd_exponent - exact_msd_exponent) < 4 * se_msd


@pytest.mark.parametrize("process", ["brownian", "ctrw"])
def test_return_statistic_agrees_with_alexander_orbach(process):
    """A 1-D walk has d_f = 1, so Alexander-Orbach predicts d_s = 2 d_f / d_walk = 2 slope
    (analyze with llc=1, paper convention); the return probability P0(t) ~ t^{-d_s/2} measures
    d_s without the slope: Brownian d_s = 1, CTRW d_s = alpha = 1/2."""
    xi = 1.0 if process == "brownian" else 0.5
    if process == "brownian":
        steps = geometric_steps(1e4, 50)
        positions = random_walk_at(steps, chains=20000, dim=1, seed=4)
        window = (100, 1e4)
    else:
        steps, positions, window = CTRW_STEPS, _ctrw(), (10, 1e4)
    result = fd.analyze(positions, steps, window=window, xi=xi, llc=1.0)
    est = result.returns
    if process == "brownian":
        exact_p0 = erf(xi / np.sqrt(2 * est.lags))
    else:
        exact_p0 = _ctrw_exact(est.lags, xi)[1]
    exact_d_s = -2 * fd.fit_power_law(est.lags[est.fitted], exact_p0[est.fitted]).slope
    se_ret, se_ao = se(est.ci), 2 * se(result.slope_ci)
    # The estimator against its exact finite-time value: only Monte Carlo error (4 SE).
    assert abs(est.d_s - exact_d_s) < 4 * se_ret
    # Against the Alexander-Orbach d_s (true value 1 or 1/2 up to the slope's own finite-time
    # bias, < 0.01 here): finite-time bias of P0 plus 4 SE of the difference of two estimates
    # (added as if independent; on one sample both grow with the spread of the walkers, so
    # their positive correlation makes this conservative).
    true_d_s = 1.0 if process == "brownian" else 0.5
    tol = abs(exact_d_s - true_d_s) + 0.01 + 4 * np.hypot(se_ret, se_ao)
    assert abs(est.d_s - result.d_s) < tol
    assert tol < 0.25  # informative: tells d_s = 1/2 (CTRW) from d_s = 1 (Brownian)


def _brownian_run(chains: int = 200, width: int = 10_000, seed: int = 5) -> SimpleNamespace:
    """A Run-like object: geometric checkpoints plus a lag window of every step from 0."""
    dense = np.cumsum(np.random.default_rng(seed).standard_normal((chains, width, 1)), axis=1)
    steps = geometric_steps(width - 1, 40)
    return SimpleNamespace(
        checkpoints=dense[:, steps], checkpoint_steps=steps, lag_window=dense, lag_window_start=0
    )


def test_covering_count_and_time_averaged_msd_of_brownian_run():
    run = _brownian_run()
    result = fd.analyze(run, xi=1.0)
    cover = result.covering
    assert cover.data == "lag_window"
    # Distinct unit cells visited by a 1-D walk ~ range ~ sqrt(8t/pi): d_s = 1. Finite-size
    # bias (the +1 starting cell, cells skipped by steps of size ~ xi) measured with 4000
    # walkers and this fit: +0.023 +- 0.002, bounded by 0.03; with 200 walkers SE_boot ~ 0.009.
    assert abs(cover.d_s - 1.0) < 0.03 + 4 * se(cover.ci)
    # Time-averaged MSD of a Brownian path: E = lag exactly. Relative variance for one chain,
    # n = lag, K = W - n windows (Qian, Sheetz & Elson 1991, their 2-D formula doubled for 1-D):
    # (4 n^2 K + 2 K + n - n^3) / (3 n K^2) (= 2/K at n = 1: K independent chi^2_1 terms).
    # 200 chains, 4 SE, on lags up to W/10.
    lags, msd, width = result.lag_msd.lags, result.lag_msd.msd, run.lag_window.shape[1]
    short = lags <= width // 10
    n, k = lags[short].astype(float), width - lags[short].astype(float)
    rel_se = np.sqrt((4 * n**2 * k + 2 * k + n - n**3) / (3 * n * k**2) / msd.shape[0])
    assert np.all(np.abs(msd.mean(axis=0)[short] / n - 1) < 4 * rel_se)
    assert result.lag_msd.exponent == pytest.approx(1.0, abs=0.05)


def test_covering_counts_on_a_handmade_path():
    path = np.array([[0.1, 0.0], [0.6, 0.0], [0.2, 0.1], [1.2, 0.3], [-0.3, 0.0]])[None]
    # cells (side 0.5, anchored at the first point): (0,0) (1,0) (0,0) (2,0) (-1,0)
    np.testing.assert_array_equal(_covering_counts(path, 0.5), [[1, 2, 2, 3, 4]])
    dense = np.cumsum(np.random.default_rng(6).standard_normal((4, 50, 1)), axis=1)
    assert fd.analyze(dense, np.arange(50)).covering.data == "checkpoints"
    assert fd.analyze(dense[:, ::2], np.arange(0, 50, 2)).covering.data == "unavailable"


def test_log_log_fits_thin_dense_stretches_only():
    grid = geometric_steps(1e5, 200)[1:].astype(float)
    everything = np.ones(grid.size, dtype=bool)
    np.testing.assert_array_equal(_log_thin(grid, everything), everything)
    # A geometric grid with every step of [2000, 2200) merged in (as a Run records a lag window):
    # that stretch spans 0.08 of ln(1e5) = 11.5, so about 0.08 / 11.5 * 256 = 2 of its lags stay.
    merged = np.union1d(grid, np.arange(2000, 2200))
    kept = _log_thin(merged, np.ones(merged.size, dtype=bool))
    assert np.sum(kept & (merged >= 2000) & (merged < 2200)) <= 3
    assert np.all(kept[~np.isin(merged, np.arange(2000, 2200))])


# ------------------------------------------------------------------------------------------
# Two-regime fit
# ------------------------------------------------------------------------------------------
def _broken_power_law(t, early=0.8, late=0.3, crossover=300.0):
    return np.where(t < crossover, (t / crossover) ** early, (t / crossover) ** late)


def test_two_regime_fit_recovers_exact_crossover():
    steps = geometric_steps(1e5, 60)
    direction = np.random.default_rng(7).standard_normal((6, 1, 4))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    result = fd.analyze(direction * _broken_power_law(steps)[None, :, None], steps)
    two = result.two_regime
    # Noise-free: recovered to optimiser precision.
    assert two.early_slope == pytest.approx(0.8, abs=1e-6)
    assert two.late_slope == pytest.approx(0.3, abs=1e-6)
    assert two.crossover == pytest.approx(300.0, rel=1e-5)
    assert two.aic < result.power_law.aic


def test_two_regime_fit_with_noise():
    steps = geometric_steps(1e5, 60)
    rng = np.random.default_rng(8)
    chains, sigma = 50, 0.1
    direction = rng.standard_normal((chains, 1, 4))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    radius = _broken_power_law(steps) * np.exp(sigma * rng.standard_normal((chains, steps.size)))
    two = fd.analyze(direction * radius[:, :, None], steps).two_regime
    # log of the 50-chain mean of exp(sigma eps) has SD ~ sigma/sqrt(50) = 0.014 per lag,
    # independent across lags; OLS per segment: SE(slope) = sd / sqrt(Sxx), SE of a segment's
    # line at x_c = sd sqrt(1/n + (x_c - xbar)^2 / Sxx); the crossover moves by the difference of
    # the two lines at x_c over |s1 - s2|. 4 SE each.
    sd = sigma / np.sqrt(chains)
    x, xc = np.log(steps[1:]), np.log(300.0)
    se_line = []
    for seg, slope, true in ((x < xc, two.early_slope, 0.8), (x >= xc, two.late_slope, 0.3)):
        sxx = np.sum((x[seg] - x[seg].mean()) ** 2)
        se_line.append(sd * np.sqrt(1 / seg.sum() + (xc - x[seg].mean()) ** 2 / sxx))
        assert abs(slope - true) < 4 * sd / np.sqrt(sxx)
    assert abs(np.log(two.crossover) - xc) < 4 * np.hypot(*se_line) / 0.5


# ------------------------------------------------------------------------------------------
# Derived quantities and conventions
# ------------------------------------------------------------------------------------------
# Illustrative (slope, lambda_bar) rows in the range of the paper's Table 1 (late-stage slopes
# 0.32-0.49 for small language models, ~0.002 for fine-tuned vision models). They are an
# arithmetic check of d_s = 2 lambda_bar slope, not the paper's data.
TABLE1_ILLUSTRATIVE = [(0.32, 20.0), (0.41, 35.0), (0.49, 60.0), (0.002, 500.0)]


@pytest.mark.parametrize(("slope", "lam"), TABLE1_ILLUSTRATIVE)
def test_table1_arithmetic(slope, lam):
    steps = geometric_steps(1e5, 30)
    positions = np.ones((3, 1, 2)) * steps[None, :, None] ** slope
    result = fd.analyze(positions, steps, llc=lam, xi=0.5)
    assert result.slope == pytest.approx(slope, abs=1e-9)
    assert result.d_s == pytest.approx(2 * lam * slope, rel=1e-9)
    assert fd.spectral_dimension(slope, lam) == pytest.approx(2 * lam * slope)
    assert result.d_walk == pytest.approx(1 / slope, rel=1e-9)
    assert result.bound_holds  # slope <= 1/2 <=> d_s <= lambda_bar in the paper's convention
    assert result.D_xi == pytest.approx(0.5 ** (2 - 1 / slope), rel=1e-8)
    textbook = fd.analyze(positions, steps, llc=lam, fractal_dim="2lambda")
    assert textbook.d_s == pytest.approx(4 * lam * slope, rel=1e-9)
    # The bound is d_s <= d_f in both conventions: 4 lambda slope <= 2 lambda, i.e. slope <= 1/2.
    assert textbook.bound_holds == (slope <= 0.5)


def test_reference_step_and_llc_time_average():
    steps = geometric_steps(1e4, 40)
    velocity = np.array([3.0, 4.0])
    positions = np.broadcast_to(velocity * steps[:, None], (2, steps.size, 2))
    t0 = int(steps[10])
    llc_steps = np.arange(0, 10_001, 100)
    llc = SimpleNamespace(steps=llc_steps, values=1.0 + llc_steps / 1000)
    result = fd.analyze(positions, steps, t0=t0, window=(100, 5000), llc=llc)
    np.testing.assert_allclose(result.lags, steps[11:] - t0)
    np.testing.assert_allclose(result.radius_mean, 5.0 * result.lags)  # R = |v| (step - t0)
    # lambda(s) = 1 + s/1000 is linear, so its time average over the window steps
    # [t0 + 100, t0 + 5000] (LLC records every 100 steps inside) is the trapezoid-exact mean.
    inside = llc.steps[(llc.steps >= t0 + 100) & (llc.steps <= t0 + 5000)]
    assert result.lambda_bar == pytest.approx(1 + (inside[0] + inside[-1]) / 2000)


def test_without_llc_the_lambda_quantities_are_missing():
    steps = geometric_steps(1e3, 20)
    result = fd.analyze(random_walk_at(steps, 4, 3, seed=9), steps)
    assert result.lambda_bar is None and result.bound_holds is None and np.isnan(result.d_s)
    assert np.isfinite(result.d_walk) and np.isfinite(result.D_xi)
    assert result.to_arviz().attrs["bound"] == "not evaluated (no llc)"


# ------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------
STEPS = geometric_steps(1e3, 20)
X = random_walk_at(STEPS, 2, 3, seed=10)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((X[0], STEPS), {}, "shape \\(chains, K, d\\)"),
        ((X, STEPS[:-1]), {}, "one step per checkpoint"),
        ((X, STEPS[::-1]), {}, "strictly increasing"),
        ((X,), {}, "needs times"),
        ((SimpleNamespace(checkpoints=X, checkpoint_steps=STEPS), STEPS), {}, "times was given"),
        ((X, STEPS), {"t0": 5}, "nearest recorded steps are \\[4.0, 6.0\\]"),
        ((X, STEPS), {"window": (0.5, 100)}, "outside the recorded lags"),
        ((X, STEPS), {"window": (100, 1e5)}, "outside the recorded lags"),
        ((X, STEPS), {"window": (100, 120)}, "at least 3"),
        ((X, STEPS), {"window": (100, 10)}, "t_start < t_end"),
        ((X, STEPS), {"xi": 0.0}, "xi must be a positive"),
        ((X, STEPS), {"fractal_dim": "d"}, "unknown fractal_dim"),
        ((X, STEPS), {"llc": SimpleNamespace(steps=[1e6], values=[1.0])}, "no LLC value"),
    ],
)
def test_invalid_input_is_rejected_with_a_fix(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fd.analyze(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------
def test_table_arviz_and_figures():
    run = _brownian_run(chains=20, width=2000, seed=11)
    llc = SimpleNamespace(steps=np.arange(0, 2000, 50), values=np.linspace(2.0, 3.0, 40))
    result = fd.analyze(run, xi=1.0, llc=llc, window=(10, 1999))
    table = result.table()
    assert list(table.columns[:5]) == ["model", "quantity", "value", "ci_low", "ci_high"]
    assert set(table.model) >= {"power_law", "brownian", "logarithmic", "two_regime", "derived",
                                "covering", "return", "lag_msd"}
    row = table.set_index(["model", "quantity"])
    assert row.loc[("derived", "d_s"), "value"] == pytest.approx(result.d_s)
    assert row.loc[("power_law", "slope"), "ci_low"] == result.slope_ci[0]
    assert (table.fractal_dim == "lambda").all() and (table.window_end == 1999).all()

    tree = result.to_arviz()
    assert tree["displacement"]["R"].shape == result.radius.shape
    assert {"covering", "return", "lag_msd", "llc"} <= set(tree.children)
    assert tree.attrs["power_law_slope"] == pytest.approx(result.slope)
    assert tree.attrs["bound"] in ("held", "violated")

    fig = fd.plot_displacement(result)
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].lines) > 4
    assert fd.plot_llc(result).axes[0].lines
    with pytest.raises(ValueError, match="no LLC series"):
        fd.plot_llc(fd.analyze(run, xi=1.0, llc=2.0))


# ------------------------------------------------------------------------------------------
# Memory: the checkpoints are never copied
# ------------------------------------------------------------------------------------------
def test_analysis_never_copies_the_checkpoints(tmp_path):
    chains, k, dim = 64, 200, 2000
    steps = np.r_[0, np.round(np.geomspace(100, 1e5, k - 1))].astype(int)
    stored = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (chains, k, dim))
    rng = np.random.default_rng(12)
    for c in range(chains):
        stored[c] = np.cumsum(rng.standard_normal((k, dim), dtype=np.float32), axis=0)
    stored.flush()
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    tracemalloc.start()
    result = fd.analyze(mapped, steps, n_boot=200)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # 102 MB of checkpoints; the analysis allocates well under a fifth of that, plus the fixed
    # workspace of the correlation dimension over at most _MAX_DF_POINTS = 2048 points, whatever
    # the checkpoints: the float64 distance matrix (8 bytes per entry), the cross-chain distances
    # extracted for their median (half the entries: 4), boolean masks (1 each, up to 4): 16 bytes
    # per entry, 67 MB.
    workspace = 16 * _MAX_DF_POINTS**2
    assert peak < mapped.nbytes / 5 + workspace
    in_memory = fd.analyze(np.asarray(mapped), steps, n_boot=200)
    np.testing.assert_allclose(result.radius, in_memory.radius)
