"""The paper's tempering test on basin masses (SCIENCE.md §3 eqs. 3-5, §4 "Moons posterior test").

Basins k = 1..K carry posterior masses p_b (e.g. SGLD draws per cluster), SGD masses p_sgd (SGD
solutions per cluster) and local learning coefficients lambda_k. Coarse-grained at scale xi, SGD
in basin k diffuses with

    D_k(xi) = xi^{2 - d_walk,k},   d_walk,k = 2 lambda_k / d_s   (fractal_dim="lambda", the paper's)
                                   d_walk,k = 4 lambda_k / d_s   (fractal_dim="2lambda")

(eqs. 3-4) and its local steady state is the posterior raised to 1 / (m D_k) (eq. 5). On basin
masses this gives the prediction (the paper's Lemma 3.3, with an overall scale s in place of m)

    q_k = p_b,k^{1/e_k} / sum_j p_b,j^{1/e_j},   e_k = s D_k(xi),

and tempered SGD masses p_t that undo it. The literal reading of the paper ("tempering the SGD
masses by D_xi") raises each SGD mass to its exponent, p_t,k ∝ p_sgd,k^{e_k} (tempering="power");
because the normaliser of q enters each basin with a different power, that does not return p_b
even when the prediction holds exactly. The default,
tempering="inverse", is the exact inverse of the prediction, p_t,k = (Z p_sgd,k)^{e_k} with Z fixed
by sum_k p_t,k = 1, so p_t = p_b whenever q = p_sgd and the comparison measures only the misfit.
Following the paper, (xi, s) are fitted by minimising KL(p_sgd || q).

The free-energy form (form="free_energy") tempers only the energy. To leading order the posterior
mass of basin k at inverse temperature n beta is P_k(n beta) ∝ exp(-n beta L_k - lambda_k log(n beta))
(the local free energy, Watanabe 2009 Thm 6.7), so p_b,k ∝ exp(-n L_k - lambda_k log n). The power
form raises all of it, the lambda_k log n term included, to 1/e_k; running basin k at
n beta_k = n / e_k instead gives

    q_k ∝ exp(-(n/e_k) L_k - lambda_k log(n/e_k)) = p_b,k^{1/e_k} n^{lambda_k (1/e_k - 1)} e_k^{lambda_k},

with n = m and e_k = s D_k(xi) as in the power form (p_b enters normalised in both forms, the
convention of the paper's Lemma 3.3).
Controls: the untempered comparison (e_k = 1, q = p_b) and a global model with one exponent c for
every basin (q ∝ p_b^{1/c}), which tests whether the basin-dependence through lambda_k matters.
"""

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.optimize
import scipy.special
from numpy.typing import ArrayLike

from fractalbayes import checks
from fractalbayes.errors import InputError
from fractalbayes.slt.evidence import PermutationTest, permutation_test
from fractalbayes.stats.metrics import as_masses, mass_divergences

__all__ = ["FORMS", "PermutationTest", "TemperingFit", "basin_diffusion_coefficient", "fit_tempering", "permutation_test",
           "predict_posterior", "temper"]

XiRange = Literal["paper", "free"]
FractalDim = Literal["lambda", "2lambda"]
Tempering = Literal["inverse", "power"]
Form = Literal["power", "free_energy"]

_WALK_FACTOR = {"lambda": 2.0, "2lambda": 4.0}  # d_walk = factor * lambda / d_s
_XI_RANGES = ("paper", "free")
_TEMPERINGS = ("inverse", "power")
FORMS = ("power", "free_energy")
_POSITIVE = checks.positive()
# Search box: every fitted log-exponent stays within +-_LOG_BOX of 0 (c, s) or of log s (xi).
# Beyond it the predicted masses are numerically saturated (q_k -> 0 or uniform) and the
# objective is flat, so the box loses nothing while keeping every evaluation finite.
_LOG_BOX = 40.0
# Starting points: a grid with spacing 0.5 in log xi, log s, log c over the box, restricted to
# +-_GRID_HALF_WIDTH (factors 1e-3..1e3); L-BFGS-B refines the _N_REFINE best grid points.
_GRID_HALF_WIDTH = 7.0
_N_REFINE = 3
_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000}


