"""Figures of a displacement analysis: R(t) on log-log axes with its fits, and the LLC series.

The curves drawn are those of :class:`~fractalbayes.slt.diffusion.result.DiffusionResult`: the
power law log R = intercept + slope log t (eq. 7 of SCIENCE.md section 3), the Brownian
reference R = c t^(1/2), the logarithmic baseline R = a + b ln t and the two-regime fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fractalbayes.errors import InputError
from fractalbayes.slt.diffusion.result import DiffusionResult


def plot_displacement(result: DiffusionResult, ax: Any = None, max_chains: int = 20) -> Any:
    """Log-log R(t): ensemble mean, 16-84 % chain band and up to ``max_chains`` chains, the
    power-law fit on the window, the Brownian reference (slope 1/2), the logarithmic baseline
    and the two-regime fit with its crossover. Returns the matplotlib Figure (not shown)."""
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(6.4, 4.8), layout="constrained").subplots()
    t, radius = result.lags, result.radius
    for chain in radius[:max_chains]:
        ax.plot(t, chain, color="0.75", lw=0.5, zorder=1)
    lo, hi = np.percentile(radius, [16, 84], axis=0)
    ax.fill_between(t, lo, hi, color="C0", alpha=0.2, lw=0, label="chains 16-84 %")
    ax.plot(t, result.radius_mean, color="C0", lw=2, label="mean R(t)")
    tw = t[result.in_window]
    pl = result.power_law
    ax.plot(tw, np.exp(pl.intercept) * tw**pl.slope, "C3-", lw=1.5,
            label=f"power law, slope {pl.slope:.3f} (r$^2$ {pl.r2:.3f})")
    brownian = np.exp(result.brownian.params[0]) * np.sqrt(tw)
    ax.plot(tw, brownian, "k--", lw=1, label="Brownian, slope 1/2")
    a, b = result.logarithmic.params
    ax.plot(tw, a + b * np.log(tw), "C2:", lw=1.5, label="logarithmic a + b ln t")
    two = result.two_regime
    if np.isfinite(two.crossover):
        u = np.log(t[t > 0] / two.crossover)
        ax.plot(t[t > 0], np.exp(two.log_r_cross + two.early_slope * np.minimum(u, 0)
                                 + two.late_slope * np.maximum(u, 0)), "C1-.", lw=1,
                label=f"two-regime {two.early_slope:.2f} -> {two.late_slope:.2f}")
        ax.axvline(two.crossover, color="C1", lw=0.8, ls=":")
    ax.axvspan(*result.window, color="0.5", alpha=0.07, lw=0)
    ax.set(xscale="log", yscale="log", xlabel=f"lag t (steps after t0 = {result.t0:g})",
           ylabel="R(t) = ||w(t0 + t) - w(t0)||")
    ax.legend(fontsize="small")
    return ax.figure


def plot_llc(result: DiffusionResult, ax: Any = None) -> Any:
    """LLC over training steps with the fit window shaded and lambda_bar marked. Needs an LLC
    given as a series (``steps``, ``values``). Returns the matplotlib Figure (not shown)."""
    from matplotlib.figure import Figure

    if result.llc_steps is None:
        raise InputError("no LLC series in this result; pass llc=<object with .steps and .values>.")
    if ax is None:
        ax = Figure(figsize=(6.4, 3.6), layout="constrained").subplots()
    ax.plot(result.llc_steps, result.llc_values, "o-", color="C4", ms=3, label="LLC")
    start, end = (result.t0 + w for w in result.window)
    ax.axvspan(start, end, color="0.5", alpha=0.1, lw=0, label="fit window")
    ax.axhline(result.lambda_bar, color="C4", ls="--", lw=1,
               label=f"lambda_bar = {result.lambda_bar:.3g}")
    ax.set(xlabel="step", ylabel="local learning coefficient")
    ax.legend(fontsize="small")
    return ax.figure
