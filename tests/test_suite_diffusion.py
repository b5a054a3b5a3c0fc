"""The suite's diffusion analysis records the regime, the independent dimensions with their
chain-bootstrap intervals, and the estimators' notes, exactly as diffusion.analyze returns them."""

from __future__ import annotations

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.slt import diffusion
from fractalbayes.suite import analyses


@pytest.fixture(scope="module")
def confined():
    """SGLD at its stationary law on a conjugate linear regression: an Ornstein-Uhlenbeck process
    (no fractal), recorded on a geometric grid and step by step in a lag window."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5]) + rng.normal(size=50)).astype(np.float32)
    target = fb.from_numpyro(fb.models.linear_regression, x, y)
    run = fb.sample(target, "sgld", num_chains=16, num_samples=200, burn_in=2000, thin=50, step_size=1e-2,
                    num_checkpoints=60, checkpoint_start=2000, record_window=(2000, 500), seed=1, progress=False)
    ctx = analyses.Context(cell_id="c", seed=0, config={}, dataset=None, target=target, runs={"sgld": run},
                           llc={"sgld": 1.0})
    options = analyses.ANALYSES["diffusion"].defaults | {"n_boot": 50}
    return run, analyses.weight_diffusion(ctx, options)["metrics"]["sgld"]


def test_an_ornstein_uhlenbeck_control_is_recorded_as_confined(confined):
    _, metrics = confined
    assert metrics["regime"] == "confined", metrics["diffusion_notes"]
    assert "regime:" in metrics["diffusion_notes"]


def test_metrics_are_the_results_own_numbers(confined):
    run, metrics = confined
    result = diffusion.analyze(run, t0=run.config.checkpoint_start, llc=1.0, n_boot=50, seed=0)
    expected = {
        "d_s_independent": result.d_s_independent, "d_s_independent_ci_low": result.d_s_independent_ci[0],
        "d_s_independent_ci_high": result.d_s_independent_ci[1], "d_f": result.d_f,
        "d_f_ci_low": result.correlation.ci[0], "d_f_ci_high": result.correlation.ci[1],
        "d_s_alexander_orbach": result.d_s_alexander_orbach,
        "d_f_implied": result.d_s_independent * result.d_walk / 2,
    }
    for key, value in expected.items():
        assert np.isclose(metrics[key], value, equal_nan=True), key
    assert metrics["d_s_independent_method"] == result.d_s_independent_method
    assert metrics["mechanism"] == result.mechanism
    assert metrics["diffusion_notes"] == " | ".join(result.notes)


def test_the_independent_bound_needs_both_measurements():
    assert analyses._independent_bound(1.5, 2.0) is True
    assert analyses._independent_bound(2.5, 2.0) is False
    assert analyses._independent_bound(float("nan"), 2.0) is None
    assert analyses._independent_bound(1.0, float("nan")) is None
