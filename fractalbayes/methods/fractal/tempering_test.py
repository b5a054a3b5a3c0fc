"""The paper's basin-tempering test with the controls it lacks (Hennick & De Baerdemacker,
arXiv 2503.22478, Moons experiment): untempered, one global exponent, the LLC form, and the LLC form
with the lambda_k shuffled across basins, in-sample and on held-out halves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats

from fractalbayes.engine.run import Run
from fractalbayes.errors import ModelError
from fractalbayes.methods.fractal.sampler import (
    LLC_DEFAULTS,
    check_d_s,
    basin_llcs,
    default_probe,
    measured_d_s,
    mixture_weights,
    sgd_endpoints,
    tempered_free_energy,
)
from fractalbayes.model.target import Target
from fractalbayes.stats.basins import Basins, find_basins, function_features, medoid_indices
from fractalbayes.stats.metrics import mass_divergences
from fractalbayes.slt import evidence
from fractalbayes.slt.tempering import basin_diffusion_coefficient, fit_tempering, temper
MODELS = ("untempered", "global", "llc", "llc_shuffled")
METRICS = ("kl", "js", "wasserstein")


@dataclass(frozen=True)
class TemperingResult:
    """The paper's basin-tempering test with its controls (see :func:`tempering_test`)."""

    table: pd.DataFrame
    """Models x metrics (KL, JS, W of posterior vs model masses), in-sample and held-out (median, IQR)."""
    fit: Any
    """The in-sample :class:`~fractalbayes.tempering.TemperingFit` of the LLC form."""
    permutation_rank: int
    """Rank of the true lambda assignment among all (or sampled) assignments, ties broken at random."""
    num_permutations: int
    p_value: float
    """Permutation p-value of the LLC form (:func:`fractalbayes.slt.evidence.permutation_test`)."""
    power: float
    """P(p <= 0.05) on planted LLC-form masses at this run's K, lambdas, fit and effective counts."""
    verdict: str
    """One line: "LLC form beats a global exponent: yes / no / undetermined at alpha = 0.05, power P"."""
    identifiability: str
    """Which of xi, scale and d_s the basin masses determine."""
    p_sgd: np.ndarray
    p_b: np.ndarray
    lambdas: np.ndarray
    d_s: float
    basins: Basins
    mixing: dict[str, Any]
    per_k: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)

    def figure(self):
        """Masses per basin for each model, and the fit objective against xi."""
        import matplotlib.pyplot as plt

        fig, (bars, curve) = plt.subplots(1, 2, figsize=(10, 3.8))
        k = np.arange(len(self.p_b))
        global_masses = temper(self.p_sgd, np.full_like(self.p_sgd, self.fit.c_global), "power")
        series = {"posterior": self.p_b, "SGD": self.p_sgd, "global": global_masses, "LLC-tempered": self.fit.p_tempered}
        width = 0.8 / len(series)
        for i, (name, masses) in enumerate(series.items()):
            bars.bar(k + i * width, masses, width, label=name)
        bars.set(xlabel="basin", ylabel="mass", xticks=k + 0.4 - width / 2, xticklabels=k)
        bars.legend(fontsize=8)
        xis = np.geomspace(0.05, 1.0 if self.fit.xi_range == "paper" else 5.0, 40)
        curve.plot(xis, [_objective_at(self, xi) for xi in xis])
        curve.axvline(self.fit.xi, ls="--", c="k", lw=0.8, label=f"fitted xi={self.fit.xi:.2g}")
        curve.set(xscale="log", yscale="log", xlabel="xi", ylabel="KL(p_sgd || q), scale fixed at fit")
        curve.legend(fontsize=8)
        fig.tight_layout()
        return fig


def _objective_at(result: TemperingResult, xi: float) -> float:
    exponents = result.fit.scale * basin_diffusion_coefficient(result.lambdas, xi, result.d_s, result.fit.fractal_dim)
    q = result.p_b ** (1 / exponents)
    return mass_divergences(result.p_sgd, q / q.sum())["kl"]


def _masses(labels: np.ndarray, k: int) -> np.ndarray:
    """Basin masses from labels with Jeffreys smoothing (counts + 1/2): no basin gets mass 0."""
    counts = np.bincount(np.ravel(labels), minlength=k) + 0.5
    return counts / counts.sum()


