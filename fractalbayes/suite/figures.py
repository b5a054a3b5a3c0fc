"""Figures of one suite cell, drawn by the runner as the cell finishes (matplotlib, arviz-plots)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files

import matplotlib.pyplot as plt
import numpy as np

from fractalbayes.model.predict import class_probabilities
from fractalbayes.stats.comparison import legend_and_title, site_trees
from fractalbayes.suite.analyses import is_classifier


def loss_trace_figure(runs: dict) -> plt.Figure:
    """Chain-mean minibatch loss per draw of every arm."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, run in runs.items():
        ax.plot(run.stats["loss"].mean(0), label=name)
    ax.set(xlabel="draw", ylabel="minibatch mean NLL (chain mean)", yscale="log", title="Training loss by arm")
    ax.legend(title="arm")
    fig.tight_layout()
    return fig


def predictive_map_figure(target, runs: dict, x: np.ndarray, y: np.ndarray) -> plt.Figure:
    """Mean predictive p(y = 1 | x) of each arm on a grid over 2-D inputs, with the training points."""
    low, high = x.min(0) - 0.5, x.max(0) + 0.5
    axes_1d = [np.linspace(low[i], high[i], 60) for i in range(2)]
    grid = np.stack(np.meshgrid(*axes_1d), -1).reshape(-1, 2).astype(np.float32)
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.6), sharey=True, squeeze=False)
    for ax, (name, run) in zip(axes[0], runs.items()):
        flat = run.positions.reshape(-1, run.positions.shape[-1])[:: max(1, run.num_chains * run.num_draws // 400)]
        probs = class_probabilities(target, flat, grid)[..., 1].mean(0)
        ax.contourf(grid[:, 0].reshape(60, 60), grid[:, 1].reshape(60, 60), probs.reshape(60, 60),
                    levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", edgecolors="w", linewidths=0.5, s=16)
        ax.set_title(f"{name}: mean p(y=1 | x)")
    fig.tight_layout()
    return fig


def _marginal_site(runs: dict, choice: str) -> str | None:
    """The site to overlay: the given one, or ("auto") the last latent site with 1-16 entries."""
    sites = next(iter(runs.values())).sites
    if choice != "auto":
        return choice
    small = [name for name, values in sites.items() if 1 <= np.prod(values.shape[2:], dtype=int) <= 16]
    return small[-1] if small else None


def per_arm_chain_figures(trees: dict[str, Any], site: str) -> dict[str, Any]:
    """arviz-plots' trace-and-marginal (``plot_trace_dist``) and rank (``plot_rank``) plots of one
    site, one figure per arm titled with it: both draw chains, not arms, so they cannot overlay the
    arms (arviz-plots 1.3.2's ``plot_rank`` refuses several models); rank plots need >= 2 chains."""
    import arviz_plots

    figures = {}
    for arm, tree in trees.items():
        trace = arviz_plots.plot_trace_dist(tree, var_names=[site], compact=True)
        figures[f"trace_{arm}"] = _titled(trace, f"{arm}: trace and marginal of {site}, by chain")
        if tree["posterior"].sizes["chain"] > 1:
            rank = arviz_plots.plot_rank(tree, var_names=[site])
            figures[f"rank_{arm}"] = _titled(rank, f"{arm}: rank plot of {site} (uniform when chains mix)")
    return figures


def _titled(collection: Any, title: str) -> Any:
    """A title above the panels' own, with room made for it."""
    figure = collection.get_viz("figure")
    height = max(figure.get_size_inches()[1], 2.8)
    figure.set_size_inches(figure.get_size_inches()[0], height)
    figure.set_layout_engine(None)
    figure.subplots_adjust(top=1 - 0.8 / height, bottom=0.5 / height, hspace=0.6)
    figure.suptitle(title, x=0.01, y=0.995, ha="left", va="top", fontsize=11)
    return collection


def cell_figures(ctx) -> dict[str, Any]:
    """Loss traces and marginal overlays (with "summary"), predictive maps of 2-D classifiers (with
    "predictive"). Each value has ``savefig(path, dpi=...)``."""
    import arviz_plots

    analyses, runs, figures = ctx.config["analyses"], ctx.runs, {}
    if not runs:
        return figures
    if "summary" in analyses:
        figures["loss"] = loss_trace_figure(runs)
        site = _marginal_site(runs, analyses["summary"]["marginals"])
        if site is not None:
            trees = site_trees(runs, [site])
            marginals = arviz_plots.plot_dist(trees, var_names=[site])
            figures[f"marginals_{site}"] = legend_and_title(marginals, f"Marginals of {site} by arm")
            figures |= per_arm_chain_figures(trees, site)
    x = np.asarray(ctx.dataset.x_train)
    if "predictive" in analyses and x.ndim == 2 and x.shape[1] == 2 and is_classifier(ctx.target, x):
        figures["predictive"] = predictive_map_figure(ctx.target, runs, x, np.asarray(ctx.dataset.y_train))
    return figures


def close_figures() -> None:
    plt.close("all")
