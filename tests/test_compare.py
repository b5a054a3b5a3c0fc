"""The comparison table and its figures on real runs."""

import numpy as np
import pytest
from arviz_stats.base import array_stats

import fractalbayes as fb
from fractalbayes.stats import metrics
from fractalbayes.stats.comparison import compare_figures


@pytest.fixture(scope="module")
def arms(conjugate, nuts_conjugate):
    target, _, _ = conjugate
    sgld = fb.sample(target, "sgld", num_chains=4, num_samples=500, burn_in=500, thin=4, step_size=1e-4, seed=11)
    sgd = fb.sample(target, "sgd", num_chains=4, num_samples=200, burn_in=500, learning_rate=0.05, seed=12)
    return {"sgld": sgld, "sgd": sgd, "nuts": nuts_conjugate}


@pytest.mark.slow
def test_compare_table_has_every_view(arms, conjugate):
    probe = np.asarray(next(iter(conjugate[0].data.values())))[:20]
    table = fb.compare(arms, reference="nuts", probe=probe, max_draws=500)
    assert list(table.index) == ["sgld", "sgd", "nuts"]
    weight_columns = ["wasserstein_marginal", "sliced_wasserstein", "mmd", "mmd_p_value", "gaussian_kl", "nn_kl"]
    assert {"ess_bulk_min", "ess_tail_min", "r_hat_max", "diverging", "predictive_wasserstein"} <= set(table.columns)
    assert np.isfinite(table.loc[["sgld", "sgd"], weight_columns].to_numpy()).all()
    # SGD iterates concentrate far below the posterior's spread; SGLD samples it: SGD is farther
    assert table.loc["sgd", "gaussian_kl"] > table.loc["sgld", "gaussian_kl"]
    assert table.loc["sgd", "sliced_wasserstein"] > table.loc["sgld", "sliced_wasserstein"]
    # SGD's draws are far from the posterior: MMD 40x SGLD's, and the permutation test rejects at
    # its smallest p-value (1/201: 200 permutations)
    assert table.loc["sgd", "mmd"] > 10 * table.loc["sgld", "mmd"] and table.loc["sgd", "mmd_p_value"] < 0.01
    assert (table["num_draws"] == [2000, 800, 4000]).all()
    assert table.attrs == {"reference": "nuts", "max_draws": 500, "seed": 0}


def test_compare_rejects_other_targets_and_missing_reference(conjugate):
    target, _, _ = conjugate
    other = fb.data.linear_teacher(30, 3, seed=5)
    elsewhere = fb.from_numpyro(fb.models.linear_regression, other.x_train, other.y_train)
    quick = dict(num_chains=2, num_samples=20, burn_in=10)
    runs = {"a": fb.sample(target, "sgld", **quick), "nuts": fb.sample(target, "sgld", seed=1, **quick)}
    with pytest.raises(ValueError, match="different targets"):
        fb.compare({"a": fb.sample(elsewhere, "sgld", **quick), "nuts": runs["nuts"]})
    with pytest.raises(ValueError, match="reference 'hmc' is not among"):
        fb.compare(runs, reference="hmc")


@pytest.mark.slow
def test_compare_figures_and_basin_masses(arms):
    split = np.median(arms["nuts"].positions[..., 0])
    labelled = {name: fb.Run(**run.__dict__) for name, run in arms.items() if name != "sgd"}
    for run in labelled.values():
        run.stats = run.stats | {"basin": (run.positions[..., 0] > split).astype(int)}
    masses = {name: np.bincount(run.stats["basin"].ravel(), minlength=2) / run.stats["basin"].size
              for name, run in labelled.items()}
    np.testing.assert_array_equal(masses["nuts"], [0.5, 0.5])  # split at its own median (4000 draws)
    table = fb.compare(labelled)
    expected = metrics.mass_divergences(masses["nuts"], masses["sgld"])
    for k, v in expected.items():
        assert table.loc["sgld", f"basin_{k}"] == pytest.approx(v, abs=1e-12)
    # SGLD's mass above the posterior median is 1/2 up to MC error (and a small discretisation
    # bias): the indicator's sd is sqrt(1/4 / ESS) with ESS measured on the chains; 4 sd
    ess = array_stats.ess(labelled["sgld"].stats["basin"].astype(float), chain_axis=0, draw_axis=1)
    assert abs(masses["sgld"][1] - 0.5) < 4 * np.sqrt(0.25 / ess)
    figures = compare_figures(labelled, var_names=["w"])
    assert set(figures) == {"marginals", "pairs", "basin_masses"}
    bars = figures["basin_masses"].axes[0].patches
    np.testing.assert_allclose([b.get_height() for b in bars], np.concatenate([masses["sgld"], masses["nuts"]]))
