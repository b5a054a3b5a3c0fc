"""Independent dimensions and the regime of slt.diffusion on planted walks with known answers.

Tolerances: SE = chain-bootstrap standard error the library reports, (ci_high - ci_low) / (2 * 1.96)
for the 95 % interval; 4 SE leaves a two-sided false-alarm rate of 6e-5 per check. Where an
estimator has a finite-size bias (a finite window, a lattice, a finite range of scales), the bias
was measured over seeds by the calibration study "dimensions" (docs/calibration.md) and is added
as BIAS_* below, rounded up; the study's seed-to-seed spread is the honest check of 4 SE.
"""

import functools
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from fractalbayes.errors import ModelError
from fractalbayes.methods.fractal.sampler import measured_d_s
from fractalbayes.slt import diffusion as fd
from fractalbayes.slt import walks

Z95 = 1.959964


def se(ci: tuple[float, float]) -> float:
    return (ci[1] - ci[0]) / (2 * Z95)


def geometric_steps(t_max: float, n: int) -> np.ndarray:
    return np.unique(np.r_[0, np.geomspace(1, t_max, n).astype(int)])


STEPS = geometric_steps(1e4, 50)


@functools.cache
def brownian(dim: int, chains: int = 2000) -> fd.DiffusionResult:
    return fd.analyze(walks.brownian(chains, STEPS, dim, seed=dim), STEPS, xi=1.0, n_boot=200)


@functools.cache
def sierpinski() -> fd.DiffusionResult:
    x = walks.sierpinski(500, 4096, generation=9, seed=1)
    steps = geometric_steps(4096, 60)
    run = SimpleNamespace(checkpoints=x[:, steps], checkpoint_steps=steps, lag_window=x[:, :2001],
                          lag_window_start=0)
    return fd.analyze(run, xi=1.5, window=(10, 4096), n_boot=200)


# ------------------------------------------------------------------------------------------
# Brownian motion in several d: d_s = d_f = d, d_walk = 2
# ------------------------------------------------------------------------------------------
# Truncated-Takens bias on a Gaussian cloud (r_hi = 0.25 x the median distance, the density's
# curvature inside the range), measured in the study over 6 seeds: -0.006 (sd 0.002, d=1),
# -0.033 (sd 0.007, d=2), -0.090 (sd 0.014, d=3), -0.27 (d=5).
BIAS_DF_BROWNIAN = {1: 0.03, 2: 0.08, 3: 0.15}


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_brownian_fractal_dimension_is_d(dim):
    result = brownian(dim)
    assert result.regime == "brownian"
    assert abs(result.d_f - dim) < BIAS_DF_BROWNIAN[dim] + 4 * se(result.correlation.ci)
    # Alexander-Orbach with three separate measurements: 2 d_f / d_walk = 2 d_f slope = d.
    assert abs(result.d_s_alexander_orbach - dim) < BIAS_DF_BROWNIAN[dim] + 4 * se(result.correlation.ci) + 0.05


@pytest.mark.parametrize("dim", [1, 2])
def test_brownian_return_probability_gives_d(dim):
    result = brownian(dim)
    est = result.returns
    assert result.d_s_independent_method in ("return", "covering") and est.note == ""
    # Exact finite-time P0(t) = P(chi^2_d < xi^2 / t) fitted on the same lags: only Monte Carlo
    # error separates the two (4 SE).
    exact = stats.chi2.cdf(1.0 / est.lags, dim)
    exact_d_s = -2 * fd.fit_power_law(est.lags[est.fitted], exact[est.fitted]).slope
    assert abs(est.d_s - exact_d_s) < 4 * se(est.ci)
    # Against the truth: the exact curve's own finite-time bias (rms >= 3 xi keeps it small) + 4 SE.
    assert abs(est.d_s - dim) < abs(exact_d_s - dim) + 4 * se(est.ci)
    assert abs(exact_d_s - dim) < 0.1 * dim


