"""The analyses a suite runs on each cell, one small function each, and their typed options.

Every analysis takes the cell's :class:`Context` (data set, target, the runs by arm, seed, config)
and its options, and returns a JSON-ready dict with

    metrics   {row: {name: value}}: one row per arm (or another label, e.g. "estimate"); the report
              merges the rows of all analyses into one table per cell and across cells;
    tables    {name: DataFrame}, shown in the cell's section of the report;

plus details (curves, masses). Figures go to ``context.figures`` (name -> matplotlib Figure).
:data:`ANALYSES` lists them in the order they run, each with its options as typed
:class:`~fractalbayes.samplers.registry.Option` s (default, validator, meaning): the LLC analyses take
``fractalbayes.slt.llc.settings.OPTIONS``, the tempering analysis the fractal sampler's own basin and
LLC options, so each setting is declared once. Options naming arms are checked against the suite's
arms before anything runs (:mod:`fractalbayes.suite.validate`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from fractalbayes import checks, slt
from fractalbayes.engine.run import Run
from fractalbayes.methods import fractal
from fractalbayes.methods.fractal import sampler as fractal_sampler
from fractalbayes.model import zoo as models
from fractalbayes.model.predict import class_probabilities, predictive_mean
from fractalbayes.samplers import registry
from fractalbayes.samplers.registry import Option
from fractalbayes.slt import diffusion, llc
from fractalbayes.slt.llc import settings as llc_settings
from fractalbayes.stats.comparison import compare, compare_figures, verdicts
from fractalbayes.stats.diagnostics import summary
from fractalbayes.stats.headline import headline

REQUIRED = inspect.Parameter.empty
"""Marks an option that has no default and must be given (as ``inspect`` marks a parameter without one)."""


@dataclass
class Context:
    """What one cell's analyses share: its data, target and runs, and what earlier analyses found."""

    cell_id: str
    seed: int
    config: dict[str, Any]
    dataset: Any
    target: Any
    runs: dict[str, Run]
    failed_arms: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    llc: dict[str, Any] = field(default_factory=dict)
    """Arm -> its LLC from the "llc" analysis (a number, or an LLCTrajectory), for "diffusion"."""

    @property
    def reference(self) -> str | None:
        return self.config.get("reference")

    def run(self, arm: str) -> Run:
        if arm in self.runs:
            return self.runs[arm]
        if arm in self.failed_arms:
            raise RuntimeError(f"arm {arm!r} failed to sample; its error is in the index")
        raise KeyError(f"no arm {arm!r}; arms: {sorted(self.runs)}")

    def arms(self, given: str | list[str] | None, default: Callable[[Run], bool], what: str) -> list[str]:
        """The arms named by an option, or those passing ``default`` when it is not given."""
        if given is not None:
            return [given] if isinstance(given, str) else list(given)
        names = [name for name, run in self.runs.items() if default(run)]
        if not names:
            raise ValueError(f"no arm suited to {what} among {sorted(self.runs)}: name them with arms = [...]")
        return names