@dataclass(frozen=True)
class TemperingFit:
    """Result of :func:`fit_tempering`. Masses are over the same K basins, in input order.

    Fitted model:
        xi, scale: fitted coarse-graining scale and overall scale s (s is m or the given value
            when not fitted); exponents: e_k = s D_k(xi); q: predicted SGD masses
            ∝ p_b^{1/e}; p_tempered: tempered SGD masses (see ``tempering``).
    Fit objective, KL(p_sgd || model) in nats (what is minimised):
        objective (tempering model), objective_untempered (e_k = 1, i.e. KL(p_sgd || p_b)),
        objective_global (one exponent c_global for every basin).
    Comparison with the posterior masses (what the paper reports; see :func:`mass_divergences`
    for the JS base (nats) and the Wasserstein support (basin indices)):
        kl_/js_/wasserstein_tempered: p_b vs p_tempered; ..._untempered: p_b vs p_sgd;
        ..._global: p_b vs p_sgd^{c_global} normalised. KL is KL(p_b || .), the reference first.
    Choices, recorded for run metadata: xi_range, scale_mode ("fit", "m" or "fixed"),
    fractal_dim, tempering, d_s, m, form ("power" or "free_energy", see the module docstring).
    """

    xi: float
    scale: float
    exponents: np.ndarray
    q: np.ndarray
    p_tempered: np.ndarray
    objective: float
    objective_untempered: float
    kl_tempered: float
    kl_untempered: float
    js_tempered: float
    js_untempered: float
    wasserstein_tempered: float
    wasserstein_untempered: float
    c_global: float
    objective_global: float
    kl_global: float
    js_global: float
    wasserstein_global: float
    xi_range: str
    scale_mode: str
    fractal_dim: str
    tempering: str
    d_s: float
    m: float
    form: str = "power"


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _check_fractal_dim(fractal_dim: str) -> None:
    """An InputError unless ``fractal_dim`` is "lambda" or "2lambda"."""
    if fractal_dim not in _WALK_FACTOR:
        raise InputError(
            f"fractal_dim is {fractal_dim!r}; use 'lambda' (the paper's d_f = lambda) or "
            "'2lambda' (d_f = 2 lambda)."
        )


def _check_lambdas(lambdas: ArrayLike) -> np.ndarray:
    """The LLCs as a 1-D float array, finite and >= 0, else an InputError."""
    lambdas = np.asarray(lambdas, dtype=float)
    if lambdas.ndim != 1:
        raise InputError(f"lambdas has shape {lambdas.shape}; pass one LLC per basin (1-D).")
    if not np.all(np.isfinite(lambdas)) or np.any(lambdas < 0):
        raise InputError(
            f"lambdas {lambdas} has negative or non-finite entries; learning coefficients are "
            "finite and >= 0 (check the LLC estimates, e.g. clip small negative ones to 0)."
        )
    return lambdas


def _scale_mode(scale: str | float, m: float) -> tuple[str, float | None]:
    """("fit", None), ("m", log m) or ("fixed", log s)."""
    if isinstance(scale, str):
        if scale == "fit":
            return "fit", None
        if scale == "m":
            return "m", math.log(m)
        raise InputError(f"scale is {scale!r}; use 'fit', 'm' or a number > 0.")
    return "fixed", math.log(checks.check("scale", scale, _POSITIVE))


