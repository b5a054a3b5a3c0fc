"""How close is each sampler's distribution to one or several references: one table, three views,
every distance beside its noise floor.

Per arm against each reference run (Izmailov et al. 2021 for the function-space view):
- chain health: min ESS bulk / tail, max R-hat (arviz-stats), diverging draws, dropped chains, and
  whether it passes ArviZ's thresholds (R-hat <= 1.01, bulk ESS >= 400: ``converged``) or fails them
  because its chains sit apart, each stationary (``chains_apart``: chain means more than
  ``SEPARATED`` within-chain sd apart, and each chain's drift between its two halves under
  1 / ``SEPARATED`` of that separation);
- weight space (flat unconstrained positions, each chain thinned evenly to ``max_draws / chains``
  draws): sum of marginal Wasserstein-1 (arviz-stats), sliced Wasserstein, Gaussian-fit KL,
  ArviZ's 1-nearest-neighbour KL, and the MMD^2 of :func:`fractalbayes.stats.mmd.mmd_test` with its
  MCMC-valid p-value (whole chains permuted, or draws thinned to the ESS; ``mmd_p_value``);
- function space on probe inputs: top-1 agreement and total variation of the mean predictive
  (classifiers), Wasserstein-1 of predictive samples (regression);
- basin masses when both runs carry basin labels (the fractal sampler): KL / JS / Wasserstein.

Every distance ``s`` comes with ``s_floor``, the same statistic between two halves of the reference
and between two halves of the arm (:func:`fractalbayes.stats.noise.split_half_floor`: by chains, so
autocorrelation is respected), the larger of the two: a well-mixed reference has a tiny floor, and
an autocorrelated arm's own Monte Carlo noise must not read as a difference. ``s_beyond_floor`` is
True when the arm is farther from the reference than either is from itself (agreement: a higher
value means closer, so the floor is the lower of the two and True means below it). Plug-in
distances are biased upward (Gaussian KL by about d(d + 3) / 2n nats, docs/calibration.md); a
value under its floor is no evidence of a difference. An arm ``agrees`` with a reference when its
MMD test does not reject at ``ALPHA`` (or cannot run: ``mmd_method`` says why) and no distance is
beyond its floor.

``reference`` may be one arm (rows indexed by arm, as before) or several (``reference=["nuts",
"sgd"]``), and ``pairwise=True`` takes every arm as a reference in turn (the full matrix): then the
rows are indexed by (reference, arm).

`compare_figures` draws the marginal overlays, a forest plot, one pair plot with every arm overlaid
and basin-mass bars, each with a legend naming the arms.

Every view uses only each run's finite, never-diverged chains (``dropped_chains`` says how many
were left out, with a warning); ``include_diverged=True`` keeps them all.

Not ``arviz_stats.compare``: that ranks *models* by their expected log predictive density (LOO);
this compares *samplers'* distributions on one model against reference runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fractalbayes.engine.run import Run
from fractalbayes.errors import InputError
from fractalbayes.model.predict import class_probabilities, predictive_samples
from fractalbayes.model.target import Target
from fractalbayes.stats import metrics
from fractalbayes.stats.diagnostics import healthy, summary
from fractalbayes.stats.mmd import median_heuristic, mmd_test, pairwise_sq_dists
from fractalbayes.stats.noise import split_half_floor, split_halves

ALPHA = 0.05
"""Level of the MMD test behind ``agrees``."""
R_HAT_MAX = 1.01
ESS_MIN = 400
"""ArviZ's recommended thresholds (Vehtari et al. 2021): R-hat <= 1.01 and bulk ESS >= 400."""
SEPARATED = 3.0
"""Chain means this many within-chain sd apart (worst coordinate) count as chains sitting apart."""
HIGHER_IS_CLOSER = ("agreement",)
"""Statistics where a larger value means closer (the floor is a lower bar)."""


