"""How close is each sampler's weight distribution to a reference: one table, three views.

Per arm against the reference run (Izmailov et al. 2021 for the function-space view):
- chain health: min ESS bulk / tail, max R-hat (arviz-stats), diverging draws, dropped chains;
- weight space (flat unconstrained positions, each arm subsampled to ``max_draws`` with a recorded
  seed): sum of marginal Wasserstein-1 (arviz-stats, joint=False), sliced Wasserstein, RBF-MMD with
  a permutation p-value, KL between Gaussian fits, ArviZ's 1-nearest-neighbour KL;
- function space on probe inputs: top-1 agreement and total variation of the mean predictive
  distribution (classifiers), Wasserstein-1 of predictive samples (regression);
- basin masses when both runs carry basin labels (the fractal sampler): KL / JS / Wasserstein.

`compare_figures` draws the marginal overlays, a pair plot and basin-mass bars.

Every view uses only each run's finite, never-diverged chains (``dropped_chains`` says how many
were left out, with a warning); ``include_diverged=True`` keeps them all.

Not ``arviz_stats.compare``: that ranks *models* by their expected log predictive density (LOO);
this compares *samplers'* distributions on one model against a reference run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fractalbayes.engine.run import Run
from fractalbayes.errors import InputError
from fractalbayes.model.predict import class_probabilities, predictive_samples
from fractalbayes.model.target import Target
from fractalbayes.stats import metrics
from fractalbayes.stats.diagnostics import healthy, summary


def _subsample(positions: np.ndarray, max_draws: int, rng: np.random.Generator) -> np.ndarray:
    flat = positions.reshape(-1, positions.shape[-1])
    if flat.shape[0] <= max_draws:
        return flat
    return flat[np.sort(rng.choice(flat.shape[0], max_draws, replace=False))]


def chain_health(run: Run) -> dict[str, float]:
    """Min ESS bulk/tail and max R-hat over all posterior sites, and the count of diverging draws
    (of the chains given: `compare` passes the healthy ones)."""
    table = summary({"run": run}, kind="diagnostics", include_diverged=True)
    return {
        "ess_bulk_min": float(table["ess_bulk"].min()),
        "ess_tail_min": float(table["ess_tail"].min()),
        "r_hat_max": float(table["r_hat"].max()) if run.num_chains > 1 else float("nan"),
        "diverging": int(np.sum(run.stats["diverging"])),
    }


def weight_distances(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Distances between two flat weight sample sets (n, d) and (m, d)."""
    mmd = metrics.mmd_rbf(x, y, seed=seed)
    return {
        "wasserstein_marginal": metrics.marginal_wasserstein(x, y, seed=seed),
        "sliced_wasserstein": metrics.sliced_wasserstein(x, y, seed=seed),
        "mmd": mmd.statistic,
        "mmd_p_value": mmd.p_value,
        "gaussian_kl": metrics.gaussian_kl(x, y),
        "nn_kl": metrics.nn_kl(x, y, seed=seed),
    }


def _is_classifier(target: Target, probe) -> bool:
    try:
        class_probabilities(target, np.zeros((1, target.dim), np.float32), probe)
    except ValueError:
        return False
    return True


def function_distances(target: Target, x: np.ndarray, y: np.ndarray, probe) -> dict[str, float]:
    """Predictive agreement and total variation (classifiers) or predictive W1 (regression)."""
    if _is_classifier(target, probe):
        p, q = class_probabilities(target, x, probe), class_probabilities(target, y, probe)
        return {"agreement": metrics.predictive_agreement(p, q), "predictive_tv": metrics.predictive_tv(p, q)}
    p, q = predictive_samples(target, x, probe, seed=0), predictive_samples(target, y, probe, seed=1)
    return {"predictive_wasserstein": metrics.predictive_wasserstein(p.reshape(len(p), -1), q.reshape(len(q), -1))}


def basin_masses(run: Run) -> np.ndarray | None:
    """Fraction of draws per basin label, when the run carries labels (``stats['basin']``)."""
    if "basin" not in run.stats:
        return None
    labels = run.stats["basin"].reshape(-1).astype(int)
    return np.bincount(labels, minlength=labels.max() + 1) / labels.size