def test_high_dimensional_walks_are_not_capped_and_say_why():
    """The projected estimates returned ~2 proj_dim slope = 3 whatever d (2.74 at d = 20). Now
    d = 5 gives d_f near 5, and d = 20 gives NaN with the reasons instead of a capped number."""
    five = brownian(5)
    assert five.d_f > 4.0  # above every cap of a 3-D projection; bias in the study: -0.25
    high = brownian(20, chains=1000)
    assert np.isnan(high.d_s_independent) and np.isnan(high.d_f)
    notes = " ".join(high.notes)
    assert "returns are too rare" in notes and "covering: needs consecutive steps" in notes
    assert "d_f:" in notes
    assert high.table().set_index(["model", "quantity"]).loc[("measured", "d_f"), "value"] != 2.74


# ------------------------------------------------------------------------------------------
# Sierpinski gasket: d_walk = log 5 / log 2, d_f = log 3 / log 2, d_s = 2 log 3 / log 5
# ------------------------------------------------------------------------------------------
# Finite-size biases over 6 seeds (study, 1000 walkers): d_walk +0.009 (sd 0.021); covering d_s
# -0.074 (sd 0.005: the start cell, cells of 1.5 lattice units); d_f -0.25 (sd 0.10: a range of
# 1.5-4 lattice units, discrete distances); return d_s -0.10 (sd 0.06: log-periodic decay).
# Bounded by the values below.
BIAS_SIERPINSKI = {"d_walk": 0.05, "covering": 0.10, "d_f": 0.30, "return": 0.12}


def test_sierpinski_gasket_dimensions():
    result = sierpinski()
    truth = walks.SIERPINSKI
    lo, hi = result.slope_ci
    se_d_walk = se((1 / hi, 1 / lo))
    assert abs(result.d_walk - truth["d_walk"]) < BIAS_SIERPINSKI["d_walk"] + 4 * se_d_walk
    cover = result.covering
    assert cover.data == "lag_window"
    assert abs(cover.d_s - truth["d_s"]) < BIAS_SIERPINSKI["covering"] + 4 * se(cover.ci)
    assert abs(result.d_f - truth["d_f"]) < BIAS_SIERPINSKI["d_f"] + 4 * se(result.correlation.ci)
    # Return probability from the corner: the exact P0 (master equation on the same graph)
    # decays with local exponents 1.32-1.41 around 1.365 (log-periodic), so a fit over a finite
    # range of lags is biased by up to the oscillation (study: -0.10).
    ret = result.returns
    assert abs(ret.d_s - truth["d_s"]) < BIAS_SIERPINSKI["return"] + 4 * se(ret.ci)
    assert result.d_s_independent_method == "return"
    # Alexander-Orbach, three separate measurements: 2 d_f / d_walk against the return d_s.
    tol = BIAS_SIERPINSKI["d_f"] + BIAS_SIERPINSKI["return"] + 4 * np.hypot(se(ret.ci), se(result.correlation.ci))
    assert abs(result.d_s_alexander_orbach - ret.d_s) < tol
    # Regime: sub-diffusive, and the time-averaged MSD agrees with the ensemble: a medium.
    assert result.regime == "subdiffusive" and result.mechanism == "medium"


def test_comb_return_probability_along_the_backbone():
    """Comb: P0 ~ t^(-3/4) at the backbone origin (d_s = 3/2), while R(t) ~ t^(1/2) is set by the
    teeth, so Alexander-Orbach with the cloud's d_f = 2 does not hold here (only d_s is checked)."""
    x = walks.comb(1000, 4096, seed=2)
    result = fd.analyze(x, np.arange(x.shape[1]), xi=1.5, window=(10, 4096), n_boot=200)
    ret = result.returns
    # Bias over 6 seeds (study): +0.003 (sd 0.06); bounded by 0.05.
    assert abs(ret.d_s - 1.5) < 0.05 + 4 * se(ret.ci)
    assert result.d_s_independent_method == "return"  # the covering is biased here (1.11)


# ------------------------------------------------------------------------------------------
# Regime before dimension
# ------------------------------------------------------------------------------------------
def test_ctrw_is_subdiffusive_by_trapping():
    x = walks.ctrw(250, 10_000, alpha=0.5, seed=3)
    steps = geometric_steps(10_000, 60)
    run = SimpleNamespace(checkpoints=x[:, steps], checkpoint_steps=steps, lag_window=x[:, :2001],
                          lag_window_start=0)
    result = fd.analyze(run, xi=0.5, window=(10, 10_000), n_boot=200)
    assert result.regime == "subdiffusive" and result.mechanism == "trapping"
    # Time-averaged MSD ~ lag^1 (weak ergodicity breaking) against the ensemble ~ t^(1/2).
    assert result.lag_msd.exponent > 0.85 and result.msd_exponent < 0.7
    without_window = fd.analyze(x[:, steps], steps, xi=0.5, window=(10, 10_000), n_boot=200)
    assert without_window.mechanism == "undetermined"