def thin_chains(positions: np.ndarray, max_draws: int) -> np.ndarray:
    """(chains, draws, dim) thinned evenly to about ``max_draws`` in all (at least 2 per chain)."""
    chains, draws = positions.shape[:2]
    keep = min(draws, max(2, max_draws // chains))
    index = np.unique(np.linspace(0, draws - 1, keep).round().astype(int))
    return np.asarray(positions[:, index], float)


def chain_separation(positions: np.ndarray) -> tuple[float, float]:
    """(separation, drift): the largest over coordinates of sd(chain means) / within-chain sd, and of
    |mean of a chain's first half - its second half| / within-chain sd. Chains in different basins
    have a large separation and a small drift; a chain still travelling has a large drift."""
    x = np.asarray(positions, float)
    if x.shape[0] < 2 or x.shape[1] < 4:
        return float("nan"), float("nan")
    within = np.sqrt(x.var(axis=1, ddof=1).mean(axis=0)) + 1e-12
    separation = x.mean(axis=1).std(axis=0, ddof=1) / within
    half = x.shape[1] // 2
    drift = np.abs(x[:, :half].mean(axis=1) - x[:, half:].mean(axis=1)).max(axis=0) / within
    return float(separation.max()), float(drift.max())


def chain_health(run: Run) -> dict[str, Any]:
    """Min ESS bulk/tail, max R-hat over all posterior sites, the count of diverging draws (of the
    chains given: `compare` passes the healthy ones), ``converged`` (ArviZ's thresholds) and
    ``chains_apart`` (R-hat fails because chains sit in different places, each stationary)."""
    table = summary({"run": run}, kind="diagnostics", include_diverged=True)
    r_hat = float(table["r_hat"].max()) if run.num_chains > 1 else float("nan")
    ess = float(table["ess_bulk"].min())
    separation, drift = chain_separation(run.positions)
    return {
        "ess_bulk_min": ess,
        "ess_tail_min": float(table["ess_tail"].min()),
        "r_hat_max": r_hat,
        "diverging": int(np.sum(run.stats["diverging"])),
        "converged": bool(r_hat <= R_HAT_MAX and ess >= ESS_MIN),
        "chain_separation": separation,
        "chains_apart": bool(r_hat > R_HAT_MAX and separation > SEPARATED and drift * SEPARATED < separation),
    }


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1])


def weight_statistics(seed: int) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """The weight-space distances on (chains, draws, dim) draws (MMD added per reference)."""
    return {
        "wasserstein_marginal": lambda x, y: metrics.marginal_wasserstein(_flat(x), _flat(y), seed=seed),
        "sliced_wasserstein": lambda x, y: metrics.sliced_wasserstein(_flat(x), _flat(y), seed=seed),
        "gaussian_kl": lambda x, y: metrics.gaussian_kl(_flat(x), _flat(y)),
        "nn_kl": lambda x, y: metrics.nn_kl(_flat(x), _flat(y), seed=seed),
    }


def _mmd_statistic(bandwidth: float, seed: int) -> Callable[[np.ndarray, np.ndarray], float]:
    # one random split: only the observed statistic is used (the floor needs no p-value)
    return lambda x, y: mmd_test(x, y, method="chains", bandwidth=bandwidth, num_permutations=1,
                                 max_draws_per_chain=x.shape[1], seed=seed).statistic


def _is_classifier(target: Target, probe) -> bool:
    try:
        class_probabilities(target, np.zeros((1, target.dim), np.float32), probe)
    except ValueError:
        return False
    return True


def predictions(target: Target, draws: np.ndarray, probe, classifier: bool, seed: int) -> np.ndarray:
    """Class probabilities or predictive samples of (chains, draws, dim) draws, flattened per draw to
    (chains, draws, features) so that whole chains can be split (probe-major, classes last)."""
    flat = _flat(draws)
    if classifier:
        out = class_probabilities(target, flat, probe)
    else:
        out = predictive_samples(target, flat, probe, seed=seed)
    return np.asarray(out).reshape(*draws.shape[:2], -1)


