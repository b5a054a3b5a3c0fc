"""ArviZ output and netCDF round trip."""

import numpy as np
import xarray as xr

import fractalbayes as fb


def test_to_arviz_groups_names_and_dims(nuts_conjugate):
    tree = nuts_conjugate.to_arviz()
    assert {"posterior", "sample_stats", "observed_data", "unconstrained_posterior", "checkpoints"} <= set(tree.children)
    assert tree["posterior"]["w"].dims == ("chain", "draw", "w_dim_0")
    assert {"loss", "grad_norm", "step_size", "diverging", "acceptance_rate"} <= set(tree["sample_stats"].data_vars)
    assert tree["observed_data"]["y"].shape == (200,)
    assert tree["checkpoints"]["position"].dims == ("chain", "checkpoint", "param")


def test_save_and_load_round_trip(nuts_conjugate, tmp_path):
    path = nuts_conjugate.save(tmp_path / "runs" / "nuts.nc")
    assert [p.name for p in path.parent.iterdir()] == ["nuts.nc"]  # no temporary left behind
    loaded = fb.load_run(path)
    xr.testing.assert_equal(loaded.to_arviz()["posterior"].to_dataset(),
                                nuts_conjugate.to_arviz()["posterior"].to_dataset())
    np.testing.assert_array_equal(loaded.checkpoints, nuts_conjugate.checkpoints)
    np.testing.assert_array_equal(loaded.checkpoint_steps, nuts_conjugate.checkpoint_steps)
    assert loaded.config == nuts_conjugate.config and loaded.versions == nuts_conjugate.versions
    assert loaded.sampler == "nuts" and loaded.diverged_at.tolist() == [-1] * 4


def test_summary_table_has_diagnostics_per_sampler(nuts_conjugate):
    table = fb.summary({"a": nuts_conjugate, "b": nuts_conjugate})
    assert list(table.index.get_level_values("sampler").unique()) == ["a", "b"]
    assert {"ess_bulk", "ess_tail", "r_hat", "mcse_mean"} <= set(table.columns)
    assert (table["r_hat"] < 1.01).all()
