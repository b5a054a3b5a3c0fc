"""The paper's basin-tempering test with the controls it lacks (Hennick & De Baerdemacker,
arXiv 2503.22478, Moons experiment): untempered, one global exponent, the LLC (power) form, the
free-energy form and the LLC form with the lambda_k shuffled across basins, in-sample with
bootstrap uncertainty and on held-out halves that refit basins, lambda_k and d_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats

from fractalbayes import checks
from fractalbayes.engine.run import Run
from fractalbayes.errors import ModelError
from fractalbayes.methods.fractal import tempering_uncertainty as uncertainty
from fractalbayes.methods.fractal.sampler import (
    LLC_DEFAULTS,
    basin_llcs,
    check_d_s,
    default_probe,
    measured_d_s,
    mixture_weights,
    sgd_endpoints,
    tempered_free_energy,
)
from fractalbayes.methods.fractal.tempering_uncertainty import METRICS, MODELS
from fractalbayes.model.target import Target
from fractalbayes.slt import evidence
from fractalbayes.slt.tempering import (
    basin_diffusion_coefficient,
    fit_tempering,
    temper,
)
from fractalbayes.stats.basins import (
    Basins,
    find_basins,
    function_features,
    medoid_indices,
)
from fractalbayes.stats.metrics import mass_divergences

REFITS = ("all", "masses")
DEFAULT_SPLITS = {"all": 5, "masses": 20}
"""num_splits when not given: each refit split costs K LLC estimates, a masses-only split almost nothing."""


@dataclass(frozen=True)
class TemperingResult:
    """The paper's basin-tempering test with its controls (see :func:`tempering_test`)."""

    table: pd.DataFrame
    """Models x metrics (KL, JS, W of posterior vs model masses): in-sample with bootstrap SE and 90 %
    interval (``kl_in_sample``, ``_se``, ``_lo``, ``_hi``), held-out median, IQR, SD and 5-95 %
    range over the splits (``kl_held_out``, ``_iqr``, ``_se``, ``_lo``, ``_hi``), the number of
    replicates and splits with a finite KL (``in_sample_replicates_scored``,
    ``held_out_splits_scored``), ``degenerate``."""
    fit: Any
    """The in-sample :class:`~fractalbayes.tempering.TemperingFit` of the LLC (power) form."""
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
    free_energy_fit: Any
    """The in-sample fit of the free-energy form (``form="free_energy"``)."""
    lambda_se: np.ndarray
    """Standard error of each lambda_k (the LLC estimates' MCSE; 0 for given lambdas)."""
    record: dict[str, Any] = field(default_factory=dict)

    def figure(self):
        """Masses per basin for each model, and the fit objective against xi."""
        import matplotlib.pyplot as plt

        fig, (bars, curve) = plt.subplots(1, 2, figsize=(10, 3.8))
        k = np.arange(len(self.p_b))
        global_masses = temper(self.p_sgd, np.full_like(self.p_sgd, self.fit.c_global), "power")
        series = {"posterior": self.p_b, "SGD": self.p_sgd, "global": global_masses,
                  "LLC-tempered": self.fit.p_tempered, "free-energy": self.free_energy_fit.p_tempered}
        width = 0.8 / len(series)
        for i, (name, model_masses) in enumerate(series.items()):
            bars.bar(k + i * width, model_masses, width, label=name)
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


