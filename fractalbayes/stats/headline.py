"""The paper's claim asked as a sampler comparison: is the fractal sampler's distribution closer to
SGD's than the posterior's is, beyond the noise floors?

Hennick & De Baerdemacker (arXiv 2503.22478) claim SGD samples an LLC-tempered ("almost Bayesian")
posterior, which the fractal sampler draws. If so, with S = SGD, F = fractal and P = posterior runs,

    d(F, S) < d(P, S)

for a distance d between the arms' distributions, in each of three views:

- function space: total variation of the mean predictive on probe inputs (classifiers; Izmailov et
  al. 2021, §4) or the mean Wasserstein-1 of predictive samples (regression);
- basin masses: Jensen-Shannon divergence between the arms' masses over ONE set of function-space
  basins found on the pooled draws of all three arms (:func:`fractalbayes.stats.basins.find_basins`,
  k by silhouette), so no arm's own clustering is privileged;
- weight space: sliced Wasserstein-1 of the flat unconstrained weights. Meaningful where the weights
  are identified; for networks with permutation symmetries two arms can agree in function and
  differ in weights, so this row is reported but read last.

The noise floor of each view is the same statistic between two halves of SGD's own draws (by
chains; :func:`fractalbayes.stats.noise.split_half_floor`): the distance at which two samples of one
law already differ. Each verdict reads

    closer: yes          d(P, S) - d(F, S) > floor
    closer: no           d(F, S) - d(P, S) > floor
    undetermined (within noise floor)   otherwise

A gap within the floor is not resolved by these draws. This is a decision rule with a measured bar,
not a test with a computed level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fractalbayes.engine.run import Run
from fractalbayes.errors import InputError
from fractalbayes.model.target import Target
from fractalbayes.stats import metrics
from fractalbayes.stats.basins import find_basins, function_features
from fractalbayes.stats.comparison import (
    _is_classifier,
    function_statistics,
    num_classes,
    predictions,
    thin_chains,
)
from fractalbayes.stats.diagnostics import healthy
from fractalbayes.stats.noise import split_half_floor

VIEWS = ("function", "basins", "weights")


@dataclass(frozen=True)
class Headline:
    """The verdict per view. ``table``: one row per view with the statistic, d(fractal, sgd),
    d(posterior, sgd), the floor and the verdict; ``lines``: one sentence per view."""

    table: pd.DataFrame
    sgd: str
    fractal: str
    posterior: str

    @property
    def lines(self) -> list[str]:
        return [f"{view} ({row.statistic}): d({self.fractal}, {self.sgd}) = {row.fractal_to_sgd:.3g}, "
                f"d({self.posterior}, {self.sgd}) = {row.posterior_to_sgd:.3g}, noise floor {row.floor:.3g}: "
                f"closer: {row.verdict}" for view, row in self.table.iterrows()]

    @property
    def question(self) -> str:
        return (f"Is {self.fractal}'s distribution closer to {self.sgd}'s than {self.posterior}'s is, "
                f"beyond the noise floor?")

    def __str__(self) -> str:
        return "\n".join([self.question, *self.lines])


def verdict(fractal_to_sgd: float, posterior_to_sgd: float, floor: float) -> str:
    """"yes", "no" or "undetermined (within noise floor)" (module docstring)."""
    if not all(np.isfinite([fractal_to_sgd, posterior_to_sgd, floor])):
        return "undetermined (not computable)"
    gap = posterior_to_sgd - fractal_to_sgd
    if gap > floor:
        return "yes"
    if -gap > floor:
        return "no"
    return "undetermined (within noise floor)"


def _row(statistic: str, f, draws: dict[str, np.ndarray], sgd: str, fractal: str, posterior: str) -> dict:
    d_f, d_p = float(f(draws[fractal], draws[sgd])), float(f(draws[posterior], draws[sgd]))
    floor = split_half_floor(draws[sgd], f)
    return {"statistic": statistic, "fractal_to_sgd": d_f, "posterior_to_sgd": d_p, "floor": floor,
            "verdict": verdict(d_f, d_p, floor)}


def headline(runs: dict[str, Run], sgd: str = "sgd", fractal: str = "fractal", posterior: str = "nuts",
             probe=None, *, target: Target | None = None, max_draws: int = 1000, k_range: tuple[int, int] = (2, 6),
             seed: int = 0) -> Headline:
    """Is the ``fractal`` arm closer to the ``sgd`` arm than the ``posterior`` arm is (module docstring)?

    Args:
        runs: arm name -> Run of one target (healthy chains only are used).
        sgd, fractal, posterior: the three arms' names.
        probe: inputs of the function-space and basin views (none: training inputs of the target's
            first data argument are not guessed; both views are then left out).
        target: the model (default: the runs'), needed with ``probe``.
        max_draws: draws per arm (each chain thinned evenly).
        k_range: basin numbers tried on the pooled draws (best silhouette).
        seed: seed of the projections and of k-means.

    Returns:
        :class:`Headline`; ``str()`` gives the question and one verdict line per view.
    """
    for role, name in (("sgd", sgd), ("fractal", fractal), ("posterior", posterior)):
        if name not in runs:
            raise InputError(f"{role} arm {name!r} is not among the runs {sorted(runs)}; pass {role}=<arm name>")
    if len({sgd, fractal, posterior}) < 3:
        raise InputError(f"sgd, fractal and posterior must be three different arms, got {sgd!r}, {fractal!r}, {posterior!r}")
    arms = {name: healthy(name, runs[name])[0] for name in (sgd, fractal, posterior)}
    target = target or next((r.target for r in arms.values() if r.target is not None), None)
    if probe is not None and target is None:
        raise InputError("the function-space views need the target: pass target=... (runs loaded from disk carry none)")
    draws = {name: thin_chains(run.positions, max_draws) for name, run in arms.items()}
    rows = {}
    if probe is not None:
        classifier = _is_classifier(target, probe)
        preds = {name: predictions(target, d, probe, classifier, seed) for name, d in draws.items()}
        statistic = "predictive_tv" if classifier else "predictive_wasserstein"
        statistics = function_statistics(classifier, num_classes(target, probe) if classifier else 0)
        rows["function"] = _row(statistic, statistics[statistic], preds, sgd, fractal, posterior)
        feature = "labels" if classifier else "mean"
        features = {n: function_features(target, d.reshape(-1, d.shape[-1]), probe, feature=feature) for n, d in draws.items()}
        basins = find_basins(np.concatenate(list(features.values())), k_range=k_range, seed=seed, feature=feature)
        labels = {n: basins.assign(f).reshape(*draws[n].shape[:2], 1) for n, f in features.items()}

        def js(a: np.ndarray, b: np.ndarray) -> float:
            pa, pb = (np.bincount(x.reshape(-1).astype(int), minlength=basins.k) / x.size for x in (a, b))
            return metrics.mass_divergences(pa, pb)["js"]
        rows["basins"] = _row(f"basin_js (k = {basins.k})", js, labels, sgd, fractal, posterior)
    rows["weights"] = _row("sliced_wasserstein", lambda x, y: metrics.sliced_wasserstein(
        x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]), seed=seed), draws, sgd, fractal, posterior)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "view"
    return Headline(table, sgd, fractal, posterior)