def _model_masses(fit, p_sgd: np.ndarray, lambdas: np.ndarray, d_s: float) -> dict[str, np.ndarray]:
    """Each model's prediction of the posterior masses from SGD masses, with the fit's parameters."""
    exponents = fit.scale * basin_diffusion_coefficient(lambdas, fit.xi, d_s, fit.fractal_dim)
    return {
        "untempered": p_sgd,
        "global": temper(p_sgd, np.full_like(p_sgd, fit.c_global), "power"),
        "llc": temper(p_sgd, exponents, fit.tempering),
    }


def _scores(p_b: np.ndarray, predicted: dict[str, np.ndarray],
            degenerate: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Divergences of each model's masses from p_b. Masses are renormalised in float64; a model that
    gives a basin of positive posterior mass zero predicted mass (exponents saturated at the edge of
    the fit's box) has an infinite KL: it is scored NaN and recorded in ``degenerate`` with the reason."""
    scores = {}
    for name, masses in predicted.items():
        masses = np.asarray(masses, np.float64)
        masses = masses / masses.sum()
        empty = np.flatnonzero((masses <= 0) & (p_b > 0))
        if empty.size:
            scores[name] = {m: float("nan") for m in METRICS}
            if degenerate is not None:
                degenerate.setdefault(name, f"predicts mass 0 for basins {empty.tolist()} of positive posterior "
                                            f"mass (its exponents saturate): KL infinite, reported as NaN")
        else:
            scores[name] = mass_divergences(p_b, masses)
    return scores


def _posterior_count(labels_post: np.ndarray, k: int) -> float:
    """Effective number of independent posterior basin labels: the smallest bulk ESS of the basin
    indicators over basins that vary, or the number of chains when no chain switches basins."""
    ess = []
    for basin in range(k):
        indicator = (labels_post == basin).astype(float)
        if indicator.std() > 0 and np.any(indicator.std(axis=1) > 0):
            ess.append(float(array_stats.ess(indicator, chain_axis=0, draw_axis=1, method="bulk")))
    finite = [e for e in ess if np.isfinite(e) and e > 0]
    return min(finite) if finite else float(labels_post.shape[0])


def _identifiability(scale: Any, k: int, lambdas: np.ndarray) -> str:
    if np.ptp(lambdas) == 0:
        return "all lambda_k are equal: only a global exponent is identified (xi, s and d_s are not)"
    if scale == "fit":
        return (f"basin masses identify (A, B) of log e_k = A + B lambda_k only ({k - 1} constraints from {k} "
                f"basins): xi, the scale s and d_s are not separately determined, so the fitted xi is not "
                f"comparable with the paper's 0.5")
    return ("with the scale fixed, xi is identified given d_s (only xi^(1/d_s) enters); d_s itself comes from "
            "the displacement fit, not from the masses")


def tempering_test(
    sgd_run: Run,
    posterior_run: Run,
    *,
    target: Target | None = None,
    probe: Any = None,
    feature: str = "labels",
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    lambdas: Any = None,
    d_s: float | None = None,
    masses: str = "count",
    xi: float = 0.5,
    xi_range: str = "paper",
    scale: str | float = "fit",
    fractal_dim: str = "lambda",
    llc_options: dict | None = None,
    num_splits: int = 20,
    max_permutations: int = 120,
    posterior_from_sgd: Run | None = None,
    seed: int = 0,
) -> TemperingResult:
    """Does tempering SGD's basin masses by D_k(lambda_k) bring them onto the posterior's?

    Basins come from the SGD endpoints (last draw of each chain) in function space; posterior
    draws are assigned to the nearest SGD basin. Posterior masses P_B count draws
    (``masses="count"``, with basin-switch counts per chain as the mixing diagnostic) or use free
    energies F_k = n L_n(w_k) + lambda_k log n (``"free_energy"``, when chains do not mix). Masses
    are smoothed with a Jeffreys 1/2 pseudo-count so that no basin has mass 0.

    Four models: untempered (p_sgd), one global exponent c, the LLC form, and the LLC form with the
    lambda_k shuffled across basins. Whether the lambda_k matter is decided by the permutation test
    of :mod:`fractalbayes.slt.evidence` (``p_value``, ties broken at random, exact under the null),
    with its power on planted LLC-form masses at this run's K, lambdas, fit and effective counts,
    stated in ``verdict``; K <= 3 basins can never give p <= 0.05 and are reported as undetermined.
    Models that predict zero mass for a basin are scored NaN and named in the table's ``degenerate``
    column instead of an infinite KL. Held-out: fit on a random half of the SGD nets and posterior chains (draws when
    there is one chain), score the predictions on the other half; ``num_splits`` splits, median
    and interquartile range. ``per_k`` repeats the in-sample comparison for every k clustered.
    """
    if sgd_run.config.target.fingerprint != posterior_run.config.target.fingerprint:
        raise ModelError("the posterior run samples another target than the SGD run (different model or "
                         "data fingerprint); run both on the same fb.from_numpyro target")
    if masses not in ("count", "free_energy"):
        raise ModelError(f"masses must be 'count' or 'free_energy', got {masses!r}")
    target = target or sgd_run.target or posterior_run.target
    if target is None:
        raise ModelError("tempering_test needs the target for function-space basins: pass target=...")
    llc_options = LLC_DEFAULTS | (llc_options or {})
    probe = default_probe(target, 256, seed) if probe is None else probe
    endpoints = sgd_endpoints(sgd_run)
    sgd_features = function_features(target, endpoints, probe, feature=feature)
    basins = find_basins(sgd_features, k=k, k_range=k_range, seed=seed, feature=feature)
    post_features = function_features(target, posterior_run.positions.reshape(-1, target.dim), probe, feature=feature)
    rng = np.random.default_rng(seed)

    def analyse(kk: int, given_lambdas=None) -> dict:
        labels_sgd = basins.labels_per_k[kk]
        labels_post = basins.assign(post_features, kk).reshape(posterior_run.num_chains, posterior_run.num_draws)
        centres = endpoints[medoid_indices(sgd_features, labels_sgd, kk)]
        lam = np.asarray(given_lambdas, float) if given_lambdas is not None else basin_llcs(target, centres, llc_options, seed)
        p_sgd = _masses(labels_sgd, kk)
        if masses == "count":
            p_b = _masses(labels_post, kk)
        else:
            losses = np.array([float(target.full_loss(c)) for c in centres])
            p_b = mixture_weights("evidence", p_sgd, tempered_free_energy(np.full(kk, float(target.n_data)), losses, lam))
        return {"labels_sgd": labels_sgd, "labels_post": labels_post, "lambdas": lam, "p_sgd": p_sgd, "p_b": p_b}

    main = analyse(basins.k, lambdas)
    lam, p_sgd, p_b = main["lambdas"], main["p_sgd"], main["p_b"]
    if d_s is None:
        d_s, d_s_record = measured_d_s(sgd_run, float(np.sum(p_sgd * lam)), xi=xi, fractal_dim=fractal_dim)
        d_s = check_d_s(d_s, "measured from the SGD run's late window")
    else:
        d_s, d_s_record = check_d_s(d_s, "given"), {"given": True}
    fit_kwargs = dict(d_s=d_s, m=target.n_data, xi_range=xi_range, scale=scale, fractal_dim=fractal_dim)
    fit = fit_tempering(p_sgd, p_b, lam, **fit_kwargs)
    degenerate: dict[str, str] = {}
    in_sample = _scores(p_b, _model_masses(fit, p_sgd, lam, d_s), degenerate)
    perms = [np.array(p) for p in evidence.assignments(basins.k, max(max_permutations, 2), rng)[0][1:]]
    shuffled_fits = [fit_tempering(p_sgd, p_b, lam[p], **fit_kwargs) for p in perms]
    shuffled = [_scores(p_b, {"llc_shuffled": f.p_tempered}, degenerate)["llc_shuffled"] for f in shuffled_fits]
    in_sample["llc_shuffled"] = {m: float(np.nanmedian([sc[m] for sc in shuffled])) if perms else float("nan")
                                 for m in METRICS}
    test = evidence.permutation_test(p_sgd, p_b, lam, seed=seed, max_permutations=max(max_permutations, 2),
                                     xi_range=xi_range)
    walk = {"lambda": 2.0, "2lambda": 4.0}[fractal_dim]
    a_fit, b_fit = math.log(fit.scale) + 2 * math.log(fit.xi), -walk * math.log(fit.xi) / d_s
    n_posterior = _posterior_count(main["labels_post"], basins.k)
    power = evidence.power(lam, a=a_fit, b=b_fit, p_b=p_b, n_sgd=len(endpoints), n_posterior=n_posterior,
                           repeats=100, seed=seed, max_permutations=max(max_permutations, 2))
    verdict = evidence.verdict(test, power)

    held_out = {name: {m: [] for m in METRICS} for name in MODELS}
    nets, chains = len(endpoints), posterior_run.num_chains
    post_units = main["labels_post"] if chains > 1 else main["labels_post"].reshape(-1, 1)
    for _ in range(num_splits):
        net_half = rng.permutation(nets) < nets // 2
        unit_half = rng.permutation(len(post_units)) < len(post_units) // 2
        fit_a = (_masses(main["labels_sgd"][net_half], basins.k), _masses(post_units[unit_half], basins.k))
        test_b = (_masses(main["labels_sgd"][~net_half], basins.k), _masses(post_units[~unit_half], basins.k))
        if masses == "free_energy":
            fit_a, test_b = (fit_a[0], p_b), (test_b[0], p_b)
        fitted = fit_tempering(fit_a[0], fit_a[1], lam, **fit_kwargs)
        predicted = _model_masses(fitted, test_b[0], lam, d_s)
        if perms:
            perm = perms[rng.integers(len(perms))]
            predicted["llc_shuffled"] = _model_masses(fit_tempering(fit_a[0], fit_a[1], lam[perm], **fit_kwargs),
                                                      test_b[0], lam[perm], d_s)["llc"]
        for name, scores in _scores(test_b[1], predicted, degenerate).items():
            for m in METRICS:
                held_out[name][m].append(scores[m])

    rows = []
    for name in MODELS:
        row = {"model": name}
        row |= {f"{m}_in_sample": in_sample.get(name, {}).get(m, float("nan")) for m in METRICS}
        for m in METRICS:
            values = np.asarray(held_out[name][m])
            finite = values[np.isfinite(values)]
            row[f"{m}_held_out"] = float(np.median(finite)) if finite.size else float("nan")
            row[f"{m}_held_out_iqr"] = float(np.subtract(*np.percentile(finite, [75, 25]))) if finite.size else float("nan")
        row["degenerate"] = degenerate.get(name, "")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")

    per_k_rows = []
    for kk in sorted(basins.labels_per_k):
        part = main if kk == basins.k else analyse(kk)
        fit_k = fit_tempering(part["p_sgd"], part["p_b"], part["lambdas"], **fit_kwargs)
        scores = _scores(part["p_b"], _model_masses(fit_k, part["p_sgd"], part["lambdas"], d_s), degenerate)
        per_k_rows.append({"k": kk, "silhouette": basins.silhouettes[kk], "xi": fit_k.xi, "scale": fit_k.scale}
                          | {f"{m}_{name}": scores[name][m] for name in scores for m in METRICS})
    switches = np.sum(np.diff(main["labels_post"], axis=1) != 0, axis=1)
    mixing = {"basin_switches_per_chain": switches.tolist(), "mean_switches": float(switches.mean())}
    if posterior_from_sgd is not None:
        other = basins.assign(function_features(target, posterior_from_sgd.positions.reshape(-1, target.dim), probe,
                                                feature=feature))
        mixing["js_prior_vs_sgd_started"] = mass_divergences(p_b, _masses(other, basins.k))["js"]
    return TemperingResult(
        table=table, fit=fit, permutation_rank=test.rank, num_permutations=test.num_assignments,
        p_value=test.p_value, power=power, verdict=verdict,
        identifiability=_identifiability(scale, basins.k, lam), p_sgd=p_sgd, p_b=p_b,
        lambdas=lam, d_s=d_s, basins=basins, mixing=mixing, per_k=pd.DataFrame(per_k_rows).set_index("k"),
        record={"masses": masses, "feature": feature, "d_s_source": d_s_record, "xi_range": xi_range, "scale": scale,
                "fractal_dim": fractal_dim, "num_splits": num_splits, "seed": seed, "smoothing": "jeffreys 1/2",
                "llc_options": llc_options, "posterior_effective_count": n_posterior,
                "fitted_llc_form": {"A": a_fit, "B": b_fit}},
    )