def function_statistics(classifier: bool, num_classes: int = 2) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Function-space statistics on :func:`predictions` of two arms."""
    def merge(a: np.ndarray) -> np.ndarray:
        flat = a.reshape(-1, a.shape[-1])
        return flat.reshape(len(flat), -1, num_classes) if classifier else flat
    if classifier:
        return {"agreement": lambda p, q: metrics.predictive_agreement(merge(p), merge(q)),
                "predictive_tv": lambda p, q: metrics.predictive_tv(merge(p), merge(q))}
    return {"predictive_wasserstein": lambda p, q: metrics.predictive_wasserstein(merge(p), merge(q))}


def num_classes(target: Target, probe) -> int:
    """Classes of a classifier's predictive distribution on ``probe``."""
    return int(class_probabilities(target, np.zeros((1, target.dim), np.float32), probe).shape[-1])


def basin_masses(run: Run) -> np.ndarray | None:
    """Fraction of draws per basin label, when the run carries labels (``stats['basin']``)."""
    if "basin" not in run.stats:
        return None
    labels = run.stats["basin"].reshape(-1).astype(int)
    return np.bincount(labels, minlength=labels.max() + 1) / labels.size


def _masses(labels: np.ndarray, k: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1).astype(int)
    return np.bincount(labels, minlength=k) / labels.size


def beyond(name: str, value: float, floor: float) -> bool:
    """Whether ``value`` is farther than its noise ``floor`` (below it for agreement)."""
    if not (np.isfinite(value) and np.isfinite(floor)):
        return False  # no floor to compare with: nothing resolved
    return bool(value < floor) if name in HIGHER_IS_CLOSER else bool(value > floor)