def compare(
    runs: dict[str, Run],
    reference: str = "nuts",
    probe=None,
    *,
    target: Target | None = None,
    max_draws: int = 1000,
    seed: int = 0,
    include_diverged: bool = False,
) -> pd.DataFrame:
    """One row per arm: chain health, weight-space and function-space distances to `reference`.

    ``probe`` (inputs for the model's first data argument) enables the function-space columns; it
    needs the target, taken from the runs (``run.target``) or given. Draws are subsampled to
    ``max_draws`` per arm with ``seed`` (scipy's joint Wasserstein is too slow for defaults, so the
    marginal and sliced versions are used). Diverged or non-finite chains are left out of every
    column (``dropped_chains`` counts them) unless ``include_diverged``.

    Not ``arviz_stats.compare`` (which ranks models by LOO): this compares samplers of one model.
    """
    if reference not in runs:
        raise InputError(f"reference {reference!r} is not among the runs {sorted(runs)}")
    fingerprints = {name: run.config.target.fingerprint for name, run in runs.items()}
    if len(set(fingerprints.values())) > 1:
        raise InputError(f"runs sample different targets (fingerprints {fingerprints}); compare runs of one target")
    target = target or runs[reference].target or next((r.target for r in runs.values() if r.target), None)
    if probe is not None and target is None:
        raise InputError("function-space comparison needs the target: pass target=... (runs loaded from disk carry none)")
    kept = {name: healthy(name, run, include_diverged) for name, run in runs.items()}
    dropped = {name: d for name, (_, d) in kept.items()}
    runs = {name: run for name, (run, _) in kept.items()}
    rng = np.random.default_rng(seed)
    draws = {name: _subsample(run.positions, max_draws, rng) for name, run in runs.items()}
    ref_masses = basin_masses(runs[reference])
    rows = {}
    for name, run in runs.items():
        row = chain_health(run) | {"num_draws": run.num_chains * run.num_draws, "dropped_chains": dropped[name]}
        if name != reference:
            row |= weight_distances(draws[name], draws[reference], seed=seed)
            if probe is not None:
                row |= function_distances(target, draws[name], draws[reference], probe)
            masses = basin_masses(run)
            if masses is not None and ref_masses is not None and len(masses) == len(ref_masses):
                row |= {f"basin_{k}": v for k, v in metrics.mass_divergences(ref_masses, masses).items()}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "arm"
    table.attrs = {"reference": reference, "max_draws": max_draws, "seed": seed}
    return table


def compare_figures(runs: dict[str, Run], *, var_names: list[str] | None = None, pair_arm: str | None = None,
                    max_pair_dims: int = 4, include_diverged: bool = False) -> dict[str, Any]:
    """Figures of a comparison: marginal overlays of every arm (arviz-plots `plot_dist`), a pair plot
    of one arm's first few unconstrained coordinates (`plot_pair`) and, when runs carry basin labels,
    basin-mass bars, from the healthy chains unless ``include_diverged``. Returns {name:
    PlotCollection or matplotlib Figure}; each has ``savefig``."""
    import arviz_plots
    import matplotlib.pyplot as plt
    import xarray as xr

    runs = {name: healthy(name, run, include_diverged)[0] for name, run in runs.items()}
    trees = {name: run.to_arviz(log_likelihood=False) for name, run in runs.items()}
    names = var_names or [next(iter(next(iter(runs.values())).sites))]
    figures: dict[str, Any] = {"marginals": arviz_plots.plot_dist(trees, var_names=names)}
    arm = pair_arm or next(iter(runs))
    z = runs[arm].positions[..., :max_pair_dims]
    coordinates = xr.Dataset({f"z{i}": (("chain", "draw"), z[..., i]) for i in range(z.shape[-1])})
    figures["pairs"] = arviz_plots.plot_pair(xr.DataTree.from_dict({"posterior": coordinates}))
    masses = {name: m for name, run in runs.items() if (m := basin_masses(run)) is not None}
    if masses:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        width = 0.8 / len(masses)
        for i, (name, m) in enumerate(masses.items()):
            ax.bar(np.arange(len(m)) + i * width, m, width, label=name)
        ax.set(xlabel="basin", ylabel="mass")
        ax.legend()
        figures["basin_masses"] = fig
    return figures