def _validate(p_sgd, p_b, lambdas, d_s, m, xi_range, scale, fractal_dim):
    """All checks of :func:`fit_tempering`, before any work."""
    p_sgd, p_b = as_masses(p_sgd, "p_sgd"), as_masses(p_b, "p_b")
    lambdas = _check_lambdas(lambdas)
    if not p_sgd.size == p_b.size == lambdas.size:
        raise InputError(
            f"p_sgd, p_b and lambdas have lengths {p_sgd.size}, {p_b.size}, {lambdas.size}; "
            "give one entry per basin, in the same basin order."
        )
    if p_b.size < 2:
        raise InputError(f"only {p_b.size} basin; the tempering test needs at least two basins.")
    if np.any(p_b == 0):
        raise InputError(
            f"p_b is 0 for basins {np.flatnonzero(p_b == 0)}: the prediction p_b^(1/e) gives them "
            "no SGD mass, so KL(p_sgd || q) is infinite; drop or merge those basins or add "
            "pseudo-counts before normalising."
        )
    d_s = checks.check("d_s", d_s, _POSITIVE)
    m = checks.check("m", m, _POSITIVE)
    if xi_range not in _XI_RANGES:
        raise InputError(f"xi_range is {xi_range!r}; use 'paper' (0 < xi <= 1) or 'free' (xi > 0).")
    _check_fractal_dim(fractal_dim)
    mode, log_scale = _scale_mode(scale, m)
    return p_sgd, p_b, lambdas, d_s, m, mode, log_scale


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def _log_xi_slopes(lambdas: np.ndarray, d_s: float, fractal_dim: str) -> np.ndarray:
    """a_k = 2 - d_walk,k, so that log D_k = a_k log xi."""
    return 2.0 - _WALK_FACTOR[fractal_dim] * lambdas / d_s


def basin_diffusion_coefficient(
    lambdas: ArrayLike, xi: float, d_s: float, fractal_dim: FractalDim = "lambda"
) -> np.ndarray:
    """Scale-dependent diffusion coefficient of each basin, D_k = xi^{2 - d_walk,k}.

    SCIENCE.md §3 eq. 4 with eq. 3's d_walk,k = 2 lambda_k / d_s (fractal_dim="lambda", the
    paper's convention d_f = lambda) or 4 lambda_k / d_s (fractal_dim="2lambda", d_f = 2 lambda).
    """
    _check_fractal_dim(fractal_dim)
    xi, d_s = checks.check("xi", xi, _POSITIVE), checks.check("d_s", d_s, _POSITIVE)
    return xi ** _log_xi_slopes(_check_lambdas(lambdas), d_s, fractal_dim)


def _logsumexp(log_w: np.ndarray) -> float:
    """log sum exp(log_w) for a vector with at least one finite entry (-inf entries allowed)."""
    top = np.max(log_w)
    return float(top + np.log(np.sum(np.exp(log_w - top))))


def _renormalised(log_w: np.ndarray) -> np.ndarray:
    """w / sum w from log w, normalised in linear space so the sum is 1 to rounding even when the
    log-weights are huge (saturated exponents: log(w / sum w) computed in log space loses digits)."""
    w = np.exp(log_w - np.max(log_w))
    return w / w.sum()


def _coefficients(log_pb: np.ndarray, lambdas: np.ndarray, m: float, form: str) -> np.ndarray:
    """(a, b, o), shape (3, K), with log q_k = a_k / e_k + b_k log e_k + o_k + const.

    power: a = log p_b, b = o = 0. free_energy: log q_k = (log p_b,k + lambda_k log m) / e_k
    + lambda_k log e_k - lambda_k log m, i.e. a = log p_b + lambda log m, b = lambda,
    o = -lambda log m (module docstring).
    """
    if form == "power":
        return np.stack([log_pb, np.zeros_like(log_pb), np.zeros_like(log_pb)])
    log_m = math.log(m)
    return np.stack([log_pb + lambdas * log_m, lambdas, -lambdas * log_m])


