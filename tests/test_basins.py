"""Function-space basins (fractalbayes.stats.basins): features, k-means with k by silhouette,
medoids, assignment of new draws and basin masses, on planted answers."""

import numpy as np
import pytest
from scipy.special import expit

import fractalbayes as fb
from fractalbayes.stats.basins import FEATURES, find_basins, function_features, medoid_indices

CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
SIZES = (50, 30, 20)
SPREAD = 0.3


@pytest.fixture(scope="module")
def planted():
    """Three well-separated clusters (sd 0.3, centres 10 apart) of 50, 30 and 20 points, shuffled."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), SIZES)
    order = rng.permutation(len(truth))
    truth = truth[order]
    points = CENTRES[truth] + SPREAD * rng.normal(size=(len(truth), 2))
    return points, truth


@pytest.fixture(scope="module")
def found(planted):
    return find_basins(planted[0], k_range=(2, 6), seed=0)


def test_find_basins_recovers_planted_clusters_and_their_number(planted, found):
    points, truth = planted
    basins = found
    assert basins.k == 3 and max(basins.silhouettes, key=basins.silhouettes.get) == 3
    assert sorted(basins.silhouettes) == [2, 3, 4, 5, 6]
    # distances within a cluster are ~0.4 and between clusters >= 10: silhouette ~ 1 - 0.4/10
    assert basins.silhouettes[3] > 0.9 and basins.silhouettes[3] > basins.silhouettes[2] + 0.2
    # basins are numbered by decreasing mass, so the planted labels come back exactly
    np.testing.assert_array_equal(basins.labels, truth)
    np.testing.assert_allclose(basins.masses, np.array(SIZES) / sum(SIZES))
    np.testing.assert_allclose(basins.centroids, CENTRES, atol=4 * SPREAD / np.sqrt(min(SIZES)))
    assert basins.feature == "labels" and set(basins.labels_per_k) == set(basins.silhouettes)
    for k, labels in basins.labels_per_k.items():
        assert labels.shape == truth.shape and set(labels) == set(range(k))
        assert basins.centroids_per_k[k].shape == (k, 2)


def test_a_given_k_overrides_the_silhouette(planted):
    points, truth = planted
    two = find_basins(points, k=2, k_range=(3, 3))
    assert two.k == 2 and set(two.silhouettes) == {2, 3} and two.silhouettes[3] > two.silhouettes[2]
    # k-means keeps every planted cluster whole and merges the pair that costs least inertia:
    # (0, 0) + (0, 10) adds 50 * 2.86^2 + 20 * 7.14^2 = 1428, less than the other pairs (1875, 2400)
    for cluster in range(3):
        assert len(set(two.labels[truth == cluster])) == 1
    np.testing.assert_allclose(two.masses, [0.7, 0.3])
    assert two.labels[truth == 0][0] == two.labels[truth == 2][0] == 0


def test_medoids_are_members_that_minimise_total_distance(planted, found):
    # a skewed cluster: its medoid (index 2, total distance 12) is not the point nearest its mean 3.2
    skewed = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    np.testing.assert_array_equal(medoid_indices(skewed, np.zeros(5, int), 1), [2])
    points, _ = planted
    basins = found
    for b, medoid in enumerate(basins.medoids):
        members = np.flatnonzero(basins.labels == b)
        assert medoid in members
        totals = np.linalg.norm(points[members][:, None] - points[members][None], axis=-1).sum(1)
        assert medoid == members[totals.argmin()]


def test_assign_puts_new_points_in_their_basin(found):
    basins = found
    rng = np.random.default_rng(1)
    new_truth = rng.integers(0, 3, size=200)
    new = CENTRES[new_truth] + SPREAD * rng.normal(size=(200, 2))
    np.testing.assert_array_equal(basins.assign(new), new_truth)
    halfway = np.array([[5.0, 0.1]])  # nearer (10, 0) than (0, 0) by 0.1: the boundary is sharp
    assert basins.assign(halfway + [0.2, 0.0])[0] == 1 and basins.assign(halfway - [0.2, 0.0])[0] == 0
    assert basins.assign(new, k=2).max() <= 1


def test_find_basins_refuses_what_it_cannot_cluster():
    with pytest.raises(fb.ModelError, match="need >= 3 networks"):
        find_basins(np.zeros((2, 2)))
    with pytest.raises(fb.ModelError, match="2 <= k_range"):
        find_basins(np.arange(10.0)[:, None], k_range=(1, 3))
    with pytest.raises(fb.ModelError, match="fewer than two basins: all 10 networks make the same 1 distinct"):
        find_basins(np.ones((10, 3)))


@pytest.fixture(scope="module")
def logistic_positions(logistic):
    rng = np.random.default_rng(2)
    return rng.normal(size=(4, logistic.dim)).astype(np.float32)


def test_function_features_for_each_feature(logistic, logistic_positions):
    probe = np.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]], np.float32)
    sites = [logistic.constrain(z) for z in logistic_positions]
    p1 = np.array([expit(probe @ np.asarray(s["w"]) + float(s["b"])) for s in sites])  # (4, 3)
    probs = function_features(logistic, logistic_positions, probe, feature="probs")
    np.testing.assert_allclose(probs, np.stack([1 - p1, p1], -1).reshape(4, 6), rtol=1e-5, atol=1e-6)
    labels = function_features(logistic, logistic_positions, probe, feature="labels")
    np.testing.assert_array_equal(labels, np.stack([p1 <= 0.5, p1 > 0.5], -1).reshape(4, 6).astype(float))
    np.testing.assert_allclose(function_features(logistic, logistic_positions, probe, feature="mean"), p1,
                               rtol=1e-5, atol=1e-6)
    weights = function_features(logistic, logistic_positions[None], probe, feature="weights")
    np.testing.assert_array_equal(weights, logistic_positions)
    assert set(FEATURES) == {"labels", "probs", "mean", "weights"}
    with pytest.raises(fb.ModelError, match="feature must be one of"):
        function_features(logistic, logistic_positions, probe, feature="logits")


def test_networks_that_predict_alike_share_a_basin(logistic):
    """Two groups of nets with opposite decision rules: clustering their labels on a probe splits
    them by what they predict, whatever their weights' spread."""
    rng = np.random.default_rng(3)
    names = list(logistic.constrain(np.zeros(logistic.dim, np.float32)))
    assert set(names) >= {"w", "b"}
    flip = np.repeat([1.0, -1.0], [12, 8])
    nets = [logistic.unconstrain({"w": s * np.array([3.0, 0.0]) * rng.uniform(0.5, 2.0), "b": np.float32(0.0)})
            for s in flip]
    probe = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0]], np.float32)
    features = function_features(logistic, np.stack(nets), probe, feature="labels")
    basins = find_basins(features, k_range=(2, 4))
    np.testing.assert_array_equal(basins.labels, (flip < 0).astype(int))
    np.testing.assert_allclose(basins.masses, [0.6, 0.4])