def evaluation_split(dataset) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, "test"), or the training set when the data set has no test split."""
    if len(dataset.x_test):
        return np.asarray(dataset.x_test), np.asarray(dataset.y_test), "test"
    return np.asarray(dataset.x_train), np.asarray(dataset.y_train), "train"


def is_classifier(target, x: np.ndarray) -> bool:
    try:
        class_probabilities(target, np.zeros((1, target.dim), np.float32), x[:1])
    except ValueError:
        return False
    return True


def _subsample(positions: np.ndarray, max_draws: int, seed: int) -> np.ndarray:
    flat = positions.reshape(-1, positions.shape[-1])
    if len(flat) <= max_draws:
        return flat
    return flat[np.sort(np.random.default_rng(seed).choice(len(flat), max_draws, replace=False))]


# --------------------------------------------------------------------------------------------------
# The analyses
# --------------------------------------------------------------------------------------------------


def predictive(ctx: Context, options: dict) -> dict:
    """Held-out accuracy (classifiers) or RMSE (regression) of each arm: of the mean predictive over
    up to ``max_draws`` draws, and averaged over single draws (one trained net each, for SGD)."""
    x, y, split = evaluation_split(ctx.dataset)
    classifier = is_classifier(ctx.target, x)
    metrics = {}
    for arm, run in ctx.runs.items():
        draws = _subsample(run.positions, options["max_draws"], ctx.seed)
        if classifier:
            probs = class_probabilities(ctx.target, draws, x)
            mean = probs.mean(0)
            metrics[arm] = {
                f"{split}_accuracy": float(np.mean(mean.argmax(-1) == y)),
                f"{split}_accuracy_per_draw": float(np.mean(probs.argmax(-1) == y[None])),
                f"{split}_nll": float(-np.mean(np.log(mean[np.arange(len(y)), y] + 1e-12))),
            }
        else:
            pred = predictive_mean(ctx.target, draws, x)
            per_draw = np.sqrt(np.mean((pred - y[None]) ** 2, axis=tuple(range(1, pred.ndim))))
            metrics[arm] = {f"{split}_rmse": float(np.sqrt(np.mean((pred.mean(0) - y) ** 2))),
                            f"{split}_rmse_per_draw": float(per_draw.mean())}
    return {"metrics": metrics, "split": split, "classifier": classifier}


def diagnostics(ctx: Context, options: dict) -> dict:
    """ArviZ summary (ESS bulk/tail, R-hat, MCSE) of every arm, reduced to one row per arm and site."""
    if ctx.target.dim > options["max_params"]:
        return {"skipped": f"{ctx.target.dim} parameters > max_params = {options['max_params']}"}
    table = summary(ctx.runs, var_names=options["var_names"])
    arm = table.index.get_level_values("sampler")
    site = table.index.get_level_values("variable").str.replace(r"\[.*", "", regex=True)
    per_site = table.groupby([arm, site], sort=False).agg(
        params=("ess_bulk", "size"), ess_bulk_min=("ess_bulk", "min"), ess_tail_min=("ess_tail", "min"),
        r_hat_max=("r_hat", "max"), mcse_mean_max=("mcse_mean", "max"),
    )
    per_site.index.names = ["arm", "site"]
    per_arm = per_site.groupby(level="arm", sort=False).agg(
        ess_bulk_min=("ess_bulk_min", "min"), ess_tail_min=("ess_tail_min", "min"), r_hat_max=("r_hat_max", "max"))
    return {"metrics": per_arm.to_dict(orient="index"), "tables": {"diagnostics": per_site}}


def _arm_of(ctx: Context, given: str | None, sampler: str) -> str | None:
    """The named arm, or the one arm sampled with ``sampler`` (None when there is not exactly one)."""
    if given is not None:
        return given
    found = [name for name, run in ctx.runs.items() if run.sampler == sampler]
    return found[0] if len(found) == 1 else None


def comparison(ctx: Context, options: dict) -> dict:
    """fb.compare against the reference arm (and any further ``references``): chain health,
    weight-space distances with noise floors, the MCMC-valid MMD test and, with a probe set (test
    inputs by default), function-space agreement; each arm's sampling time; the verdict per
    reference; and the headline comparison (fb.stats.headline) when an SGD and a fractal arm ran."""
    reference = options["reference"] or ctx.reference
    ctx.run(reference)
    x_probe = None
    if options["probe"] == "test":
        x_probe = evaluation_split(ctx.dataset)[0]
    elif options["probe"] == "train":
        x_probe = np.asarray(ctx.dataset.x_train)
    extra = [r for r in options["references"] or [] if r != reference and r in ctx.runs]
    table = compare(ctx.runs, reference=[reference, *extra], probe=x_probe, target=ctx.target,
                    max_draws=options["max_draws"], seed=ctx.seed)
    main = table.loc[reference].copy()
    main["seconds"] = [ctx.runs[arm].timings.get("total_s") for arm in main.index]
    for name, figure in compare_figures(ctx.runs).items():
        ctx.figures[f"compare_{name}"] = figure
    result = {"metrics": main.to_dict(orient="index"), "reference": reference, "references": [reference, *extra],
              "verdicts": verdicts(table),
              "tables": {f"against {r}": table.loc[r] for r in extra}}
    sgd, fractal_arm = _arm_of(ctx, options["sgd"], "sgd"), _arm_of(ctx, options["fractal"], "fractal")
    if sgd in ctx.runs and fractal_arm in ctx.runs and reference not in (sgd, fractal_arm):
        answer = headline(ctx.runs, sgd=sgd, fractal=fractal_arm, posterior=reference, probe=x_probe,
                          target=ctx.target, max_draws=options["max_draws"], seed=ctx.seed)
        result["headline"] = {"question": answer.question, "lines": answer.lines}
        result["tables"]["headline"] = answer.table
    return result


def local_learning_coefficient(ctx: Context, options: dict) -> dict:
    """LLC (llc.trajectory) at each chain's final position (``at="final"``), or at every ``every``-th
    checkpoint from the run's checkpoint_start on (``"trajectory"``, whose time average the
    diffusion analysis then uses as lambda_bar); at most ``max_chains`` chains per arm."""
    names = ctx.arms(options["arms"], lambda run: run.sampler == "sgd", "the LLC analysis (default: sgd arms)")
    settings = {o.name: options[o.name] for o in LLC_TRAJECTORY_OPTIONS}
    metrics, details = {}, {}
    for arm in names:
        run = ctx.run(arm)
        chains = slice(0, options["max_chains"])
        if options["at"] == "final":
            points, steps = run.positions[chains, -1:], run.checkpoint_steps[-1:]
        else:
            pick = np.flatnonzero(run.checkpoint_steps >= run.config.checkpoint_start)[:: options["every"]]
            points, steps = run.checkpoints[chains][:, pick], run.checkpoint_steps[pick]
        window = dataclasses.replace(run, positions=run.positions[chains], checkpoints=points, checkpoint_steps=steps)
        trajectory = llc.trajectory(window, ctx.target, seed=ctx.seed, **settings)
        final = trajectory.per_chain[:, -1]
        ctx.llc[arm] = trajectory if options["at"] == "trajectory" else float(np.nanmean(final))
        metrics[arm] = {"llc": float(np.nanmean(final)),
                        "llc_sd": float(np.nanstd(final, ddof=1)) if len(final) > 1 else None,
                        "llc_window_mean": float(np.nanmean(trajectory.values))}
        details[arm] = {"steps": trajectory.steps, "values": trajectory.values, "final_per_chain": final,
                        "nbeta": trajectory.nbeta, "nbeta_rule": trajectory.nbeta_rule,
                        "warnings": list(trajectory.warnings)}
    return {"metrics": metrics, "details": details}


def _independent_bound(d_s: float, d_f: float) -> bool | None:
    """Eq. 6 with both sides measured (textbook convention): d_s_independent <= d_f; None when
    either is NaN (the estimator said why in the result's notes)."""
    return bool(d_s <= d_f) if np.isfinite(d_s) and np.isfinite(d_f) else None


def weight_diffusion(ctx: Context, options: dict) -> dict:
    """diffusion.analyze on each SG arm: R(t) fits with the Brownian and logarithmic baselines, the
    two-regime fit, d_walk, d_s (with the LLC when the "llc" analysis ran), the bound d_s <=
    lambda_bar, the total displacement ||w_T - w_0||, the regime (and sub-diffusion mechanism), and
    the measurements independent of the slope with their chain-bootstrap intervals: d_s from returns
    or covering, d_f (correlation dimension), Alexander-Orbach's 2 d_f slope and the d_f it needs
    to match d_s_independent (d_s_independent d_walk / 2), the bound d_s_independent <= d_f, and
    the estimators' notes."""
    names = ctx.arms(options["arms"], lambda run: run.sampler in ("sgd", "sgld", "sghmc"),
                     "the diffusion analysis (default: sgd, sgld and sghmc arms)")
    metrics, tables, curves = {}, {}, {}
    for arm in names:
        run = ctx.run(arm)
        t0 = run.config.checkpoint_start if options["t0"] == "checkpoint_start" else options["t0"]
        result = diffusion.analyze(
            run, t0=t0, window=tuple(options["window"]) if options["window"] else None, xi=options["xi"],
            fractal_dim=options["fractal_dim"], llc=ctx.llc.get(arm) if options["use_llc"] else None,
            n_boot=options["n_boot"], seed=ctx.seed,
        )
        ctx.figures[f"displacement_{arm}"] = diffusion.plot_displacement(result)
        if result.llc_steps is not None:
            ctx.figures[f"llc_{arm}"] = diffusion.plot_llc(result)
        low, high = result.slope_ci
        total = np.linalg.norm(run.checkpoints[:, -1] - run.checkpoints[:, 0], axis=-1)
        metrics[arm] = {
            "slope": result.slope, "slope_ci_low": low, "slope_ci_high": high, "r2": result.r2,
            "d_walk": result.d_walk, "d_s": result.d_s, "lambda_bar": result.lambda_bar,
            "bound_holds": result.bound_holds, "D_xi": result.D_xi, "preferred_model": result.preferred_model,
            "early_slope": result.two_regime.early_slope, "late_slope": result.two_regime.late_slope,
            "crossover": result.two_regime.crossover, "d_s_covering": result.covering.d_s,
            "d_s_returns": result.returns.d_s, "d_s_independent": result.d_s_independent,
            "d_s_independent_ci_low": result.d_s_independent_ci[0],
            "d_s_independent_ci_high": result.d_s_independent_ci[1],
            "d_s_independent_method": result.d_s_independent_method,
            "d_f": result.d_f, "d_f_ci_low": result.correlation.ci[0], "d_f_ci_high": result.correlation.ci[1],
            "d_s_alexander_orbach": result.d_s_alexander_orbach,
            "d_f_implied": result.d_s_independent * result.d_walk / 2,
            "independent_bound_holds": _independent_bound(result.d_s_independent, result.d_f),
            "regime": result.regime, "mechanism": result.mechanism, "diffusion_notes": " | ".join(result.notes),
            "displacement_total": float(total.mean()),
        }
        tables[f"diffusion_{arm}"] = result.table()[["model", "quantity", "value", "ci_low", "ci_high"]]
        low_r, high_r = np.percentile(result.radius, [16, 84], axis=0)
        curves[arm] = {"t0": result.t0, "lags": result.lags, "r_mean": result.radius_mean, "r_low": low_r,
                       "r_high": high_r, "window": result.window}
    return {"metrics": metrics, "tables": tables, "curves": curves}


def tempering(ctx: Context, options: dict) -> dict:
    """The paper's basin-tempering test (fractal.tempering_test) of each SGD arm against the posterior
    arm, with its controls: untempered, one global exponent, LLC form, free-energy form, shuffled LLCs;
    in-sample with bootstrap SE and 90 % interval, held out (refitted basins, lambda_k, d_s); the
    permutation p-value, its power and the verdict line."""
    posterior = ctx.run(options["posterior"] or ctx.reference)
    from_sgd = ctx.run(options["posterior_from_sgd"]) if options["posterior_from_sgd"] else None
    settings = {o.name: options[o.name] for o in TEMPERING_TEST_OPTIONS} | {"k_range": tuple(options["k_range"])}
    metrics, tables, details = {}, {}, {}
    for arm in [options["sgd"]] if isinstance(options["sgd"], str) else options["sgd"]:
        result = fractal.tempering_test(ctx.run(arm), posterior, target=ctx.target, posterior_from_sgd=from_sgd,
                                        seed=ctx.seed, **settings)
        table = result.table
        ctx.figures[f"tempering_{arm}"] = result.figure()
        metrics[arm] = {
            "basins": result.basins.k, "xi_fit": result.fit.xi, "scale_fit": result.fit.scale,
            "tempering_d_s": result.d_s, "permutation_rank": result.permutation_rank,
            "num_permutations": result.num_permutations, "p_value": result.p_value, "power": result.power,
            "verdict": result.verdict, "mean_basin_switches": result.mixing["mean_switches"],
            "xi_fit_free_energy": result.free_energy_fit.xi, "scale_fit_free_energy": result.free_energy_fit.scale,
        } | {f"{m}_{model}{part}": table.loc[model, f"{m}_in_sample{part}"] for model in table.index
             for m in ("kl", "js", "wasserstein") for part in ("", "_se", "_lo", "_hi")
             } | {f"kl_{model}_held_out{part}": table.loc[model, f"kl_held_out{part}"] for model in table.index
                  for part in ("", "_iqr", "_se", "_lo", "_hi")
                  } | {f"{model}_{count}": int(table.loc[model, count]) for model in table.index
                       for count in ("in_sample_replicates_scored", "held_out_splits_scored")}
        tables[f"tempering_{arm}"] = table
        tables[f"tempering_per_k_{arm}"] = result.per_k
        details[arm] = {"p_sgd": result.p_sgd, "p_b": result.p_b, "p_tempered": result.fit.p_tempered,
                        "lambdas": result.lambdas, "mixing": result.mixing, "record": result.record}
    return {"metrics": metrics, "tables": tables, "details": details}


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def lyapunov(ctx: Context, options: dict) -> dict:
    """Constant-rate SGD on linear regression as a sampler (Mandt, Hoffman & Blei 2017).

    Near w* the iterates are AR(1) with stationary covariance S solving the discrete Lyapunov
    equation S = (I - eta A) S (I - eta A) + eta^2 C / B (A: Hessian of the mean loss, plus weight
    decay / prior precision when used; C: covariance of per-example gradients at w*). Compares the
    SGD arm's draw covariance with S, with the exact conjugate posterior covariance and with the
    reference arm's; also gives Mandt et al.'s posterior-matching rate eta* = 2 B d / (n tr C).
    """
    import scipy.linalg

    model = ctx.config["model"]
    model_options = _model_defaults(model["name"]) | model.get("options", {})
    if model["name"] != "linear_regression" or model_options.get("bias"):
        raise ValueError("lyapunov needs model.name = 'linear_regression' without bias (a quadratic loss)")
    run = ctx.run(options["arm"])
    opts = run.config.options
    if run.sampler != "sgd" or opts["optimizer"] != "sgd" or opts["momentum"] or opts["schedule"] is not None:
        raise ValueError(f"lyapunov predicts plain constant-rate SGD; arm {options['arm']!r} is {run.sampler} "
                         f"with options {opts}: use sampler 'sgd', optimizer 'sgd', momentum 0, no schedule")
    x = np.asarray(ctx.dataset.x_train, np.float64)
    y = np.asarray(ctx.dataset.y_train, np.float64)
    n, d = x.shape
    noise2, prior2 = model_options["noise_scale"] ** 2, model_options["prior_scale"] ** 2
    eta, batch = float(opts["learning_rate"]), int(run.config.batch_size)
    decay = float(opts["weight_decay"]) + (1 / (n * prior2) if opts["objective"] == "map" else 0.0)
    hessian = x.T @ x / (n * noise2) + decay * np.eye(d)
    w_star = np.linalg.solve(hessian, x.T @ y / (n * noise2))
    grads = -x * (y - x @ w_star)[:, None] / noise2
    noise = np.cov(grads, rowvar=False, bias=True)
    predicted = scipy.linalg.solve_discrete_lyapunov(np.eye(d) - eta * hessian, eta**2 * noise / batch)
    draws = run.positions.reshape(-1, d).astype(np.float64)
    empirical = np.cov(draws, rowvar=False)
    posterior = np.linalg.inv(x.T @ x / noise2 + np.eye(d) / prior2)
    row = {
        "learning_rate": eta, "batch_size": batch,
        "cov_error_vs_lyapunov": _relative(empirical, predicted),
        "cov_error_vs_posterior": _relative(empirical, posterior),
        "lyapunov_vs_posterior": _relative(predicted, posterior),
        "trace_ratio_sgd_posterior": float(np.trace(empirical) / np.trace(posterior)),
        "mean_offset_sd": float(np.linalg.norm(draws.mean(0) - w_star) / np.sqrt(np.trace(predicted))),
        "learning_rate_mandt_optimal": float(2 * batch * d / (n * np.trace(noise))),
    }
    reference = options["reference"] or ctx.reference
    if reference is not None and reference != options["arm"]:
        reference_cov = np.cov(ctx.run(reference).positions.reshape(-1, d), rowvar=False)
        row |= {"cov_error_vs_reference": _relative(empirical, reference_cov),
                "reference_vs_posterior": _relative(reference_cov, posterior)}
    matrices = {"sgd_draws": empirical, "lyapunov": predicted, "posterior_exact": posterior, "hessian": hessian,
                "gradient_noise": noise}
    return {"metrics": {options["arm"]: row}, "matrices": matrices}


def _model_defaults(name: str) -> dict[str, Any]:
    """Keyword defaults of a shipped model (empty for user models)."""
    function = models.MODELS.get(name)
    if function is None:
        return {}
    return {p.name: p.default for p in inspect.signature(function).parameters.values()
            if p.default is not p.empty and p.name != "y"}


def exact_learning_coefficient(config: dict, dataset) -> tuple[Fraction, int, str]:
    """(lambda, multiplicity, formula) of the cell's model at its teacher (SCIENCE.md section 6)."""
    name = config["model"]["name"]
    options = _model_defaults(name) | config["model"].get("options", {})
    x_dim = dataset.x_train.shape[1]
    if name == "deep_linear_network":
        rank = dataset.info.get("rank")
        if rank is None:
            raise ValueError("llc_truth needs a teacher with a known true rank: data rrr_teacher or dln_teacher")
        out_dim = options.get("out_dim") or dataset.y_train.shape[1]
        widths = [x_dim, *options["hidden"], out_dim]
        lam, multiplicity = slt.dln_learning_coefficient(widths, rank)
        return lam, multiplicity, f"deep linear network (Aoyagi 2024), widths {widths}, true rank {rank}"
    if name == "linear_regression":
        d = x_dim + bool(options.get("bias"))
        return slt.regular_learning_coefficient(d), 1, f"regular model, d = {d}"
    if name == "normal_crossing":
        if any(w != 0 for w in dataset.info.get("w_true", [1])):
            raise ValueError("llc_truth for normal_crossing needs the teacher at w = 0 (normal_crossing_teacher)")
        lam, multiplicity = slt.monomial_learning_coefficient(list(options["k"]))
        return lam, multiplicity, f"monomial potential prod w_j^(2 k_j), k = {list(options['k'])}"
    raise ValueError(f"llc_truth knows the learning coefficient of deep_linear_network, linear_regression and "
                     f"normal_crossing, not of {name!r}")


def _true_center(ctx: Context) -> dict[str, np.ndarray]:
    """The teacher's weights as the model's sites (w_l is fan_in x fan_out)."""
    info = ctx.dataset.info
    layers = info.get("weights") or ([info["A"], info["B"]] if "A" in info else None)
    if layers is None:
        raise ValueError("center = 'true' needs a teacher that records its weights (rrr_teacher, dln_teacher)")
    sites = {f"w{i}": np.asarray(layer, np.float32).T for i, layer in enumerate(layers)}
    expected = {name: tuple(np.shape(value)) for name, value in ctx.target.constrain(
        np.zeros(ctx.target.dim, np.float32)).items()}
    if {k: v.shape for k, v in sites.items()} != expected:
        raise ValueError(f"the teacher's layers {[np.shape(l) for l in layers]} do not fit the model's sites "
                         f"{expected}: give the model the teacher's widths, or use center = 'train'")
    return sites


def llc_truth(ctx: Context, options: dict) -> dict:
    """The exact learning coefficient (slt) against llc.estimate at a trained minimiser
    (``center="train"``) or at the teacher (``"true"``), and against the "llc" analysis' arms."""
    exact, multiplicity, formula = exact_learning_coefficient(ctx.config, ctx.dataset)
    center = None if options["center"] == "train" else _true_center(ctx)
    result = llc.estimate(ctx.target, center, seed=ctx.seed, **{o.name: options[o.name] for o in llc_settings.OPTIONS},
                          train_options=options["train_options"] if center is None else None)
    row = {"llc_exact": float(exact), "multiplicity": multiplicity, "llc_estimate": result.mean,
           "llc_estimate_sd": result.std, "llc_mcse": result.mcse, "llc_error": result.mean - float(exact),
           "llc_relative_error": (result.mean - float(exact)) / float(exact) if exact else None,
           "r_hat": result.r_hat, "nbeta": result.nbeta, "center_loss": result.init_loss, "healthy": result.healthy}
    metrics = {"estimate": row}
    for arm, value in ctx.llc.items():
        final = value if isinstance(value, float) else float(value.values[-1])
        metrics[arm] = {"llc_exact": float(exact), "llc_error": final - float(exact)}
    return {"metrics": metrics, "exact": str(exact), "formula": formula, "warnings": list(result.warnings)}


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def _arm_name_or_names(value: Any) -> str | tuple[str, ...]:
    if isinstance(value, str) or isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return value
    raise checks.Invalid(f"must be an arm name or a non-empty array of arm names, got {checks.show(value)}")


_arm_name_or_names.want = "an arm name or an array of arm names"
ARM = checks.kind(str, want="an arm name")
ARMS = _arm_name_or_names


def _option(name: str, options: tuple[Option, ...]) -> Option:
    return next(o for o in options if o.name == name)


@dataclass(frozen=True)
class Analysis:
    """A registered analysis: the function that runs it and its typed options."""

    run: Callable[[Context, dict], dict]
    title: str
    """The heading of its section in the report."""
    options: tuple[Option, ...]
    """Every option with its default (REQUIRED: none) and validator."""
    arm_options: tuple[str, ...] = ()
    """Options whose values (a name or a list of names) must be arms of the suite."""
    needs_reference: str | None = None
    """Option that names the reference arm when suite.reference does not."""
    needs_arms: bool = True

    @property
    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def option(self, name: str) -> Option:
        return _option(name, self.options)


LLC_TRAJECTORY_OPTIONS = registry.replace_defaults(
    tuple(o for o in llc_settings.OPTIONS if o.name != "num_chains"), num_draws=500, burn_in=200,
) + (Option("chains_per_point", 1, checks.integer(1), "LLC chains per checkpoint and SGD chain"),)
"""fb.llc.trajectory's settings: the estimator's (one chain per point, shorter by default)."""

_FRACTAL = fractal_sampler.OPTIONS + fractal_sampler.BASIN_OPTIONS
TEMPERING_TEST_OPTIONS = (
    _option("feature", _FRACTAL), _option("k", _FRACTAL), _option("k_range", _FRACTAL),
    Option("lambdas", None,
           checks.optional(checks.sequence_of(checks.positive(), want="an array of LLCs, one per basin")),
           "the basins' LLCs; none: estimated at each basin's medoid"),
    _option("d_s", _FRACTAL),
    Option("masses", "count", checks.choice("count", "free_energy"),
           "posterior basin masses: draws counted, or free energies (chains that do not mix)"),
    _option("xi", _FRACTAL),
    Option("xi_range", "paper", checks.choice("paper", "free"),
           "range of the fitted xi: the paper's 0 < xi <= 1, or any xi > 0 (free)"),
    Option("scale", "fit", checks.choice("fit", "m", also=checks.positive()),
           "the mass scale: fitted, the number of SGD nets 'm', or a number"),
    _option("fractal_dim", _FRACTAL),
    Option("llc_options", None, checks.optional(registry.table(fractal_sampler.LLC_OPTIONS, "tempering's llc_options")),
           "per-basin fb.llc.estimate settings (the fractal sampler's llc table; none: its defaults)"),
    Option("num_splits", None, checks.optional(checks.integer(1)),
           "random halves for the held-out comparison; none: 5 with refit 'all', 20 with 'masses'"),
    Option("refit", "all", checks.choice("all", "masses"),
           "held-out halves refit basins, LLCs and d_s on the fitting half ('all'), or only split the counts"),
    Option("num_bootstrap", 200, checks.integer(0),
           "bootstrap replicates (nets, chains, LLC errors) of the in-sample scores; 0: none"),
    Option("max_permutations", 120, checks.integer(1), "LLC permutations for the shuffled control"),
)
"""fractal.tempering_test's settings (besides the runs), shared with the fractal sampler where they agree."""

ANALYSES: dict[str, Analysis] = {
    "predictive": Analysis(predictive, "Held-out predictions", (
        Option("max_draws", 200, checks.integer(1), "draws (subsampled over chains) in the mean predictive"),
    )),
    "summary": Analysis(diagnostics, "Chain diagnostics", (
        Option("var_names", None,
               checks.optional(checks.sequence_of(checks.kind(str, want="a site name"), want="an array of site names")),
               "sites summarised; none: all"),
        Option("max_params", 2000, checks.integer(1), "skipped for models with more parameters"),
        Option("marginals", "auto", checks.kind(str, want="a site name or 'auto'"),
               "site of the marginals figure; 'auto': the last site with at most 16 entries"),
    )),
    "compare": Analysis(comparison, "Comparison with the reference", (
        Option("reference", None, checks.optional(ARM), "the reference arm; none: suite.reference"),
        Option("probe", "test", checks.choice("test", "train", "none"), "inputs of the function-space comparison"),
        Option("max_draws", 1000, checks.integer(1), "draws per arm compared"),
        Option("references", None, checks.optional(ARMS), "further reference arms (e.g. ['sgd']): every arm compared with each"),
        Option("sgd", None, checks.optional(ARM), "SGD arm of the headline comparison; none: the one 'sgd' arm"),
        Option("fractal", None, checks.optional(ARM), "fractal arm of the headline comparison; none: the one 'fractal' arm"),
    ), arm_options=("reference", "references", "sgd", "fractal"), needs_reference="reference"),
    "llc": Analysis(local_learning_coefficient, "Local learning coefficient", (
        Option("arms", None, checks.optional(ARMS), "arms whose chains are measured; none: the sgd arms"),
        Option("at", "final", checks.choice("final", "trajectory"),
               "at each chain's final position, or along its checkpoints"),
        Option("every", 1, checks.integer(1), "every k-th checkpoint from checkpoint_start (trajectory)"),
        Option("max_chains", 16, checks.integer(1), "chains measured per arm"),
    ) + LLC_TRAJECTORY_OPTIONS, arm_options=("arms",)),
    "diffusion": Analysis(weight_diffusion, "Weight diffusion", (
        Option("arms", None, checks.optional(ARMS), "arms analysed; none: the sgd, sgld and sghmc arms"),
        Option("t0", "checkpoint_start", checks.choice("checkpoint_start", also=checks.integer(0)),
               "origin of the displacement: the run's checkpoint_start or a step"),
        Option("window", None, checks.optional(checks.sequence_of(checks.positive(allow_zero=True), 2,
                                                                   want="[start, end] (numbers >= 0)")),
               "[start, end] lags of the fit; none: automatic"),
        _option("xi", _FRACTAL),
        _option("fractal_dim", _FRACTAL),
        Option("n_boot", 200, checks.integer(1), "bootstrap resamples of the slope's interval"),
        Option("use_llc", True, checks.kind(bool, want="true or false"),
               "take lambda_bar from the llc analysis when it ran"),
    ), arm_options=("arms",)),
    "tempering": Analysis(tempering, "Tempering test", (
        Option("sgd", REQUIRED, ARMS, "the SGD arm(s) tested"),
        Option("posterior", None, checks.optional(ARM), "the posterior arm; none: suite.reference"),
        Option("posterior_from_sgd", None, checks.optional(ARM), "an arm sampled from the SGD basins (fractal)"),
    ) + TEMPERING_TEST_OPTIONS, arm_options=("sgd", "posterior", "posterior_from_sgd"), needs_reference="posterior"),
    "lyapunov": Analysis(lyapunov, "Constant SGD vs the Lyapunov prediction", (
        Option("arm", REQUIRED, ARM, "the constant-rate SGD arm"),
        Option("reference", None, checks.optional(ARM), "a posterior arm compared too; none: suite.reference"),
    ), arm_options=("arm", "reference")),
    "llc_truth": Analysis(llc_truth, "LLC against the exact value", (
        Option("center", "train", checks.choice("train", "true"),
               "a minimiser trained by fb.llc.train, or the teacher"),
        *llc_settings.OPTIONS,
        Option("train_options", None, checks.optional(checks.kind(dict, want="a table of fb.llc.train options")),
               "options of fb.llc.train (center = 'train')"),
    ), needs_arms=False),
}