def _log_q(theta: np.ndarray, coef: np.ndarray, design: np.ndarray, offset: float):
    """(dh/dlog e, log q) with h_k = a_k / e_k + b_k log e_k + o_k (see :func:`_coefficients`),
    log e = offset + design @ theta, for theta of shape (n_params,) or a batch (n_points, n_params)."""
    log_e = offset + theta @ design.T
    g = coef[0] * np.exp(-log_e)
    h = g + coef[1] * log_e + coef[2]
    top = np.max(h, axis=-1, keepdims=True)
    return coef[1] - g, h - top - np.log(np.sum(np.exp(h - top), axis=-1, keepdims=True))


def _log_q_at(exponents: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """log q for given exponents e_k."""
    return _log_q(np.log(exponents), coef, np.eye(exponents.size), 0.0)[1]


def _kl_and_grad(
    theta: np.ndarray, p_sgd: np.ndarray, coef: np.ndarray, design: np.ndarray, offset: float
) -> tuple[float, np.ndarray]:
    """KL(p_sgd || q) and its gradient.

    With log q = h - logsumexp(h): dKL/dh = q - p_sgd and dh_k/dlog e_k = b_k - a_k / e_k, so
    dKL/dtheta = design^T [(q - p_sgd) * dh/dlog e].
    """
    dh, log_q = _log_q(theta, coef, design, offset)
    kl = float(np.sum(scipy.special.xlogy(p_sgd, p_sgd)) - p_sgd @ log_q)
    return kl, design.T @ ((np.exp(log_q) - p_sgd) * dh)


def _grid_axis(low: float, high: float) -> np.ndarray:
    """Grid of log-parameter values with spacing <= 0.5 over the box, within +-_GRID_HALF_WIDTH."""
    low, high = max(low, -_GRID_HALF_WIDTH), min(high, _GRID_HALF_WIDTH)
    return np.linspace(low, high, 1 + math.ceil((high - low) / 0.5))


def _minimise(
    p_sgd: np.ndarray,
    coef: np.ndarray,
    design: np.ndarray,
    offset: float,
    bounds: list[tuple[float, float]],
    nested_start: tuple[float, ...],
    warm: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, float]:
    """Minimise KL(p_sgd || q) over theta in the box ``bounds``, deterministically.

    Evaluates the objective on a grid over the box (vectorised), then runs L-BFGS-B with the
    analytic gradient from the _N_REFINE best grid points and from ``nested_start``; with a
    ``warm`` start (a nearby problem's optimum, for bootstrap refits) the grid is skipped and
    L-BFGS-B runs from ``warm`` only, ``nested_start`` being evaluated as a candidate. Every start
    is itself a candidate, so the result is never worse than the nested model's optimum.
    """
    nested = np.asarray(nested_start, dtype=float)
    if warm is None:
        grid = np.stack(
            np.meshgrid(*[_grid_axis(low, high) for low, high in bounds], indexing="ij"), axis=-1
        ).reshape(-1, len(bounds))
        _, log_q = _log_q(grid, coef, design, offset)
        starts = [nested, *grid[np.argsort(-(log_q @ p_sgd), kind="stable")[:_N_REFINE]]]
        best_theta, best_kl = None, math.inf
    else:
        starts = [np.clip(np.asarray(warm, float), *np.array(bounds).T)]
        best_theta, best_kl = nested, _kl_and_grad(nested, p_sgd, coef, design, offset)[0]
    for x0 in starts:
        start_kl = _kl_and_grad(x0, p_sgd, coef, design, offset)[0]
        res = scipy.optimize.minimize(
            _kl_and_grad,
            x0,
            args=(p_sgd, coef, design, offset),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=_OPTIONS,
        )
        for theta, kl in ((x0, start_kl), (res.x, float(res.fun))):
            if kl < best_kl:
                best_theta, best_kl = theta, kl
    return best_theta, best_kl


def _fit_global(p_sgd: np.ndarray, log_pb: np.ndarray, warm: float | None = None) -> tuple[float, float]:
    """(log c, KL(p_sgd || q)) for q ∝ p_b^{1/c}; starts at c = 1, so never worse than it."""
    coef = _coefficients(log_pb, np.zeros_like(log_pb), 1.0, "power")
    theta, kl = _minimise(
        p_sgd, coef, np.ones((log_pb.size, 1)), 0.0, [(-_LOG_BOX, _LOG_BOX)], (0.0,),
        None if warm is None else (warm,),
    )
    return float(theta[0]), kl


def _fit_xi_scale(
    p_sgd: np.ndarray,
    coef: np.ndarray,
    slopes: np.ndarray,
    xi_range: str,
    log_scale: float | None,
    nested_log_scale: float,
    warm: tuple[float, float] | None = None,
) -> tuple[float, float, float]:
    """(log xi, log s, KL(p_sgd || q)) for log e_k = log s + a_k log xi.

    log s is fitted when ``log_scale`` is None; then (xi = 1, s = exp(nested_log_scale)) is a
    start: the global exponent c for the power form, which therefore is never worse than the
    global model it contains, and s = 1 (untempered) for the free-energy form.
    """
    span = _LOG_BOX / max(1.0, float(np.max(np.abs(slopes))))
    xi_bounds = (-span, 0.0) if xi_range == "paper" else (-span, span)
    if log_scale is None:
        design = np.stack([slopes, np.ones_like(slopes)], axis=1)
        bounds = [xi_bounds, (-_LOG_BOX, _LOG_BOX)]
        theta, kl = _minimise(p_sgd, coef, design, 0.0, bounds, (0.0, nested_log_scale), warm)
        return float(theta[0]), float(theta[1]), kl
    theta, kl = _minimise(p_sgd, coef, slopes[:, None], log_scale, [xi_bounds], (0.0,),
                          None if warm is None else warm[:1])
    return float(theta[0]), log_scale, kl


def temper(
    p_sgd: np.ndarray, exponents: np.ndarray, tempering: str = "inverse", shift: np.ndarray | None = None
) -> np.ndarray:
    """Tempered SGD masses; basins with p_sgd = 0 keep mass 0.

    "power": p_t,k = p_sgd,k^{e_k} / sum_j p_sgd,j^{e_j}.
    "inverse": p_t,k = (Z p_sgd,k)^{e_k} with Z > 0 solving sum_k (Z p_sgd,k)^{e_k} = 1, the exact
    inverse of q = p_b^{1/e} / sum_j p_b,j^{1/e_j} (Z is that sum). Brent's method on
    t = log Z, bracketed by max_k(-log p_k) (every term >= 1) and min_k(-log p_k - log K / e_k)
    (every term <= 1/K). The two agree when all e_k are equal.
    ``shift`` r_k replaces log p_sgd,k by log p_sgd,k + r_k in both (the free-energy form's
    inverse, see :func:`fit_tempering`).
    """
    support = p_sgd > 0
    log_p, e = np.log(p_sgd[support]), exponents[support]
    if shift is not None:
        log_p = log_p + shift[support]
    log_z = 0.0
    if tempering == "inverse":
        g = lambda t: _logsumexp(e * (t + log_p))  # increasing in t
        low, high = float(np.min(-log_p - math.log(p_sgd.size) / e)), float(np.max(-log_p))
        g_low, g_high = g(low), g(high)
        # with huge exponents (fits that run to the edge of their box) rounding can put the root
        # exactly on a bracket end
        if g_low >= 0:
            log_z = low
        elif g_high <= 0:
            log_z = high
        else:
            log_z = scipy.optimize.brentq(g, low, high, xtol=1e-14)
    p_t = np.zeros_like(p_sgd)
    p_t[support] = _renormalised(e * (log_z + log_p))
    return p_t


def _inverse_shift(form: str, lambdas: np.ndarray, exponents: np.ndarray, m: float) -> np.ndarray | None:
    """r_k of the free-energy form's inverse (see :func:`fit_tempering`); None for the power form."""
    if form == "power":
        return None
    return lambdas * (math.log(m) - np.log(exponents)) - lambdas * math.log(m) / exponents


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def predict_posterior(fit: TemperingFit, p_sgd: ArrayLike, lambdas: ArrayLike) -> np.ndarray:
    """The posterior masses a fitted model predicts from (other) SGD masses: ``fit``'s tempering of
    ``p_sgd`` with e_k = s D_k(xi) at these lambda_k, in ``fit.form`` and ``fit.tempering`` (for the
    fitted masses and lambdas this is ``fit.p_tempered``). Used to score a fit on held-out masses."""
    p_sgd, lambdas = as_masses(p_sgd, "p_sgd"), _check_lambdas(lambdas)
    exponents = fit.scale * basin_diffusion_coefficient(lambdas, fit.xi, fit.d_s, fit.fractal_dim)
    return temper(p_sgd, exponents, fit.tempering, _inverse_shift(fit.form, lambdas, exponents, fit.m))


def fit_tempering(
    p_sgd: ArrayLike,
    p_b: ArrayLike,
    lambdas: ArrayLike,
    *,
    d_s: float,
    m: float,
    xi_range: XiRange = "paper",
    scale: Literal["fit", "m"] | float = "fit",
    fractal_dim: FractalDim = "lambda",
    tempering: Tempering = "inverse",
    form: Form = "power",
    start: TemperingFit | None = None,
) -> TemperingFit:
    """Fit the paper's basin tempering to SGD and posterior basin masses.

    Minimises KL(p_sgd || q) over (xi, s), q_k ∝ p_b,k^{1/e_k}, e_k = s D_k(xi),
    D_k = xi^{2 - d_walk,k} (SCIENCE.md §3 eqs. 3-5, §4; the paper picks xi this way and finds
    xi = 0.5), then tempers the SGD masses with the fitted exponents and compares them with p_b.

    Args:
        p_sgd: SGD basin masses (nonnegative, sum 1). Zeros are allowed.
        p_b: posterior basin masses (positive, sum 1), same basin order.
        lambdas: local learning coefficient of each basin (finite, >= 0).
        d_s: spectral dimension (> 0).
        m: training-set size (> 0); the paper's scale, used when scale="m", recorded otherwise.
        xi_range: "paper" searches 0 < xi <= 1 (coarse-graining below the unit length scale);
            "free" searches xi > 0. Both optimise log xi.
        scale: "fit" fits s > 0 (log s); "m" fixes s = m (paper-literal: with m in the hundreds
            the exponents are large and q is close to uniform); a number fixes s to it.
        fractal_dim: "lambda" (the paper's d_walk = 2 lambda / d_s) or "2lambda" (4 lambda / d_s).
        tempering: "inverse" (default) p_t,k = (Z p_sgd,k)^{e_k} normalised by the choice of Z,
            the exact inverse of the prediction, so p_t = p_b when the fit is exact; "power"
            p_t ∝ p_sgd^{e}, the literal reading of the paper. They coincide for equal exponents,
            so the global model's comparison does not depend on this choice.
        form: "power" (q ∝ p_b^{1/e}, the paper's Lemma 3.3) or "free_energy" (only the energy
            tempered: q ∝ p_b^{1/e} m^{lambda (1/e - 1)} e^{lambda}, module docstring). The
            free-energy form's tempered masses invert its own prediction: p_t,k =
            exp(e_k (t + log p_sgd,k + r_k)), r_k = lambda_k (log m - log e_k) - lambda_k log m / e_k,
            with t fixed by normalisation ("inverse") or t = 0 then normalised ("power").
        start: a fit of a nearby problem (same form and options), e.g. the in-sample fit when
            refitting bootstrap replicates: L-BFGS-B starts from its parameters (and the nested
            start) instead of a grid. Faster, and local: only for small perturbations.

    Identifiability: log e_k = log s + a_k log xi with a_k = 2 - d_walk,k is affine in
    (log xi, log s), and the K masses give K - 1 constraints. (xi, s) are identifiable when
    K >= 3 and the a_k (hence the lambda_k) are not all equal; with equal lambdas xi is not
    identifiable and only the global exponent is. Only xi^{1/d_s} enters, so d_s and xi are
    confounded: d_s must come from elsewhere (e.g. the displacement fit).

    Optimisation is deterministic: the objective is evaluated on a grid (spacing 0.5 in log xi
    and log s, within factors 1e-3..1e3) and L-BFGS-B with analytic gradients refines the three
    best grid points, keeping the best result. The global model also starts at c = 1, so
    objective_global <= objective_untempered; with scale="fit" the tempering model contains the
    global one (xi = 1, s = c) and starts there too, so objective <= objective_global. Search
    box: |log s|, |log c| <= 40 and |a_k log xi| <= 40.

    Raises:
        InputError (a ValueError): before any work, naming the problem and the fix, for fewer
            than two basins, mismatched lengths, invalid masses (negative, not summing to 1, p_b
            zero), invalid d_s, m, lambdas or scale, or an unknown option.
    """
    p_sgd, p_b, lambdas, d_s, m, mode, log_scale = _validate(
        p_sgd, p_b, lambdas, d_s, m, xi_range, scale, fractal_dim
    )
    if tempering not in _TEMPERINGS:
        raise InputError(f"tempering is {tempering!r}; use 'inverse' or 'power'.")
    if form not in FORMS:
        raise InputError(f"form is {form!r}; use 'power' (the paper's Lemma 3.3) or 'free_energy'.")
    log_pb = np.log(p_b)
    log_c, objective_global = _fit_global(p_sgd, log_pb, None if start is None else math.log(start.c_global))
    slopes = _log_xi_slopes(lambdas, d_s, fractal_dim)
    coef = _coefficients(log_pb, lambdas, m, form)
    warm = None if start is None else (math.log(start.xi), math.log(start.scale))
    nested = log_c if form == "power" else 0.0
    log_xi, log_s, objective = _fit_xi_scale(p_sgd, coef, slopes, xi_range, log_scale, nested, warm)

    exponents = np.exp(log_s + slopes * log_xi)
    c_global = math.exp(log_c)
    p_tempered = temper(p_sgd, exponents, tempering, _inverse_shift(form, lambdas, exponents, m))
    tempered = mass_divergences(p_b, p_tempered)
    untempered = mass_divergences(p_b, p_sgd)
    global_ = mass_divergences(p_b, temper(p_sgd, np.full_like(p_sgd, c_global), "power"))
    k = p_b.size
    return TemperingFit(
        xi=math.exp(log_xi),
        scale=math.exp(log_s),
        exponents=exponents,
        q=_renormalised(_log_q_at(exponents, coef)),
        p_tempered=p_tempered,
        objective=objective,
        # the global model at c = 1, the exact value its optimiser starts from
        objective_untempered=_kl_and_grad(np.zeros(1), p_sgd, _coefficients(log_pb, lambdas, m, "power"),
                                          np.ones((k, 1)), 0.0)[0],
        kl_tempered=tempered["kl"],
        kl_untempered=untempered["kl"],
        js_tempered=tempered["js"],
        js_untempered=untempered["js"],
        wasserstein_tempered=tempered["wasserstein"],
        wasserstein_untempered=untempered["wasserstein"],
        c_global=c_global,
        objective_global=objective_global,
        kl_global=global_["kl"],
        js_global=global_["js"],
        wasserstein_global=global_["wasserstein"],
        xi_range=xi_range,
        scale_mode=mode,
        fractal_dim=fractal_dim,
        tempering=tempering,
        d_s=d_s,
        m=m,
        form=form,
    )