def _with_floors(values: dict[str, float], floors: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in values.items():
        row |= {name: value, f"{name}_floor": floors[name], f"{name}_beyond_floor": beyond(name, value, floors[name])}
    return row


def _one_reference(runs: dict[str, Run], reference: str, draws: dict[str, np.ndarray],
                   preds: dict[str, np.ndarray] | None, classes: int, health: dict[str, dict],
                   dropped: dict[str, int], seed: int, memo: dict[tuple[str, str], float]) -> pd.DataFrame:
    ref = draws[reference]
    bandwidth = median_heuristic(np.asarray(pairwise_sq_dists(_flat(ref).astype(np.float32))))
    weights = weight_statistics(seed) | {"mmd": _mmd_statistic(bandwidth, seed)}
    functions = function_statistics(classes > 0, classes) if preds is not None else {}

    def own_floors(arm: str) -> dict[str, float]:
        """Split-half floors of one arm; all but the MMD's (whose bandwidth is the reference's) are
        kept in ``memo`` across references."""
        floors = {"mmd": split_half_floor(draws[arm], weights["mmd"])}
        for name, stat in ({k: v for k, v in weights.items() if k != "mmd"} | functions).items():
            if (arm, name) not in memo:
                memo[arm, name] = split_half_floor((preds if name in functions else draws)[arm], stat)
            floors[name] = memo[arm, name]
        return floors
    ref_floors = own_floors(reference)
    ref_labels = runs[reference].stats.get("basin")
    ref_masses = basin_masses(runs[reference])
    rows = {}
    for name, run in runs.items():
        row = dict(health[name]) | {"num_draws": run.num_chains * run.num_draws, "dropped_chains": dropped[name]}
        if name != reference:
            values = {stat: f(draws[name], ref) for stat, f in weight_statistics(seed).items()}
            try:
                test = mmd_test(draws[name], ref, bandwidth=bandwidth, max_draws_per_chain=ref.shape[1], seed=seed)
                p_value, method = test.p_value, test.method
            except InputError as error:  # too few chains to permute and too few draws per ESS to thin
                p_value, method = float("nan"), f"no test: {error}"
            values["mmd"] = weights["mmd"](draws[name], ref)
            values |= {stat: f(preds[name], preds[reference]) for stat, f in functions.items()}
            arm_floors = own_floors(name)
            pick = {True: min, False: max}
            floors = {s: pick[s in HIGHER_IS_CLOSER](ref_floors[s], arm_floors[s]) for s in values}
            row |= _with_floors(values, floors) | {"mmd_p_value": p_value, "mmd_method": method}
            masses = basin_masses(run)
            if masses is not None and ref_masses is not None and len(masses) == len(ref_masses):
                k = len(ref_masses)
                halves = [_masses(h, k) for h in split_halves(np.asarray(ref_labels)[..., None])]
                half_div = metrics.mass_divergences(*halves)
                for key, value in metrics.mass_divergences(ref_masses, masses).items():
                    row |= _with_floors({f"basin_{key}": value}, {f"basin_{key}": half_div[key]})
            row["beyond_floor"] = ", ".join(s for s in values if row[f"{s}_beyond_floor"])
            row["agrees"] = bool(not p_value < ALPHA and not row["beyond_floor"])  # a NaN p-value: floors decide
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "arm"
    return table


def compare(
    runs: dict[str, Run],
    reference: str | Sequence[str] = "nuts",
    probe=None,
    *,
    pairwise: bool = False,
    target: Target | None = None,
    max_draws: int = 1000,
    seed: int = 0,
    include_diverged: bool = False,
) -> pd.DataFrame:
    """Chain health, and weight- and function-space distances with their noise floors, of every arm
    against ``reference`` (see the module docstring for the columns).

    Args:
        runs: arm name -> Run, all of one target.
        reference: the reference arm, or several (``["nuts", "sgd"]``).
        probe: inputs for the model's first data argument; enables the function-space columns (needs
            the target, taken from the runs or given as ``target``).
        pairwise: every arm is a reference in turn (the full pairwise matrix); ``reference`` ignored.
        max_draws: draws per arm (each chain thinned evenly, so chains stay whole for the MMD test
            and the split-half floors).
        seed: seed of the statistics' random projections and permutations.
        include_diverged: keep diverged or non-finite chains (by default they are left out of every
            column and counted in ``dropped_chains``).

    Returns:
        One row per arm (index "arm") for a single reference; rows indexed by (reference, arm)
        for several or ``pairwise``. ``attrs`` records the references, max_draws and seed.

    Not ``arviz_stats.compare`` (which ranks models by LOO): this compares samplers of one model.
    """
    references = list(runs) if pairwise else ([reference] if isinstance(reference, str) else list(reference))
    if not references:
        raise InputError("no reference given: pass reference='nuts' (an arm), a list of arms, or pairwise=True")
    for name in references:
        if name not in runs:
            raise InputError(f"reference {name!r} is not among the runs {sorted(runs)}")
    fingerprints = {name: run.config.target.fingerprint for name, run in runs.items()}
    if len(set(fingerprints.values())) > 1:
        raise InputError(f"runs sample different targets (fingerprints {fingerprints}); compare runs of one target")
    target = target or next((runs[r].target for r in references if runs[r].target), None) or next(
        (r.target for r in runs.values() if r.target), None)
    if probe is not None and target is None:
        raise InputError("function-space comparison needs the target: pass target=... (runs loaded from disk carry none)")
    kept = {name: healthy(name, run, include_diverged) for name, run in runs.items()}
    dropped = {name: d for name, (_, d) in kept.items()}
    runs = {name: run for name, (run, _) in kept.items()}
    draws = {name: thin_chains(run.positions, max_draws) for name, run in runs.items()}
    health = {name: chain_health(run) for name, run in runs.items()}
    classifier = probe is not None and _is_classifier(target, probe)
    classes = num_classes(target, probe) if classifier else 0
    preds = None if probe is None else {
        name: predictions(target, d, probe, classifier, seed) for name, d in draws.items()}
    memo: dict[tuple[str, str], float] = {}
    tables = {ref: _one_reference(runs, ref, draws, preds, classes, health, dropped, seed, memo) for ref in references}
    single = isinstance(reference, str) and not pairwise
    table = tables[reference] if single else pd.concat(tables, names=["reference", "arm"])
    table.attrs = {"reference": reference if single else references, "max_draws": max_draws, "seed": seed}
    return table


def verdicts(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per reference of a :func:`compare` table: the arms that agree with it, those that differ
    (with the statistics beyond their floors and the MMD p-value), and its health."""
    frame = table if isinstance(table.index, pd.MultiIndex) else pd.concat({table.attrs["reference"]: table},
                                                                          names=["reference", "arm"])
    out = {}
    for ref, part in frame.groupby(level="reference", sort=False):
        part = part.droplevel("reference")
        others = part.drop(index=ref)
        out[ref] = {
            "agree": [a for a in others.index if bool(others.loc[a, "agrees"])],
            "differ": {a: {"beyond_floor": others.loc[a, "beyond_floor"], "mmd_p_value": float(others.loc[a, "mmd_p_value"])}
                       for a in others.index if not bool(others.loc[a, "agrees"])},
            "health": {"r_hat_max": float(part.loc[ref, "r_hat_max"]), "ess_bulk_min": float(part.loc[ref, "ess_bulk_min"]),
                       "converged": bool(part.loc[ref, "converged"]), "chains_apart": bool(part.loc[ref, "chains_apart"])},
        }
    return out


def site_trees(runs: dict[str, Run], names: list[str], max_per_chain: int = 500) -> dict[str, Any]:
    """{arm: DataTree} of the named sites with the SAME number of draws per chain in every arm
    (thinned evenly), so that arviz-plots' overlay of the arms is not padded with NaN."""
    import xarray as xr

    keep = min(max_per_chain, *(run.num_draws for run in runs.values()))
    trees = {}
    for arm, run in runs.items():
        index = np.unique(np.linspace(0, run.num_draws - 1, keep).round().astype(int))
        data = {}
        for name in names:
            values = np.asarray(run.sites[name])[:, index]
            data[name] = (("chain", "draw", *(f"{name}_dim_{i}" for i in range(values.ndim - 2))), values)
        dataset = xr.Dataset(data)
        # index coordinates on every dimension: arviz-plots selects by them (plot_rank refuses without)
        trees[arm] = xr.DataTree.from_dict({"posterior": dataset.assign_coords(
            {dim: np.arange(size) for dim, size in dataset.sizes.items()})})
    return trees


def legend_and_title(collection: Any, title: str) -> Any:
    """The PlotCollection's matplotlib figure with a legend naming the arms, a title above the
    panels' own titles (room made at the top) and at least 3.2 inches of height."""
    figure = collection.get_viz("figure")
    if not figure.legends:  # plot_ess draws its own
        collection.add_legend("model", title="arm", loc="upper right", bbox_to_anchor=(1.0, 1.0))
    rows = max(len({round(ax.get_position().y0, 3) for ax in figure.axes}), 1)
    width, height = figure.get_size_inches()
    height = max(height, 3.2, 2.4 * rows)  # room for each row's title above its axes
    figure.set_size_inches(max(width, 8.0), height)
    figure.set_layout_engine(None)
    figure.subplots_adjust(top=1 - 0.75 / height, bottom=0.6 / height, right=0.88, left=0.07, hspace=0.6)
    figure.suptitle(title, x=0.01, y=0.995, ha="left", va="top", fontsize=11)
    return collection


def compare_figures(runs: dict[str, Run], *, var_names: list[str] | None = None, max_pair_dims: int = 4,
                    max_forest: int = 12, include_diverged: bool = False) -> dict[str, Any]:
    """Figures of a comparison, from the healthy chains unless ``include_diverged``; each names every
    arm in its legend: marginal overlays (arviz-plots ``plot_dist``; ``var_names`` default: the
    site with the fewest entries, the last of equals, e.g. the output bias), a forest plot of every arm's
    credible intervals (``plot_forest``, the first ``max_forest`` entries of the site), local ESS
    against ArviZ's 400 (``plot_ess``), ONE pair plot
    of the first ``max_pair_dims`` unconstrained coordinates with every arm overlaid (``plot_pair``)
    and, when runs carry basin labels, basin-mass bars with integer basin ticks. Returns {name:
    PlotCollection or matplotlib Figure}; each has ``savefig``."""
    import arviz_plots
    import matplotlib.pyplot as plt
    runs = {name: healthy(name, run, include_diverged)[0] for name, run in runs.items()}
    sites = next(iter(runs.values())).sites
    names = var_names or [min(reversed(list(sites)), key=lambda n: np.prod(sites[n].shape[2:], dtype=int))]
    trees = site_trees(runs, names)
    marginals = arviz_plots.plot_dist(trees, var_names=names, visuals={"point_estimate_text": False})
    figures: dict[str, Any] = {"marginals": legend_and_title(marginals, f"Marginals of {', '.join(names)} by arm")}
    site = runs[next(iter(runs))].sites[names[0]]
    coords = None
    if site.ndim > 2 and int(np.prod(site.shape[2:])) > max_forest:
        coords = {f"{names[0]}_dim_0": list(range(min(max_forest, site.shape[2])))}
    forest = arviz_plots.plot_forest(trees, var_names=names[:1], coords=coords, aes={"color": ["model"]})
    figures["forest"] = legend_and_title(forest, f"94% intervals of {names[0]} by arm")
    ess = arviz_plots.plot_ess(trees, var_names=names[:1], coords=coords, aes={"color": ["model"]})
    figures["ess"] = legend_and_title(ess, f"Local ESS of {names[0]} by arm (line: 400, ArviZ's minimum)")
    dims = min(max_pair_dims, next(iter(runs.values())).positions.shape[-1])
    figures["pairs"] = pair_figure({name: thin_chains(run.positions, 400)[..., :dims] for name, run in runs.items()})
    masses = {name: m for name, run in runs.items() if (m := basin_masses(run)) is not None}
    if masses:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        k = max(len(m) for m in masses.values())
        width = 0.8 / len(masses)
        for i, (name, m) in enumerate(masses.items()):
            ax.bar(np.arange(len(m)) + (i - (len(masses) - 1) / 2) * width, m, width, label=name)
        ax.set_xticks(np.arange(k))
        ax.set(xlabel="basin", ylabel="mass (fraction of draws)", title="Basin masses by arm")
        ax.legend(title="arm")
        fig.tight_layout()
        figures["basin_masses"] = fig
    return figures


def pair_figure(draws: dict[str, np.ndarray]) -> Any:
    """ONE pair plot with every arm overlaid: the lower triangle of scatter plots of the given
    (chains, draws, dims) coordinates, one colour per arm, one legend naming the arms (matplotlib:
    arviz-plots' ``plot_pair`` draws one model per figure)."""
    import matplotlib.pyplot as plt

    dims = next(iter(draws.values())).shape[-1]
    panels = max(dims - 1, 1)
    fig, axes = plt.subplots(panels, panels, figsize=(2.2 * panels + 1.6, 2.2 * panels), squeeze=False)
    for row in range(panels):
        for col in range(panels):
            ax, (i, j) = axes[row, col], (col, row + 1) if dims > 1 else (0, 0)
            if col > row:
                ax.set_axis_off()
                continue
            for index, (name, d) in enumerate(draws.items()):
                flat = d.reshape(-1, dims)
                ax.scatter(flat[:, i], flat[:, j], s=4, alpha=0.35, color=f"C{index}", label=name, rasterized=True)
            ax.set_xlabel(f"z{i}" if row == panels - 1 else "")
            ax.set_ylabel(f"z{j}" if col == 0 else "")
            ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=f"C{k}", label=name) for k, name in enumerate(draws)]
    fig.legend(handles=handles, title="arm", loc="upper right")
    fig.suptitle(f"Unconstrained coordinates z0..z{dims - 1}, every arm", x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.85, 0.95))
    return fig


def legend_labels(figure: Any) -> list[str]:
    """Every legend entry of a figure (matplotlib Figure or PlotCollection): its own and its axes'."""
    figure = figure.get_viz("figure") if hasattr(figure, "get_viz") else figure
    legends = list(figure.legends) + [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    return [text.get_text() for legend in legends for text in legend.get_texts()]
