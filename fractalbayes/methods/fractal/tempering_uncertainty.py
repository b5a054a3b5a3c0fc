"""Fits, scores and uncertainty of the tempering test's five models (:mod:`.tempering_test`).

The models predict the posterior basin masses from the SGD ones:

- ``untempered``: p_sgd itself;
- ``global``: p_sgd^c normalised, one exponent c for every basin;
- ``llc``: the paper's power form, q ∝ p_b^{1/e_k}, e_k = s D_k(xi) (Lemma 3.3), inverted;
- ``free_energy``: only the energy tempered, q_k ∝ exp(-(m/e_k) L_k - lambda_k log(m/e_k))
  (local free energy, Watanabe 2009 Thm 6.7), inverted;
- ``llc_shuffled``: the power form with the lambda_k permuted across basins (the control).

Each is scored by KL(p_b || .), JS and W1 (:func:`fractalbayes.stats.metrics.mass_divergences`).

Uncertainty of the in-sample scores (:func:`bootstrap`): each replicate resamples the SGD nets and
the posterior chains (draws when there is one chain) with replacement, which carries the counting
error of P_SGD and P_B; draws lambda_k* ~ N(lambda_k, se_k^2) from the LLC estimates' Monte Carlo
standard errors (clipped at 0, counted); recomputes the masses; refits every model (warm-started
at the in-sample optimum: plain numpy, nothing recompiled); and rescores. The standard error is
the replicates' standard deviation, the interval their 5th-95th percentiles (a 90 % percentile
interval).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fractalbayes.slt.tempering import (
    TemperingFit,
    fit_tempering,
    predict_posterior,
    temper,
)
from fractalbayes.stats.metrics import mass_divergences

MODELS = ("untempered", "global", "llc", "free_energy", "llc_shuffled")
METRICS = ("kl", "js", "wasserstein")
FITTED = {"llc": "power", "free_energy": "free_energy", "llc_shuffled": "power"}
"""The models with their own fit_tempering fit, and its form."""


def masses(labels: np.ndarray, k: int) -> np.ndarray:
    """Basin masses from labels with Jeffreys smoothing (counts + 1/2): no basin gets mass 0."""
    counts = np.bincount(np.ravel(labels), minlength=k) + 0.5
    return counts / counts.sum()


def fit_models(p_sgd: np.ndarray, p_b: np.ndarray, lambdas: np.ndarray, fit_kwargs: dict, *,
               perm: np.ndarray | None = None, starts: dict[str, TemperingFit] | None = None) -> dict[str, TemperingFit]:
    """The fitted models ("llc", "free_energy" and, with ``perm``, "llc_shuffled" on lambdas[perm]).
    The global exponent is fitted inside each (``fit.c_global``). ``starts``: warm starts by name."""
    starts = starts or {}
    fits = {}
    for name, form in FITTED.items():
        if name == "llc_shuffled" and perm is None:
            continue
        lam = lambdas[perm] if name == "llc_shuffled" else lambdas
        fits[name] = fit_tempering(p_sgd, p_b, lam, form=form, start=starts.get(name), **fit_kwargs)
    return fits


def predictions(fits: dict[str, TemperingFit], p_sgd: np.ndarray, lambdas: np.ndarray,
                perm: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each model's posterior masses predicted from (possibly held-out) SGD masses ``p_sgd``."""
    predicted = {"untempered": p_sgd,
                 "global": temper(p_sgd, np.full_like(p_sgd, fits["llc"].c_global), "power"),
                 "llc": predict_posterior(fits["llc"], p_sgd, lambdas),
                 "free_energy": predict_posterior(fits["free_energy"], p_sgd, lambdas)}
    if "llc_shuffled" in fits and perm is not None:
        predicted["llc_shuffled"] = predict_posterior(fits["llc_shuffled"], p_sgd, lambdas[perm])
    return predicted


def scores(p_b: np.ndarray, predicted: dict[str, np.ndarray],
           degenerate: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Divergences of each model's masses from p_b. Masses are renormalised in float64; a model that
    gives a basin of positive posterior mass zero predicted mass (exponents saturated at the edge of
    the fit's box) has an infinite KL: it is scored NaN and recorded in ``degenerate`` with the reason."""
    result = {}
    for name, predicted_masses in predicted.items():
        predicted_masses = np.asarray(predicted_masses, np.float64)
        predicted_masses = predicted_masses / predicted_masses.sum()
        empty = np.flatnonzero((predicted_masses <= 0) & (p_b > 0))
        if empty.size:
            result[name] = {m: float("nan") for m in METRICS}
            if degenerate is not None:
                degenerate.setdefault(name, f"predicts mass 0 for basins {empty.tolist()} of positive posterior "
                                            f"mass (its exponents saturate): KL infinite, reported as NaN")
        else:
            result[name] = mass_divergences(p_b, predicted_masses)
    return result


def bootstrap(
    labels_sgd: np.ndarray,
    post_units: np.ndarray,
    k: int,
    lambdas: np.ndarray,
    lambda_se: np.ndarray,
    fit_kwargs: dict,
    fits: dict[str, TemperingFit],
    perms: list[np.ndarray],
    num_bootstrap: int,
    rng: np.random.Generator,
    posterior_masses: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Bootstrap replicates of every model's in-sample scores (module docstring).

    Args:
        labels_sgd: basin of each SGD net (nets,).
        post_units: posterior basin labels, one row per resampling unit (chains, or draws as rows of
            one when there is a single chain).
        k: number of basins. lambdas, lambda_se: LLCs and their standard errors (0: known exactly).
        fit_kwargs: fit_tempering's options (d_s, m, xi_range, scale, fractal_dim).
        fits: the in-sample fits (warm starts). perms: shuffled assignments; each replicate refits
            one drawn at random, so the shuffled row's interval is that of a shuffled fit.
        posterior_masses: (resampled units, lambdas*) -> p_b; default: Jeffreys-smoothed counts.

    Returns {"replicates": {model: {metric: (num_bootstrap,) array}}, "lambdas_clipped": count of
    lambda_k* draws clipped at 0}.
    """
    posterior_masses = posterior_masses or (lambda units, lam: masses(units, k))
    replicates = {name: {m: np.full(num_bootstrap, np.nan) for m in METRICS} for name in MODELS}
    clipped = 0
    for b in range(num_bootstrap):
        p_sgd = masses(labels_sgd[rng.integers(0, len(labels_sgd), len(labels_sgd))], k)
        drawn = lambdas + lambda_se * rng.standard_normal(lambdas.size)
        clipped += int(np.sum(drawn < 0))
        lam = np.maximum(drawn, 0.0)
        p_b = posterior_masses(post_units[rng.integers(0, len(post_units), len(post_units))], lam)
        perm = perms[rng.integers(len(perms))] if perms else None
        refits = fit_models(p_sgd, p_b, lam, fit_kwargs, perm=perm, starts=fits)
        for name, values in scores(p_b, predictions(refits, p_sgd, lam, perm)).items():
            for m in METRICS:
                replicates[name][m][b] = values[m]
    return {"replicates": replicates, "lambdas_clipped": clipped}


def summarise(values: np.ndarray) -> dict[str, float]:
    """SE (ddof 1) and the 90 % percentile interval (5th, 95th) of the finite values (NaN if < 2)."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return {"se": float("nan"), "lo": float("nan"), "hi": float("nan")}
    lo, hi = np.percentile(finite, [5, 95])
    return {"se": float(np.std(finite, ddof=1)), "lo": float(lo), "hi": float(hi)}
