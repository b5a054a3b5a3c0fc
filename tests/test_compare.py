"""The comparison table and its figures on real runs."""

import numpy as np
import pytest
from arviz_stats.base import array_stats

import fractalbayes as fb
from fractalbayes.stats import metrics
from fractalbayes.stats.comparison import (
    chain_separation,
    compare_figures,
    legend_labels,
    verdicts,
)


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
    # SGD's draws are far from the posterior: MMD 40x SGLD's, and the chain-permutation test
    # (4 + 4 chains, 70 splits, a split and its complement tie) rejects at its smallest p, 2/70
    assert table.loc["sgd", "mmd"] > 10 * table.loc["sgld", "mmd"]
    assert table.loc["sgd", "mmd_p_value"] == pytest.approx(2 / 70) and table.loc["sgld", "mmd_p_value"] > 0.05
    assert (table["num_draws"] == [2000, 800, 4000]).all()
    assert table.attrs == {"reference": "nuts", "max_draws": 500, "seed": 0}


def test_compare_rejects_other_targets_and_missing_reference(conjugate):
    target, _, _ = conjugate
    other = fb.data.linear_teacher(30, 3, seed=5)
    elsewhere = fb.from_numpyro(fb.models.linear_regression, other.x_train, other.y_train)
    quick = {"num_chains": 2, "num_samples": 20, "burn_in": 10}
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
    assert set(figures) == {"marginals", "forest", "ess", "pairs", "basin_masses"}
    bars = figures["basin_masses"].axes[0].patches
    np.testing.assert_allclose([b.get_height() for b in bars], np.concatenate([masses["sgld"], masses["nuts"]]))
    for name, figure in figures.items():  # every figure's legend names every arm
        assert set(legend_labels(figure)) >= set(labelled), name
    ticks = figures["basin_masses"].axes[0].get_xticks()
    np.testing.assert_array_equal(ticks, [0, 1])  # integer basin ticks


@pytest.mark.slow
def test_floors_pairwise_and_verdicts(arms):
    """Floors are the split-half statistic of the reference or the arm, whichever is larger; the
    pairwise matrix holds every (reference, arm) pair; SGLD and NUTS agree, SGD (collapsed to
    points far below the posterior's spread) agrees with neither."""
    table = fb.compare(arms, reference=["nuts", "sgld"], max_draws=400)
    assert list(table.index.names) == ["reference", "arm"] and table.attrs["reference"] == ["nuts", "sgld"]
    row = table.loc[("nuts", "sgd")]
    for stat in ("wasserstein_marginal", "sliced_wasserstein", "gaussian_kl", "nn_kl", "mmd"):
        assert row[f"{stat}_beyond_floor"] == (row[stat] > row[f"{stat}_floor"]), stat
    # SGD's 4 chains against NUTS's 4: the chain-permutation test, C(8, 4) = 70 splits, each split
    # and its complement tie, so the smallest attainable p-value is 2/70
    assert row["mmd_method"] == "chains" and row["mmd_p_value"] == pytest.approx(2 / 70)
    matrix = fb.compare(arms, pairwise=True, max_draws=400)
    assert len(matrix) == 9 and set(matrix.index.get_level_values("reference")) == set(arms)
    found = verdicts(matrix)
    assert found["nuts"]["agree"] == ["sgld"] and set(found["nuts"]["differ"]) == {"sgd"}
    assert found["sgd"]["agree"] == [] and found["nuts"]["health"]["converged"]
    assert "mmd" in found["nuts"]["differ"]["sgd"]["beyond_floor"]


def test_chains_apart_flags_stationary_chains_in_different_places():
    """Four stationary chains around different centres (5 within-chain sd apart) read as chains
    apart; one chain drifting linearly does not (its halves differ)."""
    rng = np.random.default_rng(0)
    apart = rng.normal(size=(4, 500, 2)) + 5.0 * np.arange(4)[:, None, None]
    separation, drift = chain_separation(apart)
    # chain means 0, 5, 10, 15: sd 6.45 within-chain sd; halves' means differ by ~ N(0, 2/250) sd
    assert separation == pytest.approx(6.45, abs=0.2) and drift < 0.4
    drifting = rng.normal(size=(4, 500, 2)) + np.linspace(0, 10, 500)[None, :, None]
    assert chain_separation(drifting)[1] > 1.0