def _row(name: str, in_sample: dict, replicates: dict, held_out: dict, degenerate: dict) -> dict:
    """One table row: in-sample value, bootstrap SE and 90 % interval; held-out median, IQR, SD and
    5-95 % range over the splits; how many bootstrap replicates and splits gave a finite KL (the
    others were degenerate and are left out of those summaries)."""
    row = {"model": name}
    for m in METRICS:
        row[f"{m}_in_sample"] = in_sample.get(name, {}).get(m, float("nan"))
        row |= {f"{m}_in_sample_{key}": value
                for key, value in uncertainty.summarise(replicates.get(name, {}).get(m, [])).items()}
    for m in METRICS:
        values = np.asarray(held_out[name][m], float)
        finite = values[np.isfinite(values)]
        row[f"{m}_held_out"] = float(np.median(finite)) if finite.size else float("nan")
        row[f"{m}_held_out_iqr"] = float(np.subtract(*np.percentile(finite, [75, 25]))) if finite.size else float("nan")
        row |= {f"{m}_held_out_{key}": value for key, value in uncertainty.summarise(finite).items()}
    kl_boot = np.asarray(replicates.get(name, {}).get("kl", []), float)
    row["in_sample_replicates_scored"] = int(np.sum(np.isfinite(kl_boot)))
    row["held_out_splits_scored"] = int(np.sum(np.isfinite(np.asarray(held_out[name]["kl"], float))))
    row["degenerate"] = degenerate.get(name, "")
    return row


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
    num_splits: int | None = None,
    refit: str = "all",
    num_bootstrap: int = 200,
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

    Five models (:mod:`.tempering_uncertainty`): untempered (p_sgd), one global exponent c, the LLC
    (power) form, the free-energy form (only the energy tempered: lambda_k log(n beta_k) kept) and
    the LLC form with the lambda_k shuffled across basins. Whether the lambda_k matter is decided by
    the permutation test of :mod:`fractalbayes.slt.evidence` on the LLC form (``p_value``, ties
    broken at random, exact under the null), with its power on planted LLC-form masses at this run's
    K, lambdas, fit and effective counts, stated in ``verdict``; K <= 3 basins can never give
    p <= 0.05 and are reported as undetermined. The free-energy form is a row of the table, not a
    second verdict. Models that predict zero mass for a basin are scored NaN and named in the
    table's ``degenerate`` column instead of an infinite KL.

    Uncertainty: ``num_bootstrap`` replicates resample SGD nets and posterior chains (draws when
    there is one chain) and draw lambda_k ~ N(lambda_k, se_k^2) from the LLC estimates' standard
    errors, then refit every model; the table gives each in-sample score's bootstrap SE and 90 %
    interval. Held out: fit on a random half of the SGD nets and posterior chains (draws when there
    is one chain), score on the other half, ``num_splits`` times (default 5 with ``refit="all"``,
    20 with ``"masses"``); median, IQR, SD and 5-95 % range over the splits. ``refit="all"``
    re-clusters the fitting half's SGD endpoints with the same k, estimates lambda_k at its medoids
    (same llc options; K LLC estimates per split) and d_s from its SGD chains, then assigns the
    held-out nets and posterior draws to those basins; ``"masses"`` keeps basins, lambda_k and d_s
    from all the data and only splits the counts. ``per_k`` repeats the in-sample comparison for
    every k clustered.
    """
    if sgd_run.config.target.fingerprint != posterior_run.config.target.fingerprint:
        raise ModelError("the posterior run samples another target than the SGD run (different model or "
                         "data fingerprint); run both on the same fb.from_numpyro target")
    if masses not in ("count", "free_energy"):
        raise ModelError(f"masses must be 'count' or 'free_energy', got {masses!r}")
    refit = checks.check("refit", refit, checks.choice(*REFITS))
    num_bootstrap = checks.check("num_bootstrap", num_bootstrap, checks.integer(0))
    num_splits = checks.check("num_splits", num_splits, checks.optional(checks.integer(1))) or DEFAULT_SPLITS[refit]
    target = target or sgd_run.target or posterior_run.target
    if target is None:
        raise ModelError("tempering_test needs the target for function-space basins: pass target=...")
    llc_options = LLC_DEFAULTS | (llc_options or {})
    probe = default_probe(target, 256, seed) if probe is None else probe
    endpoints = sgd_endpoints(sgd_run)
    sgd_features = function_features(target, endpoints, probe, feature=feature)
    basins = find_basins(sgd_features, k=k, k_range=k_range, seed=seed, feature=feature)
    post_features = function_features(target, posterior_run.positions.reshape(-1, target.dim), probe, feature=feature)
    chains, draws = posterior_run.num_chains, posterior_run.num_draws
    rng = np.random.default_rng(seed)

    def posterior_masses(labels_post: np.ndarray, losses: np.ndarray, lam: np.ndarray, kk: int) -> np.ndarray:
        if masses == "count":
            return uncertainty.masses(labels_post, kk)
        return mixture_weights("evidence", np.full(kk, 1.0 / kk),
                               tempered_free_energy(np.full(kk, float(target.n_data)), losses, lam))

    def measure(centres: np.ndarray, given, llc_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lambdas, their SEs, losses at the centres)."""
        if given is not None:
            lam, se = np.asarray(given, float), np.zeros(len(centres))
        else:
            lam, se = basin_llcs(target, centres, llc_options, llc_seed, with_se=True)
        losses = np.array([float(target.full_loss(c)) for c in centres]) if masses == "free_energy" else None
        return lam, se, losses

    def analyse(kk: int, given_lambdas=None) -> dict:
        labels_sgd = basins.labels_per_k[kk]
        labels_post = basins.assign(post_features, kk).reshape(chains, draws)
        centres = endpoints[medoid_indices(sgd_features, labels_sgd, kk)]
        lam, se, losses = measure(centres, given_lambdas, seed)
        p_sgd = uncertainty.masses(labels_sgd, kk)
        return {"labels_sgd": labels_sgd, "labels_post": labels_post, "lambdas": lam, "lambda_se": se,
                "losses": losses, "p_sgd": p_sgd, "p_b": posterior_masses(labels_post, losses, lam, kk)}

    main = analyse(basins.k, lambdas)
    lam, lam_se, p_sgd, p_b = main["lambdas"], main["lambda_se"], main["p_sgd"], main["p_b"]
    if d_s is None:
        d_s, d_s_record = measured_d_s(sgd_run, float(np.sum(p_sgd * lam)), xi=xi, fractal_dim=fractal_dim)
        d_s = check_d_s(d_s, "measured from the SGD run's late window")
        d_s_given = False
    else:
        d_s, d_s_record, d_s_given = check_d_s(d_s, "given"), {"given": True}, True
    fit_kwargs = {"d_s": d_s, "m": target.n_data, "xi_range": xi_range, "scale": scale, "fractal_dim": fractal_dim}
    fits = uncertainty.fit_models(p_sgd, p_b, lam, fit_kwargs)
    fit = fits["llc"]
    degenerate: dict[str, str] = {}
    in_sample = uncertainty.scores(p_b, uncertainty.predictions(fits, p_sgd, lam), degenerate)
    perms = [np.array(p) for p in evidence.assignments(basins.k, max(max_permutations, 2), rng)[0][1:]]
    shuffled_fits = [fit_tempering(p_sgd, p_b, lam[p], **fit_kwargs) for p in perms]
    shuffled = [uncertainty.scores(p_b, {"llc_shuffled": f.p_tempered}, degenerate)["llc_shuffled"]
                for f in shuffled_fits]
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

    def units(labels_post: np.ndarray) -> np.ndarray:
        """Resampling and splitting units: chains, or draws when there is one chain."""
        return labels_post if chains > 1 else labels_post.reshape(-1, 1)

    post_units = units(main["labels_post"])

    boot = uncertainty.bootstrap(
        main["labels_sgd"], post_units, basins.k, lam, lam_se, fit_kwargs,
        {**fits, "llc_shuffled": fit}, perms, num_bootstrap, np.random.default_rng([seed, 1]),
        lambda resampled, lam_star: posterior_masses(resampled, main["losses"], lam_star, basins.k))

    held_out = {name: {m: [] for m in METRICS} for name in MODELS}
    nets, refits = len(endpoints), []
    for split in range(num_splits):
        net_half = rng.permutation(nets) < nets // 2
        unit_half = rng.permutation(len(post_units)) < len(post_units) // 2
        if refit == "masses":
            labels_fit, labels_test = main["labels_sgd"][net_half], main["labels_sgd"][~net_half]
            post = post_units
            lam_fit, losses_fit, d_s_fit = lam, main["losses"], d_s
        else:
            split_basins = find_basins(sgd_features[net_half], k=basins.k, seed=seed + split, feature=feature)
            labels_fit = split_basins.labels
            labels_test = split_basins.assign(sgd_features[~net_half])
            post = units(split_basins.assign(post_features).reshape(chains, draws))
            medoids = np.flatnonzero(net_half)[split_basins.medoids]
            given = None if lambdas is None else lam[main["labels_sgd"][medoids]]
            lam_fit, se_fit, losses_fit = measure(endpoints[medoids], given, seed + 1000 * (split + 1))
            if d_s_given:
                d_s_fit, split_d_s_record = d_s, {"given": True}
            else:
                lambda_bar = float(np.sum(uncertainty.masses(labels_fit, basins.k) * lam_fit))
                d_s_fit, split_d_s_record = measured_d_s(sgd_run.select_chains(net_half), lambda_bar, xi=xi,
                                                         fractal_dim=fractal_dim)
                d_s_fit = check_d_s(d_s_fit, f"measured from held-out split {split}'s fitting half")
            refits.append({"lambdas": lam_fit.tolist(), "lambda_se": se_fit.tolist(), "d_s": d_s_fit,
                           "d_s_source": split_d_s_record})
        p_sgd_fit, p_sgd_test = uncertainty.masses(labels_fit, basins.k), uncertainty.masses(labels_test, basins.k)
        p_b_fit = posterior_masses(post[unit_half], losses_fit, lam_fit, basins.k)
        p_b_test = posterior_masses(post[~unit_half], losses_fit, lam_fit, basins.k)
        perm = perms[rng.integers(len(perms))] if perms else None
        split_fits = uncertainty.fit_models(p_sgd_fit, p_b_fit, lam_fit, fit_kwargs | {"d_s": d_s_fit}, perm=perm)
        predicted = uncertainty.predictions(split_fits, p_sgd_test, lam_fit, perm)
        for name, values in uncertainty.scores(p_b_test, predicted, degenerate).items():
            for m in METRICS:
                held_out[name][m].append(values[m])

    table = pd.DataFrame([_row(name, in_sample, boot["replicates"], held_out, degenerate)
                          for name in MODELS]).set_index("model")

    per_k_rows = []
    for kk in sorted(basins.labels_per_k):
        part = main if kk == basins.k else analyse(kk)
        fits_k = uncertainty.fit_models(part["p_sgd"], part["p_b"], part["lambdas"], fit_kwargs)
        per_k_scores = uncertainty.scores(part["p_b"], uncertainty.predictions(fits_k, part["p_sgd"], part["lambdas"]),
                                          degenerate)
        per_k_rows.append({"k": kk, "silhouette": basins.silhouettes[kk], "xi": fits_k["llc"].xi,
                           "scale": fits_k["llc"].scale}
                          | {f"{m}_{name}": per_k_scores[name][m] for name in per_k_scores for m in METRICS})
    switches = np.sum(np.diff(main["labels_post"], axis=1) != 0, axis=1)
    mixing = {"basin_switches_per_chain": switches.tolist(), "mean_switches": float(switches.mean())}
    if posterior_from_sgd is not None:
        other = basins.assign(function_features(target, posterior_from_sgd.positions.reshape(-1, target.dim), probe,
                                                feature=feature))
        mixing["js_prior_vs_sgd_started"] = mass_divergences(p_b, uncertainty.masses(other, basins.k))["js"]
    return TemperingResult(
        table=table, fit=fit, permutation_rank=test.rank, num_permutations=test.num_assignments,
        p_value=test.p_value, power=power, verdict=verdict,
        identifiability=_identifiability(scale, basins.k, lam), p_sgd=p_sgd, p_b=p_b,
        lambdas=lam, d_s=d_s, basins=basins, mixing=mixing, per_k=pd.DataFrame(per_k_rows).set_index("k"),
        free_energy_fit=fits["free_energy"], lambda_se=lam_se,
        record={"masses": masses, "feature": feature, "d_s_source": d_s_record, "xi_range": xi_range, "scale": scale,
                "fractal_dim": fractal_dim, "num_splits": num_splits, "refit": refit, "seed": seed,
                "smoothing": "jeffreys 1/2", "llc_options": llc_options, "posterior_effective_count": n_posterior,
                "fitted_llc_form": {"A": a_fit, "B": b_fit},
                "free_energy_form": {"xi": fits["free_energy"].xi, "scale": fits["free_energy"].scale,
                                     "objective": fits["free_energy"].objective, "objective_llc": fit.objective},
                "bootstrap": {"num_bootstrap": num_bootstrap, "lambdas_clipped": boot["lambdas_clipped"],
                              "lambda_se": lam_se.tolist(), "units": "chains" if chains > 1 else "draws",
                              "interval": "5th-95th percentile"},
                "held_out_refits": refits},
    )
