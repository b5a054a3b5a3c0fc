"""Basins of an ensemble of trained networks, found in function space.

Weight-space clustering of neural networks is defeated by permutation and scaling symmetries (a
quick Moons prototype gave silhouettes ~0.1), so networks are grouped by what they predict on a
probe set: decision labels (one-hot), class probabilities, or predictive means for regression.
k-means (scikit-learn) runs for every k in a range; k is chosen by the silhouette score, and every
k's labels and score are kept. A basin's representative is its medoid: the member network with the
smallest total distance to the others, so it is a real trained network, not an average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances, silhouette_score

from fractalbayes.errors import ModelError
from fractalbayes.model.predict import class_probabilities, predictive_mean
from fractalbayes.model.target import Target

FEATURES = ("labels", "probs", "mean", "weights")


def function_features(target: Target, positions: np.ndarray, probe, *, feature: str = "labels") -> np.ndarray:
    """One feature row per network (n, F): one-hot decisions, class probabilities, predictive means,
    or the flat weights themselves (``"weights"``: for toys without symmetries, where distinct
    minima predict the same function)."""
    if feature not in FEATURES:
        raise ModelError(f"feature must be one of {FEATURES}, got {feature!r}")
    positions = np.asarray(positions).reshape(-1, target.dim)
    if feature == "weights":
        return positions
    if feature == "mean":
        return predictive_mean(target, positions, probe).reshape(len(positions), -1)
    probs = class_probabilities(target, positions, probe)
    if feature == "labels":
        probs = np.eye(probs.shape[-1])[probs.argmax(-1)]
    return probs.reshape(len(positions), -1)


@dataclass(frozen=True)
class Basins:
    labels: np.ndarray
    """Basin of each network, 0..k-1, numbered by decreasing mass."""
    masses: np.ndarray
    """Fraction of networks in each basin, P_SGD(k)."""
    medoids: np.ndarray
    """Index of each basin's medoid network."""
    centroids: np.ndarray
    """k-means centroids in feature space (k, F), used to assign new draws."""
    silhouettes: dict[int, float]
    labels_per_k: dict[int, np.ndarray]
    centroids_per_k: dict[int, np.ndarray]
    feature: str

    @property
    def k(self) -> int:
        return len(self.masses)

    def assign(self, features: np.ndarray, k: int | None = None) -> np.ndarray:
        """Nearest-centroid basin of each feature row (k defaults to the chosen one)."""
        centroids = self.centroids if k is None else self.centroids_per_k[k]
        return pairwise_distances(features, centroids).argmin(axis=1)


def _kmeans(features: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)
    # number basins by decreasing mass so that labels are comparable across runs
    order = np.argsort(-np.bincount(model.labels_, minlength=k), kind="stable")
    relabel = np.empty(k, int)
    relabel[order] = np.arange(k)
    return relabel[model.labels_], model.cluster_centers_[order]


def medoid_indices(features: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """For each basin 0..k-1, the member with the smallest total feature distance to the others."""
    medoids = []
    for b in range(k):
        members = np.flatnonzero(labels == b)
        medoids.append(members[pairwise_distances(features[members]).sum(1).argmin()])
    return np.array(medoids)


def find_basins(
    features: np.ndarray, *, k: int | None = None, k_range: tuple[int, int] = (2, 8), seed: int = 0,
    feature: str = "labels",
) -> Basins:
    """Cluster networks by their function-space features; k by silhouette unless given."""
    features = np.asarray(features, float)
    n = len(features)
    low, high = k_range
    if n < 3 or low < 2 or high < low:
        raise ModelError(f"need >= 3 networks and 2 <= k_range[0] <= k_range[1]; got n={n}, k_range={k_range}")
    distinct = len(np.unique(features, axis=0))
    ks = [j for j in range(low, min(high, n - 1) + 1) if j <= distinct]
    if not ks:
        raise ModelError(
            f"fewer than two basins: all {n} networks make the same {distinct} distinct prediction(s) "
            f"on the probe set; use a richer probe set, feature='probs', or more diverse training"
        )
    labels_per_k, centroids_per_k, silhouettes = {}, {}, {}
    for j in ks:
        labels_per_k[j], centroids_per_k[j] = _kmeans(features, j, seed)
        silhouettes[j] = float(silhouette_score(features, labels_per_k[j])) if len(np.unique(labels_per_k[j])) > 1 else -1.0
    if k is None:
        k = max(silhouettes, key=silhouettes.get)
    elif k not in labels_per_k:
        labels_per_k[k], centroids_per_k[k] = _kmeans(features, k, seed)
        silhouettes[k] = float(silhouette_score(features, labels_per_k[k]))
    labels = labels_per_k[k]
    return Basins(
        labels=labels,
        masses=np.bincount(labels, minlength=k) / n,
        medoids=medoid_indices(features, labels, k),
        centroids=centroids_per_k[k],
        silhouettes=silhouettes,
        labels_per_k=labels_per_k,
        centroids_per_k=centroids_per_k,
        feature=feature,
    )
