"""Diverged chains: flagged at the draw where they left the finite set, frozen after it, and kept
out of every statistic unless asked for."""

import warnings

import numpy as np
import pytest

import fractalbayes as fb


def test_diverging_marks_one_draw_and_frozen_the_rest(conjugate):
    """SGD at learning rate 3 multiplies the distance to the mode by ~2 per step (Hessian ~ I): from
    1e14 / 1e16 the squared residual overflows after a few steps, in the sampling phase; from 0 it
    stays finite for the 33 steps."""
    target, _, _ = conjugate
    init = np.zeros((4, target.dim), np.float32)
    init[0], init[1] = 1e14, 1e16
    burn_in, thin = 3, 3
    with pytest.warns(UserWarning, match="2 of 4 chains diverged"):
        run = fb.sample(target, "sgd", num_chains=4, num_samples=10, burn_in=burn_in, thin=thin, learning_rate=3.0,
                        init=init, seed=1)
    steps = run.diverged_at[:2]
    assert run.diverged.tolist() == [True, True, False, False] and (steps >= burn_in).all()
    # draw d holds the state after steps burn_in + d*thin ... burn_in + (d+1)*thin - 1
    draws = (steps - burn_in) // thin
    for chain, draw in enumerate(draws):
        expected = np.arange(run.num_draws) == draw
        np.testing.assert_array_equal(run.stats["diverging"][chain], expected)
        np.testing.assert_array_equal(run.stats["frozen"][chain], np.arange(run.num_draws) >= draw)
        # frozen draws repeat the last finite state
        assert np.isfinite(run.positions[chain]).all()
        assert (run.positions[chain, draw:] == run.positions[chain, draw]).all()
    assert not run.stats["diverging"][2:].any() and not run.stats["frozen"][2:].any()
    tree = run.to_arviz(log_likelihood=False)
    assert tree["sample_stats"]["diverging"].values.sum() == 2


@pytest.fixture(scope="module")
def planted(conjugate):
    """Two of four SGLD chains start at 1e20, where the squared residual overflows: they diverge at
    step 0 and stay frozen there. Averaged in, they put the posterior mean at ~5e19."""
    target, _, _ = conjugate
    init = np.zeros((4, target.dim), np.float32)
    init[:2] = 1e20
    with pytest.warns(UserWarning, match="2 of 4 chains diverged"):
        return fb.sample(target, "sgld", num_chains=4, num_samples=500, burn_in=200, thin=2, step_size=1e-4,
                         init=init, seed=41)


def test_summary_leaves_diverged_chains_out(planted, conjugate):
    _, mean, cov = conjugate
    with pytest.warns(UserWarning, match=r"run 'sgld': 2 of 4 chains diverged .* include_diverged=True"):
        table = fb.summary({"sgld": planted}, var_names=["w"])
    assert (table["dropped_chains"] == 2).all()
    # The two healthy chains sample the posterior: 4 MCSE (arviz-stats' estimate) covers the Monte
    # Carlo error with probability > 0.9999 per coordinate, plus 5 % of a posterior sd for SGLD's
    # step-size bias at h = 1e-4 (as in test_samplers).
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(table["mean"].to_numpy() - mean) < 4 * table["mcse_mean"].to_numpy() + 0.05 * sd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflows on 1e20 squared
        warnings.simplefilter("error", UserWarning)  # asked for: no warning of ours
        everything = fb.summary({"sgld": planted}, var_names=["w"], include_diverged=True)
    assert (everything["dropped_chains"] == 0).all()
    assert (everything["mean"] > 1e19).all()  # what leaked into the statistics before


def test_compare_leaves_diverged_chains_out(planted, nuts_conjugate):
    runs = {"sgld": planted, "nuts": nuts_conjugate}
    with pytest.warns(UserWarning, match="2 of 4 chains diverged"):
        table = fb.compare(runs, max_draws=500)
    assert table.loc["sgld", "dropped_chains"] == 2 and table.loc["nuts", "dropped_chains"] == 0
    assert table.loc["sgld", "num_draws"] == 2 * planted.num_draws
    # healthy SGLD chains against NUTS: sliced W1 well below a posterior sd (~0.07 here) ...
    assert table.loc["sgld", "sliced_wasserstein"] < 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy overflows on 1e20 squared
        leaked = fb.compare(runs, max_draws=500, include_diverged=True)
    # ... and ~1e19 with the frozen chains in
    assert leaked.loc["sgld", "sliced_wasserstein"] > 1e18 and leaked.loc["sgld", "dropped_chains"] == 0


def test_non_finite_draws_count_as_unhealthy(planted):
    run = fb.Run(**planted.__dict__)
    run.diverged_at = np.full(4, -1)
    run.positions = planted.positions.copy()
    run.sites = {"w": planted.sites["w"].copy()}
    run.sites["w"][0, 3, 1] = np.nan
    run.sites["w"][1] = 1.0
    assert run.healthy_chains.tolist() == [False, True, True, True]
    kept = run.select_chains(run.healthy_chains)
    assert kept.num_chains == 3 and kept.diverged_at.tolist() == [-1, -1, -1]


def test_all_chains_diverged_is_a_sampler_error_and_its_run_cannot_be_summarised(conjugate):
    target, _, _ = conjugate
    with pytest.raises(fb.SamplerError, match="all 2 chains diverged") as info:
        fb.sample(target, "sgd", num_chains=2, num_samples=20, burn_in=0, learning_rate=50.0)
    partial = info.value.run
    assert partial.stats["frozen"][:, -1].all() and partial.stats["diverging"].sum() == 2
    with pytest.raises(fb.InputError, match="all 2 chains of run 'sgd' diverged.*include_diverged=True"):
        fb.summary({"sgd": partial})
    assert (fb.summary({"sgd": partial}, include_diverged=True)["dropped_chains"] == 0).all()
