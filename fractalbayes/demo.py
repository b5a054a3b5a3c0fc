"""The README's main job: one small model sampled every way, compared, written to disk.

A 2-8-2 ReLU classifier on scikit-learn's Moons (150 training points): SGD iterates with weight
decay matching the prior (so SGD and the posterior share one potential), SG-Langevin, and the NUTS
reference. Prints the comparison table; writes each run as ArviZ netCDF, the tables as CSV and
Markdown, and figures (marginal overlays, predictive maps, loss traces).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import data, models  # noqa: E402
from .compare import compare  # noqa: E402
from .predict import class_probabilities  # noqa: E402
from .sampling import sample  # noqa: E402
from .target import from_numpyro  # noqa: E402

PRIOR_SCALE = 1.0


def arms(n_train: int, quick: bool) -> dict[str, tuple[str, dict]]:
    scale = 0.25 if quick else 1.0
    draws, burn = int(400 * scale), int(4000 * scale)
    sg = {"num_samples": draws, "burn_in": burn, "thin": 10}
    return {
        "sgd": ("sgd", sg | {"learning_rate": 0.05, "weight_decay": 1 / (n_train * PRIOR_SCALE**2)}),
        "sgld": ("sgld", sg | {"step_size": 1e-3}),
        "nuts": ("nuts", {"num_samples": int(300 * scale), "burn_in": int(300 * scale)}),
    }


def predictive_map_figure(target, runs, x, y):
    """Mean predictive p(y = 1 | x) of each arm on a grid, with the training points."""
    grid = np.stack(np.meshgrid(np.linspace(-2.5, 2.5, 60), np.linspace(-2.5, 2.5, 60)), -1).reshape(-1, 2)
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.6), sharey=True, squeeze=False)
    for ax, (name, run) in zip(axes[0], runs.items()):
        flat = run.positions.reshape(-1, run.positions.shape[-1])[:: max(1, run.num_chains * run.num_draws // 400)]
        probs = class_probabilities(target, flat, grid.astype(np.float32))[..., 1].mean(0)
        ax.contourf(grid[:, 0].reshape(60, 60), grid[:, 1].reshape(60, 60), probs.reshape(60, 60),
                    levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", edgecolors="w", linewidths=0.5, s=16)
        ax.set_title(f"{name}: mean p(y=1 | x)")
    fig.tight_layout()
    return fig


def loss_trace_figure(runs):
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, run in runs.items():
        ax.plot(run.stats["loss"].mean(0), label=name)
    ax.set(xlabel="draw", ylabel="minibatch mean NLL (chain mean)", yscale="log")
    ax.legend()
    fig.tight_layout()
    return fig


def run_demo(out: str | Path = "fractalbayes-demo", *, quick: bool = False, seed: int = 0) -> pd.DataFrame:
    """Sample, compare and write everything under `out`; returns the comparison table."""
    import arviz_plots

    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    moons = data.moons(200, noise=0.2, seed=seed)
    model = functools.partial(models.mlp_classifier, widths=(8,), num_classes=2, prior_scale=PRIOR_SCALE)
    target = from_numpyro(model, moons.x_train, moons.y_train, batch_size=32)
    runs = {}
    for name, (sampler, options) in arms(target.n_data, quick).items():
        tic = time.perf_counter()
        runs[name] = sample(target, sampler, num_chains=4, seed=seed, **options)
        runs[name].save(out / "runs" / f"{name}.nc")
        print(f"  {name:5s} {time.perf_counter() - tic:6.1f} s  -> {out / 'runs' / f'{name}.nc'}")

    table = compare(runs, reference="nuts", probe=moons.x_test)
    for name, run in runs.items():
        probs = class_probabilities(target, run.positions.reshape(-1, target.dim)[::4], moons.x_test).mean(0)
        table.loc[name, "test_accuracy"] = float(np.mean(probs.argmax(-1) == moons.y_test))
        table.loc[name, "seconds"] = run.timings["total_s"]
    table.to_csv(out / "comparison.csv")
    (out / "comparison.md").write_text(table.T.to_markdown(floatfmt=".4g"))

    trees = {name: run.to_arviz() for name, run in runs.items()}
    arviz_plots.plot_dist(trees, var_names=["w1"]).savefig(out / "figures" / "marginals_w1.png")
    predictive_map_figure(target, runs, moons.x_train, moons.y_train).savefig(out / "figures" / "predictive.png", dpi=110)
    loss_trace_figure(runs).savefig(out / "figures" / "loss.png", dpi=110)
    plt.close("all")
    return table
