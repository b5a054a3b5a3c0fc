"""The fractal-constrained "almost Bayesian" sampler, registered as ``"fractal"``.

Hennick & De Baerdemacker (arXiv 2503.22478, Lemma 3.3; SCIENCE.md §3.5): coarse-grained at scale
xi, SGD's local steady state in a basin k of constant LLC lambda_k is the Gibbs density
exp(-gamma L(w) / D_k), with D_k = xi^{2 - d_walk,k}, d_walk,k = 2 lambda_k / d_s (paper's
convention; 4 lambda_k / d_s with ``fractal_dim="2lambda"``). So SGD samples the posterior tempered
basin by basin, at inverse temperature n beta_k = gamma_eff / D_k.

`run_fractal` (``fb.sample(target, "fractal", ...)``) builds that distribution:
1. an SGD ensemble (by default with the MAP objective, i.e. weight decay matching the prior, so
   SGD and the posterior share one potential), with a steady-state check of its late window;
2. basins of the ensemble's endpoints in function space (`fractalbayes.basins`);
3. per basin the LLC lambda_k at the medoid (`fractalbayes.llc`) and the spectral dimension d_s
   from the ensemble's late-window diffusion fit (`fractalbayes.diffusion`) unless given;
4. D_k and n beta_k = gamma_eff,k / D_k, with gamma_eff,k (``gamma_eff``):
   "measured" (default): constant SGD with rate eta and batch B near a minimum with Hessian A and
   per-example gradient covariance C has the OU stationary covariance S solving
   A S + S A - eta A S A = (eta / B) C (Mandt, Hoffman & Blei 2017; SCIENCE.md §5). The tempered
   posterior's covariance there is (n beta A)^{-1}; both agree exactly when C = c I (isotropic
   noise), at n beta = 2 B / (eta c). For any C, taking the trace of the continuous equation gives
   tr(A S) = eta tr(C) / (2 B), and tr(A (n beta A)^{-1}) = d / n beta, so matching the two in A's
   metric gives gamma_eff,k = 2 B d / (eta tr C_k), C_k measured at the basin centre over all n
   examples (minibatches are drawn with replacement: Cov grad L_B = C / B). The eta A S A term
   changes S by a relative O(eta a / 2) (a an eigenvalue of A), neglected. Heavy-ball momentum mu
   enters as eta / (1 - mu);
   "sgd": 2 B / eta, the same with C = I (unit gradient-noise covariance); or a number (the paper's
   corollaries: 1);
5. within each basin, BlackJAX samples rho(w)^p_k exp(-n beta_k L(w) - (loc/2)||w - w_k||^2), the
   localization being the accessibility constraint. The prior power (``prior``) follows the SGD
   objective by default ("objective"): SGD on the MAP objective L_B - log rho / n at inverse
   temperature n beta_k is exp(-n beta_k L) rho^(n beta_k / n), so p_k = n beta_k / n; on the
   plain NLL p_k = 0 (decoupled weight decay is not folded in); a number sets p for every basin;
6. basins are mixed by tempered free energy ("evidence", default: F_k = n beta_k L(w_k)
   - p_k log rho(w_k) + lambda_k log(n beta_k), the leading terms of Watanabe's expansion; not
   computed from SGD's masses, so the only choice not circular when the output is compared with
   SGD) or by SGD mass ("reachability", SGD's own masses: for display, never for a comparison with
   SGD);
7. each draw is labelled by ASSIGNMENT, the nearest basin centroid of its function-space features
   (``stats["basin"]``); the basin whose sampler produced it is ``stats["basin_start"]``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from fractalbayes import checks
from fractalbayes import progress as progress_lines
from fractalbayes.engine.config import RunConfig, jsonable
from fractalbayes.engine.run import Run
from fractalbayes.engine.sample import sample
from fractalbayes.errors import ModelError
from fractalbayes.model.target import Target
from fractalbayes.samplers import sgd as sgd_kernel
from fractalbayes.samplers.registry import (
    Option,
    SamplerSpec,
    nested,
    register,
    replace_defaults,
)
from fractalbayes.slt import diffusion, llc
from fractalbayes.slt.llc import settings as llc_settings
from fractalbayes.slt.tempering import basin_diffusion_coefficient
from fractalbayes.stats.basins import FEATURES, find_basins, function_features

WEIGHTS = ("reachability", "evidence")
GAMMA_RULES = ("measured", "sgd")
PRIOR_RULES = ("objective",)
KERNELS = ("sgld", "nuts")

SGD_OPTIONS = (
    Option("init", None, checks.choice(None, "prior", "uniform"), "initial positions of the SGD nets"),
    Option("num_chains", 100, checks.integer(1), "SGD nets in the ensemble"),
    Option("burn_in", 2000, checks.integer(0), "training steps before the late window"),
    Option("num_samples", 50, checks.integer(1), "draws per net in the late window"),
    Option("thin", 20, checks.integer(1), "steps per draw"),
    Option("num_checkpoints", 60, checks.integer(2), "checkpoints of the late window (for d_s)"),
) + replace_defaults(sgd_kernel.OPTIONS, learning_rate=0.05, objective="map")
LLC_OPTIONS = replace_defaults(
    tuple(o for o in llc_settings.OPTIONS if o.name not in ("full_loss_every", "sampler_options")),
    num_chains=4, num_draws=2000, burn_in=500, localization=1.0)
"""Calibrated on exact values at n beta = n / log n, n = 200 (docs/calibration.md, basin_llc): the
former gamma = 100 with 2 x 200 draws gave 0.21 for a regular direction's 1/2 (its exact localized
value: the localization, not the sampler, shrinks it) and ~0.01 for singular ones; gamma = 1 with
4 x 2000 draws is within 0.06 of the exact localized values (-0.007 regular, -0.024 for w^4)."""
BASIN_OPTIONS = (
    Option("probe", None, checks.anything, "inputs whose predictions define basins; None: training inputs"),
    Option("feature", "labels", checks.choice(*FEATURES), "function-space feature clustered"),
    Option("k", None, checks.optional(checks.integer(1)), "number of basins; None: best silhouette in k_range"),
    Option("k_range", (2, 8), checks.sequence_of(checks.integer(1), 2), "k tried when k is None"),
    Option("max_probe", 256, checks.integer(1), "training inputs used as the default probe"),
)
OPTIONS = (
    Option("xi", 0.5, checks.positive(), "coarse-graining length xi of D_xi = xi^(2 - d_walk)"),
    Option("d_s", None, checks.optional(checks.positive()), "spectral dimension; None: measured from SGD"),
    Option("fractal_dim", "lambda", checks.choice(*diffusion.FRACTAL_DIMS), "d_f = lambda (paper) or 2 lambda"),
    Option("gamma_eff", "measured", checks.choice(*GAMMA_RULES, also=checks.positive()),
           "n beta_k = gamma_eff / D_k: 'measured' (2Bd/(eta tr C_k)), 'sgd' (2B/eta) or a number (paper: 1)"),
    Option("prior", "objective", checks.choice(*PRIOR_RULES, also=checks.positive(allow_zero=True)),
           "prior power p_k in each basin: 'objective' (n beta_k / n for SGD's MAP objective, 0 for NLL) or a number"),
    Option("weights", "evidence", checks.choice(*WEIGHTS),
           "basin mixture: tempered evidence (non-circular) or SGD masses ('reachability')"),
    Option("kernel", "sgld", checks.choice(*KERNELS), "kernel sampling each basin"),
    Option("localization", 1.0, checks.positive(), "accessibility constraint (gamma/2)||w - w_k||^2"),
    Option("step_size", 1e-4, checks.positive(), "SGLD step size within a basin"),
    nested("sgd", SGD_OPTIONS, "the SGD ensemble (run settings and sgd options)", "fractal"),
    nested("llc", LLC_OPTIONS, "the per-basin LLC estimates (fb.llc.estimate settings)", "fractal"),
    nested("basins", BASIN_OPTIONS, "function-space basins of the SGD endpoints", "fractal"),
)
LLC_DEFAULTS = {o.name: o.default for o in LLC_OPTIONS}
"""Per-basin LLC settings (also the tempering test's defaults)."""


def check_d_s(d_s: Any, source: str) -> float:
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
        start = run.config.checkpoint_start
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


def basin_llcs(target: Target, centres: np.ndarray, options: dict, seed: int,
               with_se: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """LLC at each basin centre (one estimate per centre, same compiled sampler); with ``with_se``
    also each estimate's Monte Carlo standard error (``LLCResult.mcse``)."""
    results = [llc.estimate(target, centre, seed=seed + i, **options) for i, centre in enumerate(centres)]
    means = np.array([r.mean for r in results])
    return (means, np.array([r.mcse for r in results])) if with_se else means


def measured_d_s(sgd_run: Run, lambda_bar: float, *, xi: float, fractal_dim: str) -> tuple[float, dict]:
    """d_s = 2 lambda_bar slope (or 4 ...) from the late-window fit of log R on log t, read only
    when R(t) is a power law there (``DiffusionResult.regime`` not "confined").

    A confined window (R(t) saturates, e.g. constant-rate SGD in a quadratic bowl) has a slope
    that depends on the window, not on a walk dimension, and its return and covering curves
    saturate too. Then, with a warning, d_s = 2 lambda_bar h (or 4 ...) from the early exponent h
    of the saturating fit R = A (1 - exp(-t / tau))^h, i.e. the walk before it feels the
    confinement; ``record["source"]`` says which was used. When no such exponent exists (h <= 0)
    a ModelError names the fix: pass d_s=... explicitly.
    """
    t0 = sgd_run.config.checkpoint_start
    result = diffusion.analyze(sgd_run, t0=t0, xi=xi, fractal_dim=fractal_dim, llc=lambda_bar)
    record = {"slope": float(result.slope), "r2": float(result.r2), "t0": t0,
              "window": [float(w) for w in result.window], "lambda_bar": float(lambda_bar),
              "regime": result.regime, "source": "slope"}
    if result.regime != "confined":
        return float(result.d_s), record
    early = result.regime_fit.saturating
    if not (np.isfinite(early.h) and early.h > 0):
        raise ModelError(
            f"fractal: the SGD ensemble's late window is confined ({result.regime_fit.reason}) and shows "
            "no diffusive stretch before the plateau, so no d_s can be read from it: pass d_s=... "
            "explicitly, or record checkpoints from earlier (sgd={'num_checkpoints': ...})")
    d_s = diffusion.spectral_dimension(early.h, lambda_bar, fractal_dim)
    warnings.warn(
        f"the SGD ensemble's late window is confined ({result.regime_fit.reason}); d_s = {d_s:.3g} is "
        f"read from the diffusive stretch before the plateau (R ~ t^{early.h:.3f} below "
        f"tau = {early.tau:.3g} steps) instead of the window slope ({result.d_s:.3g}); pass d_s=... "
        "to choose it", stacklevel=3)
    record.update(source="early exponent of the saturating fit (confined window)", early_exponent=early.h,
                  tau=early.tau, d_s_slope=float(result.d_s))
    return float(d_s), record


def tempered_free_energy(nbetas: np.ndarray, losses: np.ndarray, lambdas: np.ndarray,
                         prior_terms: np.ndarray | float = 0.0) -> np.ndarray:
    """F_k = n beta_k L_n(w_k) - p_k log rho(w_k) + lambda_k log(n beta_k): the leading terms of the
    local free energy -log ∫_{W_k} rho(w)^p_k exp(-n beta_k L_n(w)) dw (Watanabe 2009, Thm 6.7;
    Lau et al. 2023). ``prior_terms`` is p_k log rho(w_k) (0: the prior left out)."""
    return nbetas * losses - prior_terms + lambdas * np.log(nbetas)


def mixture_weights(rule: str, masses_sgd: np.ndarray, free_energy: np.ndarray) -> np.ndarray:
    """Basin weights: SGD masses ("reachability") or exp(-F_k) normalised ("evidence")."""
    if rule == "reachability":
        weights = np.asarray(masses_sgd, float)
    elif rule == "evidence":
        weights = np.exp(-(free_energy - np.min(free_energy)))
    else:
        raise ModelError(f"fractal: weights must be one of {WEIGHTS}, got {rule!r}")
    return weights / weights.sum()


def _sgd_ensemble(target: Target, sgd: dict, seed: int, progress: bool | None = None) -> Run:
    options = dict(sgd)
    run_args = {k: options.pop(k) for k in ("num_chains", "burn_in", "num_samples", "thin", "num_checkpoints", "init")
                if k in options}
    return sample(target, "sgd", seed=seed, checkpoint_start=run_args["burn_in"], progress=progress, **run_args,
                  **options)


def _effective_rate(sgd: dict) -> float:
    """eta / (1 - mu): constant SGD's rate, heavy-ball momentum mu folded in (Mandt et al. 2017, §4)."""
    if sgd["optimizer"] != "sgd":
        raise ModelError(f"gamma_eff 'measured' and 'sgd' hold for plain SGD (Mandt et al. 2017), not "
                         f"{sgd['optimizer']!r}: pass gamma_eff=<number> or sgd={{'optimizer': 'sgd'}}")
    return float(sgd["learning_rate"]) / (1.0 - float(sgd["momentum"]))


def gradient_noise_trace(target: Target, position: np.ndarray, block: int = 64) -> float:
    """tr C at ``position``: C = (1/n) sum_i (g_i - g_bar)(g_i - g_bar)^T, g_i = grad l_i the
    per-example NLL gradient, over all n training examples (minibatches are drawn with replacement,
    so Cov grad L_B = C / B exactly). Per-example gradients are vmapped in blocks of ``block`` rows."""

    def build():
        def one(z, row):
            return jax.grad(lambda w: -target.log_lik(w, jax.tree.map(lambda v: v[None], row))[0])(z)

        def trace(z):
            grads = jax.lax.map(lambda row: one(z, row), target.data, batch_size=block)
            centred = grads - grads.mean(axis=0)
            return jnp.mean(jnp.sum(jnp.square(centred), axis=1))

        return jax.jit(trace)

    return float(target.memo(("fractal", "noise_trace", block), build)(jnp.asarray(position, jnp.float32)))


def _gamma_eff(rule: Any, target: Target, sgd: dict, centres: np.ndarray) -> tuple[np.ndarray, dict]:
    """gamma_eff,k per basin and its record (module docstring, step 4)."""
    k = len(centres)
    if rule == "measured":
        eta = _effective_rate(sgd)
        traces = np.array([gradient_noise_trace(target, c) for c in centres])
        if not np.all(np.isfinite(traces) & (traces > 0)):
            raise ModelError(f"gamma_eff='measured': the per-example gradient covariance has trace {traces.tolist()} "
                             f"at the basin centres (no gradient noise to measure); pass gamma_eff=<number>")
        values = 2.0 * target.batch_size * target.dim / (eta * traces)
        return values, {"rule": "measured", "values": values.tolist(), "noise_trace": traces.tolist(),
                        "noise_per_dim": (traces / target.dim).tolist(), "eta_eff": eta, "batch_size": target.batch_size}
    if rule == "sgd":
        eta = _effective_rate(sgd)
        return np.full(k, 2.0 * target.batch_size / eta), {"rule": "sgd", "value": 2.0 * target.batch_size / eta}
    return np.full(k, float(rule)), {"rule": "given", "value": float(rule)}


def _prior_powers(rule: Any, nbetas: np.ndarray, target: Target, sgd: dict) -> np.ndarray:
    """p_k of rho^p_k in each basin (module docstring, step 5)."""
    if rule == "objective":
        return nbetas / target.n_data if sgd["objective"] == "map" else np.zeros_like(nbetas)
    return np.full_like(nbetas, float(rule))


def assign_draws(target: Target, basins: Any, positions: np.ndarray, probe: Any) -> np.ndarray:
    """Basin of each draw (..., d) by assignment: nearest centroid of its function-space features."""
    features = function_features(target, positions, probe, feature=basins.feature)
    return basins.assign(features).reshape(positions.shape[:-1])


def run_fractal(target: Target, config: RunConfig, progress: bool | None = None) -> Run:
    """The fractal-constrained sampler (see the module docstring); a Run labelled by basin.

    Called by ``fb.sample(target, "fractal", ...)`` with validated settings. The returned run's
    ``stats["basin"]`` labels each draw by assignment (``stats["basin_start"]``: the basin whose
    sampler drew it); its ``basins`` group holds the SGD masses, weights, lambda_k, D_k,
    gamma_eff,k, n beta_k, prior powers, free energies and centres; its checkpoints are those of
    the heaviest basin's sampler. ``config.method`` records d_s (and how it was found), gamma_eff
    (rule and values), the prior powers, the weights rule, the steady-state report and k.
    """
    opts = config.options
    sgd, llc_opts, basin_opts = opts["sgd"], opts["llc"], opts["basins"]
    num_chains, num_samples, burn_in, thin, seed = (config.num_chains, config.num_samples, config.burn_in,
                                                    config.thin, config.seed)
    sgd_run = _sgd_ensemble(target, sgd, seed, progress)
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
    progress_lines.logger.info("%s: %d basins; measuring gamma_eff and the LLC at each ...",
                               progress_lines.name("fractal"), basins.k)
    gamma_eff, gamma_record = _gamma_eff(opts["gamma_eff"], target, sgd, centres)
    lambdas = basin_llcs(target, centres, llc_opts, seed)
    lambda_bar = float(np.sum(basins.masses * lambdas))
    if opts["d_s"] is None:
        d_s, d_s_record = measured_d_s(sgd_run, lambda_bar, xi=opts["xi"], fractal_dim=opts["fractal_dim"])
        d_s = check_d_s(d_s, "measured from the SGD ensemble's late window")
    else:
        d_s, d_s_record = float(opts["d_s"]), {"given": True}
    diffusion_coefficients = basin_diffusion_coefficient(lambdas, opts["xi"], d_s, opts["fractal_dim"])
    nbetas = gamma_eff / diffusion_coefficients
    powers = _prior_powers(opts["prior"], nbetas, target, sgd)
    losses = np.array([float(target.full_loss(c)) for c in centres])
    log_priors = np.array([float(target.log_prior(c)) for c in centres])
    free_energy = tempered_free_energy(nbetas, losses, lambdas, powers * log_priors)
    weights = mixture_weights(opts["weights"], basins.masses, free_energy)

    kernel_options = {"localization": opts["localization"]} | (
        {"step_size": opts["step_size"]} if opts["kernel"] == "sgld" else {})
    basin_runs = [
        sample(target, opts["kernel"], num_chains=num_chains, num_samples=num_samples, burn_in=burn_in,
               thin=thin, seed=seed + 1 + k, init=centres[k], center=centres[k], nbeta=float(nbetas[k]),
               prior_power=float(powers[k]), progress=progress, **kernel_options)
        for k in range(basins.k)
    ]
    choice = np.random.default_rng(seed).choice(basins.k, size=(num_chains, num_samples), p=weights)
    pick = lambda arrays: np.choose(choice.reshape(choice.shape + (1,) * (arrays[0].ndim - 2)), arrays)  # noqa: E731
    positions = pick([r.positions for r in basin_runs])
    stats = {name: pick([r.stats[name] for r in basin_runs]) for name in basin_runs[0].stats}
    stats["basin_start"] = choice
    stats["basin"] = assign_draws(target, basins, positions, probe)
    sites = {name: pick([r.sites[name] for r in basin_runs]) for name in basin_runs[0].sites}
    heaviest = basin_runs[int(np.argmax(weights))]
    group = xr.Dataset(
        {
            "mass_sgd": ("basin", basins.masses),
            "weight": ("basin", weights),
            "llc": ("basin", lambdas),
            "D": ("basin", diffusion_coefficients),
            "gamma_eff": ("basin", gamma_eff),
            "nbeta": ("basin", nbetas),
            "prior_power": ("basin", powers),
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
        "probe": "given" if basin_opts["probe"] is not None else "training inputs",
        "gamma_eff": gamma_record,
        "prior_power": {"rule": opts["prior"], "values": powers.tolist()},
        "weights": opts["weights"],
        "labels": "assignment (nearest basin centroid in function space); basin_start: the sampler's basin",
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
        config=dataclasses.replace(config, options={**opts, "basins": {**basin_opts, "probe": record["probe"]}},
                                   method=jsonable(record)),
        timings={"total_s": sgd_run.timings["total_s"] + sum(r.timings["total_s"] for r in basin_runs)},
        versions=heaviest.versions,
        groups={"basins": group},
        target=target,
    )


SPEC = register(SamplerSpec(
    name="fractal",
    summary="the paper's fractal-constrained sampler: SGD basins, LLC-tempered localized BlackJAX runs, mixed",
    options=OPTIONS,
    run=run_fractal,
    run_settings=("num_chains", "num_samples", "burn_in", "thin", "seed", "progress"),
))
