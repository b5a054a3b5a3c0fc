"""ArviZ output and netCDF round trip."""

import numpy as np
import xarray as xr

import fractalbayes as fb


def test_to_arviz_groups_names_and_values(nuts_conjugate, conjugate):
    run = nuts_conjugate
    tree = run.to_arviz()
    assert {"posterior", "sample_stats", "observed_data", "unconstrained_posterior", "checkpoints"} <= set(tree.children)
    assert tree["posterior"]["w"].dims == ("chain", "draw", "w_dim_0")
    np.testing.assert_array_equal(tree["posterior"]["w"].values, run.sites["w"])
    assert {"loss", "step_size", "diverging", "acceptance_rate"} <= set(tree["sample_stats"].data_vars)
    for name in ("loss", "step_size", "diverging", "acceptance_rate"):
        np.testing.assert_array_equal(tree["sample_stats"][name].values, run.stats[name])
    np.testing.assert_array_equal(tree["observed_data"]["y"].values, np.asarray(conjugate[0].data["y"]))
    assert tree["checkpoints"]["position"].dims == ("chain", "checkpoint", "param")
    np.testing.assert_array_equal(tree["checkpoints"]["position"].values, run.checkpoints)
    # w has the identity transform: the unconstrained draws are the constrained ones
    np.testing.assert_array_equal(np.asarray(tree["unconstrained_posterior"]["w"]), run.positions)


def test_save_and_load_round_trip(nuts_conjugate, tmp_path):
    path = nuts_conjugate.save(tmp_path / "runs" / "nuts.nc")
    assert [p.name for p in path.parent.iterdir()] == ["nuts.nc"]  # no temporary left behind
    loaded = fb.load_run(path)
    xr.testing.assert_equal(loaded.to_arviz()["posterior"].to_dataset(),
                            nuts_conjugate.to_arviz()["posterior"].to_dataset())
    np.testing.assert_array_equal(loaded.positions, nuts_conjugate.positions)
    np.testing.assert_array_equal(loaded.checkpoints, nuts_conjugate.checkpoints)
    np.testing.assert_array_equal(loaded.checkpoint_steps, nuts_conjugate.checkpoint_steps)
    for name, values in nuts_conjugate.stats.items():
        np.testing.assert_array_equal(loaded.stats[name], values)
    assert loaded.config == nuts_conjugate.config and loaded.versions == nuts_conjugate.versions
    assert loaded.sampler == "nuts" and loaded.diverged_at.tolist() == [-1] * 4


def test_summary_table_has_diagnostics_per_sampler(nuts_conjugate):
    table = fb.summary({"a": nuts_conjugate, "b": nuts_conjugate})
    assert list(table.index.get_level_values("sampler").unique()) == ["a", "b"]
    assert {"ess_bulk", "ess_tail", "r_hat", "mcse_mean"} <= set(table.columns)
    draws = nuts_conjugate.sites["w"].reshape(-1, 3)
    for sampler in ("a", "b"):
        np.testing.assert_allclose(table.loc[sampler, "mean"].to_numpy(), draws.mean(0), rtol=1e-5)
        np.testing.assert_allclose(table.loc[sampler, "sd"].to_numpy(), draws.std(0, ddof=1), rtol=1e-4)
    # 4 chains of a well-adapted NUTS on a 3-d Gaussian: every chain samples the same distribution
    assert (table["r_hat"] < 1.01).all() and (table["ess_bulk"] > 1000).all()
