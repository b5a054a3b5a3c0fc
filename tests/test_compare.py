"""The comparison table and its figures on real runs."""

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.stats.comparison import compare_figures


@pytest.fixture(scope="module")
def arms(conjugate, nuts_conjugate):
    target, _, _ = conjugate
    sgld = fb.sample(target, "sgld", num_chains=4, num_samples=500, burn_in=500, thin=4, step_size=1e-4, seed=11)
    sgd = fb.sample(target, "sgd", num_chains=4, num_samples=200, burn_in=500, learning_rate=0.05, seed=12)
    return {"sgld": sgld, "sgd": sgd, "nuts": nuts_conjugate}


def test_compare_table_has_every_view(arms, conjugate):
    probe = np.asarray(conjugate[0].data["x"])[:20]
    table = fb.compare(arms, reference="nuts", probe=probe, max_draws=500)
    assert list(table.index) == ["sgld", "sgd", "nuts"]
    weight_columns = ["wasserstein_marginal", "sliced_wasserstein", "mmd", "mmd_p_value", "gaussian_kl", "nn_kl"]
    assert {"ess_bulk_min", "ess_tail_min", "r_hat_max", "diverging", "predictive_wasserstein"} <= set(table.columns)
    assert np.isfinite(table.loc[["sgld", "sgd"], weight_columns].to_numpy()).all()
    # SGD iterates concentrate far below the posterior's spread; SGLD samples it: SGD is farther
    assert table.loc["sgd", "gaussian_kl"] > table.loc["sgld", "gaussian_kl"]
    assert table.loc["sgd", "sliced_wasserstein"] > table.loc["sgld", "sliced_wasserstein"]
    assert table.attrs == {"reference": "nuts", "max_draws": 500, "seed": 0}


def test_compare_rejects_other_targets_and_missing_reference(arms):
    other = fb.data.linear_teacher(30, 3, seed=5)
    target = fb.from_numpyro(fb.models.linear_regression, other.x_train, other.y_train)
    foreign = fb.sample(target, "sgld", num_chains=2, num_samples=20, burn_in=10)
    with pytest.raises(ValueError, match="different targets"):
        fb.compare({"a": foreign, "nuts": arms["nuts"]})
    with pytest.raises(ValueError, match="reference 'hmc' is not among"):
        fb.compare(arms, reference="hmc")


def test_compare_figures_and_basin_masses(arms):
    labelled = {name: fb.Run(**run.__dict__) for name, run in arms.items() if name != "sgd"}
    for run in labelled.values():
        run.stats = run.stats | {"basin": (run.positions[..., 0] > np.median(arms["nuts"].positions[..., 0])).astype(int)}
    table = fb.compare(labelled)
    assert {"basin_kl", "basin_js", "basin_wasserstein"} <= set(table.columns)
    figures = compare_figures(labelled, var_names=["w"])
    assert set(figures) == {"marginals", "pairs", "basin_masses"}