@pytest.mark.parametrize("end", [200, 20_000])
def test_ornstein_uhlenbeck_is_confined_whatever_the_window(end):
    """The issue's control: an OU slope moves with the window (0.37 over 1-200 lags, 0.14 over
    1-20000), so no d_s may be read from it; both windows read "confined"."""
    # Over lags 1-200 (4 relaxation times) the plateau beats a broken power law by > 10 AIC with
    # 1000 chains (3 of 3 seeds; with 200-500 chains in 3 of 6: fewer chains read "subdiffusive").
    steps = geometric_steps(20_000, 80)
    x = walks.ou(1000, steps, 3, rate=0.02, seed=4)
    result = fd.analyze(x, steps, window=(1, end), n_boot=200)
    assert result.regime == "confined"
    assert result.regime_fit.saturating.tau == pytest.approx(1 / 0.02, rel=0.5)
    assert any("saturates" in note for note in result.notes)


def test_fractal_sampler_does_not_read_d_s_from_a_confined_window():
    steps = geometric_steps(20_000, 80)
    x = walks.ou(200, steps, 3, rate=0.02, seed=5)
    run = SimpleNamespace(checkpoints=x, checkpoint_steps=steps, config=SimpleNamespace(checkpoint_start=0))
    with pytest.warns(UserWarning, match="confined"):
        d_s, record = measured_d_s(run, 1.5, xi=0.5, fractal_dim="lambda")
    # Below the relaxation time the OU walk is Brownian (h = 1/2): d_s = 2 lambda h = lambda.
    assert record["regime"] == "confined" and record["source"].startswith("early exponent")
    assert d_s == pytest.approx(1.5, rel=0.1)
    assert record["d_s_slope"] < 0.5  # what the window slope would have given
    flat = np.broadcast_to(np.linspace(0, 1, 3)[None, None], (4, steps.size, 3)).copy()
    flat += 1e-9 * np.random.default_rng(0).standard_normal(flat.shape)
    frozen = SimpleNamespace(checkpoints=flat, checkpoint_steps=steps, config=SimpleNamespace(checkpoint_start=0))
    with warnings.catch_warnings(), pytest.raises(ModelError, match="pass d_s="):
        warnings.simplefilter("ignore")
        measured_d_s(frozen, 1.5, xi=0.5, fractal_dim="lambda")


def test_brownian_walk_lets_the_sampler_read_the_slope():
    run = SimpleNamespace(checkpoints=walks.brownian(200, STEPS, 3, seed=6), checkpoint_steps=STEPS,
                          config=SimpleNamespace(checkpoint_start=0))
    d_s, record = measured_d_s(run, 2.0, xi=0.5, fractal_dim="2lambda")
    assert record["source"] == "slope" and record["regime"] == "brownian"
    assert d_s == pytest.approx(4 * 2.0 * record["slope"])


def test_table_reports_both_conventions_and_the_bound_is_d_s_at_most_d_f():
    x = walks.brownian(20, STEPS, 2, seed=7)
    result = fd.analyze(x, STEPS, llc=2.0, fractal_dim="2lambda", n_boot=50)
    row = result.table().set_index(["model", "quantity"])["value"]
    slope = result.slope
    assert row[("derived", "d_f_paper")] == 2.0 and row[("derived", "d_f_textbook")] == 4.0
    assert row[("derived", "d_s_paper")] == pytest.approx(4.0 * slope)
    assert row[("derived", "d_s_textbook")] == pytest.approx(8.0 * slope) == pytest.approx(result.d_s)
    # d_s <= d_f with d_f = 2 lambda_bar: 8 slope <= 4, i.e. slope <= 1/2 (not the old slope <= 1/4).
    assert result.bound_holds == (8.0 * slope <= 4.0)
    assert row[("measured", "d_f")] == pytest.approx(result.d_f, nan_ok=True)
    assert result.to_arviz().attrs["regime"] == result.regime
