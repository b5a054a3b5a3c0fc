"""The fractal-constrained "almost Bayesian" sampler and the paper's tempering test.

Hennick & De Baerdemacker (arXiv 2503.22478, Lemma 3.3; SCIENCE.md §3.5): coarse-grained at scale
xi, SGD's local steady state in a basin k of constant LLC lambda_k is the Gibbs density
exp(-gamma L(w) / D_k), with D_k = xi^{2 - d_walk,k}, d_walk,k = 2 lambda_k / d_s (paper's
convention; 4 lambda_k / d_s with ``fractal_dim="2lambda"``). So SGD samples the posterior tempered
basin by basin, at inverse temperature n beta_k = gamma_eff / D_k.

`sample_fractal` (``fb.sample(target, "fractal", ...)``) builds that distribution:
1. an SGD ensemble (by default with the MAP objective, i.e. weight decay matching the prior, so
   SGD and the posterior share one potential), with a steady-state check of its late window;
2. basins of the ensemble's endpoints in function space (`fractalbayes.basins`);
3. per basin the LLC lambda_k at the medoid (`fractalbayes.llc`) and the spectral dimension d_s
   from the ensemble's late-window diffusion fit (`fractalbayes.diffusion`) unless given;
4. D_k and n beta_k = gamma_eff / D_k, gamma_eff = 2 B / eta ("sgd": Mandt et al. 2017's constant
   SGD temperature) or a number (the paper's corollaries: 1);
5. within each basin, BlackJAX samples rho(w) exp(-n beta_k L(w) - (loc/2)||w - w_k||^2), the
   localization being the accessibility constraint;
6. basins are mixed by SGD mass ("reachability") or by tempered free energy ("evidence",
   F_k = n beta_k L(w_k) + lambda_k log(n beta_k), the leading terms of Watanabe's expansion).

`tempering_test` is the paper's Moons experiment with the controls it lacks: untempered, one global
exponent, the LLC form, and the LLC form with the lambda_k shuffled across basins, in-sample and on
held-out halves.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from . import checks, diffusion, llc
from .basins import Basins, find_basins, function_features, medoid_indices
from .errors import ModelError
from .metrics import mass_divergences
from .run import Run
from .sampling import jsonable, sample
from .target import Target
from .tempering import basin_diffusion_coefficient, fit_tempering, temper

DEFAULTS: dict[str, Any] = {
    "xi": 0.5,
    "d_s": None,
    "fractal_dim": "lambda",
    "gamma_eff": "sgd",
    "weights": "reachability",
    "kernel": "sgld",
    "localization": 1.0,
    "step_size": 1e-4,
    "sgd": {},
    "llc": {},
    "basins": {},
}
SGD_DEFAULTS: dict[str, Any] = {
    "init": None,
    "num_chains": 100,
    "learning_rate": 0.05,
    "burn_in": 2000,
    "num_samples": 50,
    "thin": 20,
    "objective": "map",
    "num_checkpoints": 60,
}
LLC_DEFAULTS: dict[str, Any] = {"num_chains": 2, "num_draws": 200, "burn_in": 100, "step_size": 1e-4,
                                "localization": 100.0}
BASIN_DEFAULTS: dict[str, Any] = {"probe": None, "feature": "labels", "k": None, "k_range": (2, 8),
                                  "max_probe": 256}
WEIGHTS = ("reachability", "evidence")
KERNELS = ("sgld", "nuts")


def _merge(name: str, given: dict, defaults: dict, extra_allowed: tuple[str, ...] = ()) -> dict:
    if not isinstance(given, dict):
        raise ModelError(f"fractal: option {name} must be a dict, got {given!r}")
    unknown = set(given) - set(defaults) - set(extra_allowed)
    if unknown:
        raise ModelError(f"fractal: unknown key(s) {sorted(unknown)} in {name}=...; allowed: "
                         f"{sorted(set(defaults) | set(extra_allowed))}")
    return defaults | given


def _check_d_s(d_s: Any, source: str) -> float:
    if d_s is None or not np.isfinite(d_s) or d_s <= 0:
        raise ModelError(
            f"d_s must be finite and > 0, got {d_s!r} ({source}); the late-window fit found no "
            f"diffusion to measure: pass d_s=... explicitly, or train longer / with a larger rate"
        )
    return float(d_s)


def default_probe(target: Target, max_rows: int, seed: int) -> np.ndarray:
    """Up to `max_rows` training inputs (the model's first data argument), seeded."""
    inputs = np.asarray(next(iter(target.data.values())))
    if len(inputs) <= max_rows:
        return inputs
    return inputs[np.sort(np.random.default_rng(seed).choice(len(inputs), max_rows, replace=False))]


# --------------------------------------------------------------------------------------------------
# Steps shared by the sampler and the test
# --------------------------------------------------------------------------------------------------


def _drift(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Mean change across chains and its z-score (chains are independent runs)."""
    change = np.asarray(after, float) - np.asarray(before, float)
    se = change.std(ddof=1) / math.sqrt(len(change)) if len(change) > 1 else float("nan")
    return float(change.mean()), float(change.mean() / se) if se > 0 else 0.0


def steady_state(run: Run, *, llc_options: dict | None = None, max_llc_chains: int = 8,
                 z_threshold: float = 3.0) -> dict[str, Any]:
    """Is the late window flat? Compares its first and second halves across chains.

    For the loss and the weight norm, per chain: mean over the 2nd half of the draws minus mean
    over the 1st; for the LLC (when ``llc_options`` is given): the LLC at the last recorded
    checkpoint minus that at the first one at or after ``checkpoint_start``, on up to
    ``max_llc_chains`` chains (`llc.trajectory`). z = mean change / its standard error across
    chains; |z| > ``z_threshold`` is a drift.
    """
    half = run.num_draws // 2
    if half < 1:
        return {"stationary": None, "reason": "fewer than 2 draws"}
    report: dict[str, Any] = {}
    norms = np.linalg.norm(run.positions, axis=-1)
    for name, per_draw in (("loss", run.stats["loss"]), ("weight_norm", norms)):
        report[f"{name}_change"], report[f"{name}_z"] = _drift(per_draw[:, :half].mean(1), per_draw[:, half:].mean(1))
    names = ["loss", "weight_norm"]
    if llc_options is not None:
        start = int(run.config.get("checkpoint_start", 0))
        index = [int(np.searchsorted(run.checkpoint_steps, start)), len(run.checkpoint_steps) - 1]
        chains = slice(0, max_llc_chains)
        ends = Run(**{**run.__dict__, "positions": run.positions[chains], "checkpoints": run.checkpoints[chains][:, index],
                      "checkpoint_steps": run.checkpoint_steps[index], "diverged_at": run.diverged_at[chains]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", llc.LLCHealthWarning)
            settings = {k: v for k, v in llc_options.items() if k != "num_chains"}  # one chain per point
            per_chain = llc.trajectory(ends, **settings).per_chain
        report["llc_change"], report["llc_z"] = _drift(per_chain[:, 0], per_chain[:, -1])
        names.append("llc")
    report["stationary"] = bool(all(abs(report[f"{name}_z"]) <= z_threshold for name in names))
    return report


def sgd_endpoints(run: Run) -> np.ndarray:
    """Last draw of every SGD chain that did not diverge (diverged ones are dropped, with a warning)."""
    alive = ~run.diverged
    if not alive.all():
        warnings.warn(f"{(~alive).sum()} of {run.num_chains} SGD chains diverged and are left out of the "
                      f"basins; lower the learning rate to keep them", stacklevel=3)
    return run.positions[alive, -1]


def basin_llcs(target: Target, centres: np.ndarray, options: dict, seed: int) -> np.ndarray:
    """LLC at each basin centre (one estimate per centre, same compiled sampler)."""
    return np.array([llc.estimate(target, centre, seed=seed + i, **options).mean for i, centre in enumerate(centres)])


def measured_d_s(sgd_run: Run, lambda_bar: float, *, xi: float, fractal_dim: str) -> tuple[float, dict]:
    """d_s = 2 lambda_bar slope (or 4 ...) from the late-window fit of log R on log t."""
    t0 = int(sgd_run.config.get("checkpoint_start", 0))
    result = diffusion.analyze(sgd_run, t0=t0, xi=xi, fractal_dim=fractal_dim, llc=lambda_bar)
    record = {"slope": float(result.slope), "r2": float(result.r2), "t0": t0,
              "window": [float(w) for w in result.window], "lambda_bar": float(lambda_bar)}
    return float(result.d_s), record


def tempered_free_energy(nbetas: np.ndarray, losses: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """F_k = n beta_k L_n(w_k) + lambda_k log(n beta_k): the leading terms of the local free energy
    -log ∫_{W_k} rho(w) exp(-n beta_k L_n(w)) dw (Watanabe 2009, Thm 6.7; Lau et al. 2023)."""
    return nbetas * losses + lambdas * np.log(nbetas)


def mixture_weights(rule: str, masses_sgd: np.ndarray, free_energy: np.ndarray) -> np.ndarray:
    """Basin weights: SGD masses ("reachability") or exp(-F_k) normalised ("evidence")."""
    if rule == "reachability":
        weights = np.asarray(masses_sgd, float)
    elif rule == "evidence":
        weights = np.exp(-(free_energy - np.min(free_energy)))
    else:
        raise ModelError(f"fractal: weights must be one of {WEIGHTS}, got {rule!r}")
    return weights / weights.sum()


def _sgd_ensemble(target: Target, sgd: dict, seed: int) -> Run:
    options = dict(sgd)
    run_args = {k: options.pop(k) for k in ("num_chains", "burn_in", "num_samples", "thin", "num_checkpoints", "init")
                if k in options}
    return sample(target, "sgd", seed=seed, checkpoint_start=run_args["burn_in"], **run_args, **options)


def _gamma_eff(gamma_eff: Any, target: Target, sgd: dict) -> float:
    if gamma_eff == "sgd":
        return 2.0 * target.batch_size / float(sgd["learning_rate"])
    if isinstance(gamma_eff, str) or not np.isfinite(gamma_eff) or gamma_eff <= 0:
        raise ModelError(f"gamma_eff must be 'sgd' (2B/eta) or a positive number (paper: 1), got {gamma_eff!r}")
    return float(gamma_eff)


# --------------------------------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------------------------------


def sample_fractal(
    target: Target,
    *,
    num_chains: int = 4,
    num_samples: int = 1000,
    burn_in: int = 1000,
    thin: int = 1,
    seed: int = 0,
    progress: bool | None = None,
    **options: Any,
) -> Run:
    """The fractal-constrained sampler (see the module docstring); a Run labelled by basin.

    The returned run's ``stats["basin"]`` labels each draw; its ``basins`` group holds the SGD
    masses, weights, lambda_k, D_k, n beta_k, free energies and centres; its checkpoints are those
    of the heaviest basin's sampler. ``config["fractal"]`` records d_s (and how it was found), the
    steady-state report and every option.
    """
    opts = _merge("options", options, DEFAULTS)
    sgd = _merge("sgd", opts["sgd"], SGD_DEFAULTS, ("momentum", "weight_decay", "optimizer", "schedule"))
    llc_opts = _merge("llc", opts["llc"], LLC_DEFAULTS, ("nbeta", "sampler", "thin"))
    basin_opts = _merge("basins", opts["basins"], BASIN_DEFAULTS)
    if opts["weights"] not in WEIGHTS:
        raise ModelError(f"fractal: weights must be one of {WEIGHTS}, got {opts['weights']!r}")
    if opts["kernel"] not in KERNELS:
        raise ModelError(f"fractal: kernel must be one of {KERNELS}, got {opts['kernel']!r}")
    if opts["fractal_dim"] not in ("lambda", "2lambda"):
        raise ModelError(f"fractal: fractal_dim must be 'lambda' or '2lambda', got {opts['fractal_dim']!r}")
    checks.positive("fractal: xi", opts["xi"])
    if opts["d_s"] is not None:
        _check_d_s(opts["d_s"], "given")
    gamma_eff = _gamma_eff(opts["gamma_eff"], target, sgd)

    sgd_run = _sgd_ensemble(target, sgd, seed)
    stationarity = steady_state(sgd_run, llc_options=llc_opts)
    if not stationarity["stationary"]:
        drifts = ", ".join(f"{k[:-2]} z={v:.1f}" for k, v in stationarity.items() if k.endswith("_z"))
        warnings.warn(
            f"the SGD ensemble's late window is not stationary ({drifts}); its basin masses are not a "
            f"steady state: train longer (sgd={{'burn_in': ...}}) or use the prior-matched objective", stacklevel=2)
    endpoints = sgd_endpoints(sgd_run)
    probe = basin_opts["probe"] if basin_opts["probe"] is not None else default_probe(target, basin_opts["max_probe"], seed)
    features = function_features(target, endpoints, probe, feature=basin_opts["feature"])
    basins = find_basins(features, k=basin_opts["k"], k_range=tuple(basin_opts["k_range"]), seed=seed,
                         feature=basin_opts["feature"])
    centres = endpoints[basins.medoids]
    lambdas = basin_llcs(target, centres, llc_opts, seed)
    lambda_bar = float(np.sum(basins.masses * lambdas))
    if opts["d_s"] is None:
        d_s, d_s_record = measured_d_s(sgd_run, lambda_bar, xi=opts["xi"], fractal_dim=opts["fractal_dim"])
        d_s = _check_d_s(d_s, "measured from the SGD ensemble's late window")
    else:
        d_s, d_s_record = float(opts["d_s"]), {"given": True}
    diffusion_coefficients = basin_diffusion_coefficient(lambdas, opts["xi"], d_s, opts["fractal_dim"])
    nbetas = gamma_eff / diffusion_coefficients
    losses = np.array([float(target.full_loss(c)) for c in centres])
    free_energy = tempered_free_energy(nbetas, losses, lambdas)
    weights = mixture_weights(opts["weights"], basins.masses, free_energy)

    kernel_options = {"localization": opts["localization"]} | (
        {"step_size": opts["step_size"]} if opts["kernel"] == "sgld" else {})
    basin_runs = [
        sample(target, opts["kernel"], num_chains=num_chains, num_samples=num_samples, burn_in=burn_in,
               thin=thin, seed=seed + 1 + k, init=centres[k], center=centres[k], nbeta=float(nbetas[k]),
               progress=progress, **kernel_options)
        for k in range(basins.k)
    ]
    choice = np.random.default_rng(seed).choice(basins.k, size=(num_chains, num_samples), p=weights)
    pick = lambda arrays: np.choose(choice.reshape(choice.shape + (1,) * (arrays[0].ndim - 2)), arrays)  # noqa: E731
    positions = pick([r.positions for r in basin_runs])
    stats = {name: pick([r.stats[name] for r in basin_runs]) for name in basin_runs[0].stats}
    stats["basin"] = choice
    sites = {name: pick([r.sites[name] for r in basin_runs]) for name in basin_runs[0].sites}
    heaviest = basin_runs[int(np.argmax(weights))]
    group = xr.Dataset(
        {
            "mass_sgd": ("basin", basins.masses),
            "weight": ("basin", weights),
            "llc": ("basin", lambdas),
            "D": ("basin", diffusion_coefficients),
            "nbeta": ("basin", nbetas),
            "loss": ("basin", losses),
            "free_energy": ("basin", free_energy),
            "medoid": ("basin", basins.medoids),
            "center": (("basin", "param"), centres),
            "sgd_label": ("sgd_net", basins.labels),
            "silhouette": ("k", np.array(list(basins.silhouettes.values()))),
        },
        coords={"k": list(basins.silhouettes)},
    )
    record = {
        "options": opts | {"sgd": sgd, "llc": llc_opts, "basins": basin_opts | {"probe": "given" if basin_opts["probe"] is not None else "training inputs"}},
        "gamma_eff": gamma_eff,
        "d_s": d_s,
        "d_s_source": d_s_record,
        "steady_state": stationarity,
        "k": basins.k,
    }
    return Run(
        sampler="fractal",
        positions=positions,
        sites=sites,
        stats=stats,
        checkpoints=heaviest.checkpoints,
        checkpoint_steps=heaviest.checkpoint_steps,
        diverged_at=np.max([r.diverged_at for r in basin_runs], axis=0),
        observed=heaviest.observed,
        config=heaviest.config | {"sampler": "fractal", "num_chains": num_chains, "seed": seed,
                                  "fractal": jsonable(record)},
        timings={"total_s": sgd_run.timings["total_s"] + sum(r.timings["total_s"] for r in basin_runs)},
        versions=heaviest.versions,
        groups={"basins": group},
        target=target,
    )


# --------------------------------------------------------------------------------------------------
# The tempering test
# --------------------------------------------------------------------------------------------------

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
    num_permutations: int
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


def _scores(p_b: np.ndarray, predicted: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: mass_divergences(p_b, masses) for name, masses in predicted.items()}


def _permutations(k: int, max_permutations: int, rng: np.random.Generator) -> list[np.ndarray]:
    if math.factorial(k) <= max_permutations:
        return [np.array(p) for p in itertools.permutations(range(k)) if list(p) != list(range(k))]
    return [rng.permutation(k) for _ in range(max_permutations)]


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
    lambda_k shuffled across basins (the rank of the true assignment among permutations by fit
    objective). Held-out: fit on a random half of the SGD nets and posterior chains (draws when
    there is one chain), score the predictions on the other half; ``num_splits`` splits, median
    and interquartile range. ``per_k`` repeats the in-sample comparison for every k clustered.
    """
    if sgd_run.config.get("target", {}).get("fingerprint") != posterior_run.config.get("target", {}).get("fingerprint"):
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
        d_s = _check_d_s(d_s, "measured from the SGD run's late window")
    else:
        d_s, d_s_record = _check_d_s(d_s, "given"), {"given": True}
    fit_kwargs = dict(d_s=d_s, m=target.n_data, xi_range=xi_range, scale=scale, fractal_dim=fractal_dim)
    fit = fit_tempering(p_sgd, p_b, lam, **fit_kwargs)
    in_sample = _scores(p_b, _model_masses(fit, p_sgd, lam, d_s))
    perms = _permutations(basins.k, max_permutations, rng)
    shuffled_fits = [fit_tempering(p_sgd, p_b, lam[p], **fit_kwargs) for p in perms]
    in_sample["llc_shuffled"] = {
        m: float(np.median([mass_divergences(p_b, f.p_tempered)[m] for f in shuffled_fits])) if perms else float("nan")
        for m in METRICS
    }
    # rank of the true assignment by fit objective: 1 + permutations that fit strictly better
    rank = 1 + sum(f.objective < fit.objective for f in shuffled_fits)

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
        for name, scores in _scores(test_b[1], predicted).items():
            for m in METRICS:
                held_out[name][m].append(scores[m])

    rows = []
    for name in MODELS:
        row = {"model": name}
        row |= {f"{m}_in_sample": in_sample.get(name, {}).get(m, float("nan")) for m in METRICS}
        for m in METRICS:
            values = np.asarray(held_out[name][m])
            row[f"{m}_held_out"] = float(np.median(values)) if values.size else float("nan")
            row[f"{m}_held_out_iqr"] = float(np.subtract(*np.percentile(values, [75, 25]))) if values.size else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")

    per_k_rows = []
    for kk in sorted(basins.labels_per_k):
        part = main if kk == basins.k else analyse(kk)
        fit_k = fit_tempering(part["p_sgd"], part["p_b"], part["lambdas"], **fit_kwargs)
        scores = _scores(part["p_b"], _model_masses(fit_k, part["p_sgd"], part["lambdas"], d_s))
        per_k_rows.append({"k": kk, "silhouette": basins.silhouettes[kk], "xi": fit_k.xi, "scale": fit_k.scale}
                          | {f"{m}_{name}": scores[name][m] for name in scores for m in METRICS})
    switches = np.sum(np.diff(main["labels_post"], axis=1) != 0, axis=1)
    mixing = {"basin_switches_per_chain": switches.tolist(), "mean_switches": float(switches.mean())}
    if posterior_from_sgd is not None:
        other = basins.assign(function_features(target, posterior_from_sgd.positions.reshape(-1, target.dim), probe,
                                                feature=feature))
        mixing["js_prior_vs_sgd_started"] = mass_divergences(p_b, _masses(other, basins.k))["js"]
    return TemperingResult(
        table=table, fit=fit, permutation_rank=int(rank), num_permutations=len(perms) + 1, p_sgd=p_sgd, p_b=p_b,
        lambdas=lam, d_s=d_s, basins=basins, mixing=mixing, per_k=pd.DataFrame(per_k_rows).set_index("k"),
        record={"masses": masses, "feature": feature, "d_s_source": d_s_record, "xi_range": xi_range, "scale": scale,
                "fractal_dim": fractal_dim, "num_splits": num_splits, "seed": seed, "smoothing": "jeffreys 1/2",
                "llc_options": llc_options},
    )
