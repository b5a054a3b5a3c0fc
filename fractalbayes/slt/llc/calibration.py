"""The LLC over a step size x localization grid, to pick where the estimates plateau.

For each cell (h, gamma) :func:`calibrate` estimates lambda_hat = n beta (E_pi[L] - L_n(w*))
(Lau et al. 2023, equation (1) of :mod:`~fractalbayes.slt.llc.estimator`) at one centre, with the
same compiled sampler (the numbers are traced), and tabulates the estimate with its health checks:
the MALA acceptance falls and the step-size bias grows with h, so a trustworthy h sits where
lambda_hat no longer changes with it and the acceptance is 0.9-0.99.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fractalbayes import checks
from fractalbayes.errors import ModelError, SamplerError
from fractalbayes.model.target import Target
from fractalbayes.slt.llc.chains import _sample_chains
from fractalbayes.slt.llc.estimator import LLCResult, _centre, _result, estimate
from fractalbayes.slt.llc.settings import NAMES, LLCSettings


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """LLC estimates over a step size x localization grid, to pick where the traces plateau."""

    table: pd.DataFrame
    """One row per cell: step_size, localization, llc_mean, llc_std, llc_mcse, r_hat, ess,
    mala_acceptance, diverged (number of chains), warnings."""
    results: dict[tuple[float, float], LLCResult | None] = field(repr=False)
    """(step_size, localization) -> the estimate (None where every chain diverged)."""
    center: np.ndarray = field(repr=False)

    def figure(self):
        """Matplotlib figure: the chains' lambda_hat traces per cell (rows: localization, columns:
        step size), and lambda_hat against step size per localization (error bars: chain std)."""
        import matplotlib.pyplot as plt

        steps = sorted(self.table["step_size"].unique())
        locs = sorted(self.table["localization"].unique())
        fig = plt.figure(figsize=(2.4 * len(steps) + 1, 1.9 * len(locs) + 3.2), layout="constrained")
        grid = fig.add_gridspec(len(locs) + 1, len(steps), height_ratios=[1] * len(locs) + [1.6])
        for i, loc in enumerate(locs):
            for j, step in enumerate(steps):
                ax = fig.add_subplot(grid[i, j])
                result = self.results[(step, loc)]
                if result is None:
                    ax.text(0.5, 0.5, "all chains\ndiverged", ha="center", va="center",
                            transform=ax.transAxes)
                else:
                    ax.plot(result.llc_trace.T, lw=0.5, alpha=0.8)
                    ax.axhline(result.mean, color="k", lw=1)
                ax.set_title(f"h={step:g}, γ={loc:g}", fontsize=8)
                ax.tick_params(labelsize=7)
                if j == 0:
                    ax.set_ylabel("λ̂ trace", fontsize=8)
        ax = fig.add_subplot(grid[len(locs), :])
        for loc in locs:
            rows = self.table[self.table["localization"] == loc].sort_values("step_size")
            ax.errorbar(rows["step_size"], rows["llc_mean"], yerr=rows["llc_std"], marker="o", capsize=3,
                        label=f"γ = {loc:g}")
        ax.set_xscale("log")
        ax.set_xlabel("step size h")
        ax.set_ylabel("λ̂")
        ax.legend(fontsize=8)
        return fig


def calibrate(
    target: Target,
    step_sizes: Sequence[float],
    localizations: Sequence[float] = (1.0,),
    center: Any = None,
    **estimate_kwargs: Any,
) -> CalibrationResult:
    """:func:`estimate` on every (step size, localization) pair at one centre (trained once when
    None). The sampler's compiled kernel is shared by all cells (the numbers are traced). Health
    warnings are collected per cell in the table rather than emitted; a cell where every chain
    diverged has NaN estimates. ``estimate_kwargs`` go to :func:`estimate` for every cell."""
    defaults = {k: p.default for k, p in inspect.signature(estimate).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    grid = {"step_size", "localization"} & set(estimate_kwargs)
    unknown = sorted(grid | (set(estimate_kwargs) - set(defaults)))
    if unknown:
        raise ModelError(
            f"calibrate does not take {unknown}: the grid sets step_size and localization; other "
            f"options are estimate's {sorted(set(defaults) - {'step_size', 'localization'})}"
        )
    kw = {**defaults, **estimate_kwargs}
    if kw["sampler"] == "nuts":
        raise ModelError(
            "calibrate tunes SG-MCMC step sizes; NUTS adapts its own: use sampler 'sgld' or 'sghmc'"
        )
    if not len(step_sizes) or not len(localizations):
        raise ModelError("calibrate needs at least one step size and one localization")
    step_sizes = [checks.check("step_size", h, checks.positive(), ModelError) for h in step_sizes]
    localizations = [checks.check("localization", loc, checks.positive(allow_zero=True), ModelError)
                     for loc in localizations]
    s = LLCSettings.build(
        target, **{k: kw[k] for k in NAMES if k not in ("step_size", "localization")},
        step_size=step_sizes[0], localization=localizations[0], seed=kw["seed"],
    )
    flat, _ = _centre(target, center, kw["train_options"], s.seed)
    centers = np.repeat(flat[None], s.num_chains, axis=0)
    rows, results = [], {}
    for loc in localizations:
        for h in step_sizes:
            key = (h, loc)
            cell = dataclasses.replace(s, step_size=h, localization=loc)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    results[key] = _result(_sample_chains(target, centers, cell, kw["progress"]), flat, cell, None)
                except SamplerError:
                    results[key] = None
            rows.append(_calibration_row(key, results[key], s.num_chains))
    return CalibrationResult(table=pd.DataFrame(rows), results=results, center=flat)


def _calibration_row(key: tuple[float, float], result: LLCResult | None, num_chains: int) -> dict:
    """One row of the calibration table (NaN estimates where every chain diverged)."""
    row = {"step_size": key[0], "localization": key[1]}
    if result is None:
        return row | {"llc_mean": math.nan, "llc_std": math.nan, "llc_mcse": math.nan, "r_hat": math.nan,
                      "ess": math.nan, "mala_acceptance": math.nan, "diverged": num_chains,
                      "warnings": "every chain diverged"}
    return row | {
        "llc_mean": result.mean, "llc_std": result.std, "llc_mcse": result.mcse, "r_hat": result.r_hat,
        "ess": result.ess,
        "mala_acceptance": math.nan if result.mala_acceptance is None else result.mala_acceptance,
        "diverged": int(result.diverged.sum()), "warnings": "; ".join(result.warnings),
    }
