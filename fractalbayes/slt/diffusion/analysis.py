"""The displacement analysis :func:`analyze`: input unpacking and checks, then one pass from
checkpoints to a :class:`~fractalbayes.slt.diffusion.result.DiffusionResult`.

Implements the displacement analysis of Hennick & De Baerdemacker, "Almost Bayesian"
(arXiv 2503.22478). Equation numbers are those of the project's science notes (SCIENCE.md,
section 3), which restate the paper's relations.

* Displacement  R(t) = || w_{t0+t} - w_{t0} ||_2 over all flattened parameters, per chain.
* Fit           log R = intercept + slope * log t on a window (eq. 7, second estimator),
                with baselines: Brownian (slope 1/2) and logarithmic (R = a + b ln t), plus an
                automatic two-regime (broken power law) fit that locates the crossover.
* Derived       d_walk = 1 / slope;  d_s = 2 d_f slope with d_f = lambda_bar (the paper's
                convention, ``fractal_dim="lambda"``) or d_f = 2 lambda_bar (the textbook one,
                ``"2lambda"``), i.e. the Alexander-Orbach relation d_walk = 2 d_f / d_s (eq. 3;
                Alexander & Orbach 1982); the bound d_s <= lambda_bar (eq. 6); the effective
                diffusion coefficient D_xi = xi^(2 - d_walk) (eq. 4).
* Independent   in the full space, without the slope: d_s from the return probability
                P0(t) ~ t^(-d_s/2) and the covering number N(t) ~ t^(d_s/2), and the fractal
                dimension d_f of the visited set (correlation dimension), so the
                Alexander-Orbach relation d_s = 2 d_f / d_walk is tested with three separate
                measurements (``independent.py``). An estimator that cannot work says why.
* Regime        "confined" / "subdiffusive" / "brownian" / "superdiffusive" before any
                dimension is read, and trapping vs a fractal medium (``regime.py``).

Conventions: ``t0`` is a recorded step; lags are t = step - t0 for the recorded steps after t0;
``window = (t_start, t_end)`` is given in lags (equal to steps when t0 = 0). The ensemble curve
that is fitted is the mean of R over chains; the MSD exponent is 2 * slope. All three
one-regime models and the two-regime model are scored on log R over the same points, so their
r^2 and AIC are directly comparable. Log-log fits keep at most one recorded lag per 1/256 of
their log-time range, so a dense stretch of the record (a window of consecutive steps inside
the checkpoint grid) does not outweigh the rest; a geometric grid of up to 256 lags is used
whole.

Everything runs on numpy arrays. The checkpoints are read once, in blocks of parameters per
chain; no copy of the checkpoint array is made, so memory-mapped input works. The fits live in
``fits.py``, the dimensions and the one pass over the checkpoints in ``dimensions.py``, the result
type in ``result.py`` and the figures in ``plots.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from fractalbayes.errors import InputError
from fractalbayes.slt.diffusion.dimensions import (
    _check_fractal_dim,
    _lag_msd,
    _reduce_checkpoints,
)
from fractalbayes.slt.diffusion.fits import (
    _Bootstrap,
    _log_thin,
    fit_brownian,
    fit_logarithmic,
    fit_power_law,
    fit_two_regime,
)
from fractalbayes.slt.diffusion.independent import (
    best_spectral,
    correlation_dimension,
    covering_estimate,
    return_estimate,
)
from fractalbayes.slt.diffusion.regime import classify
from fractalbayes.slt.diffusion.result import DiffusionResult

_MIN_LAG_WINDOW = 4  # consecutive steps needed for a lag curve (3 lags)


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
class _Inputs(NamedTuple):
    """What the analysis reads: checkpoints (chains, K, d), their steps (K,), and the optional lag
    window (chains, W, d) of consecutive steps from ``lag_window_start``."""

    checkpoints: np.ndarray
    steps: np.ndarray
    lag_window: np.ndarray | None
    lag_window_start: int


def _unpack(source: Any, times: Any) -> _Inputs:
    """Checkpoints, steps and the optional lag window from a Run (duck-typed) or an array."""
    if hasattr(source, "checkpoints"):
        if times is not None:
            raise InputError(
                "times was given together with a Run; a Run's times are run.checkpoint_steps. "
                "Drop the times argument."
            )
        window = getattr(source, "lag_window", None)
        window = None if window is None else np.asarray(window)
        if window is not None and window.ndim == 3 and window.shape[1] < _MIN_LAG_WINDOW:
            window = None  # too short for a lag curve: treated as not recorded
        return _Inputs(
            np.asarray(source.checkpoints),
            np.asarray(source.checkpoint_steps),
            window,
            int(getattr(source, "lag_window_start", 0) or 0),
        )
    if times is None:
        raise InputError(
            "a raw position array needs times: the step index of each of its K entries, "
            "e.g. analyze(x, np.arange(x.shape[1])) for consecutive steps."
        )
    return _Inputs(np.asarray(source), np.asarray(times), None, 0)




def _validate(
    inputs: _Inputs,
    t0: float,
    window: tuple[float, float] | None,
    xi: float,
    fractal_dim: str,
    boot: _Bootstrap,
) -> tuple[int, np.ndarray, tuple[float, float]]:
    """Check shapes and settings; return the reference index, the lags and the window."""
    x, steps, lag_window = inputs.checkpoints, inputs.steps, inputs.lag_window
    if x.ndim != 3:
        raise InputError(
            f"positions must have shape (chains, K, d), got ndim={x.ndim} {x.shape}; "
            "add a chain axis with x[None] for a single trajectory."
        )
    if lag_window is not None and (lag_window.ndim != 3 or lag_window.shape[::2] != x.shape[::2]):
        raise InputError(
            f"run.lag_window must have shape (chains, W, d) = ({x.shape[0]}, W, {x.shape[2]}) like "
            f"the checkpoints, got {lag_window.shape}; set it to None if it was not recorded."
        )
    if steps.ndim != 1 or steps.size != x.shape[1]:
        raise InputError(
            f"times must be a 1-D array with one step per checkpoint (K={x.shape[1]}), got shape "
            f"{steps.shape}."
        )
    if not np.all(np.isfinite(steps)) or np.any(np.diff(steps) <= 0):
        raise InputError(
            "times must be finite and strictly increasing; sort the checkpoints by step."
        )
    if not (np.isfinite(xi) and xi > 0):
        raise InputError(f"xi must be a positive length, got {xi}; the paper uses xi = 0.5.")
    _check_fractal_dim(fractal_dim)
    if boot.n_boot < 1 or not 0 < boot.level < 1:
        raise InputError(f"need n_boot >= 1 and 0 < ci < 1; got {boot.n_boot}, {boot.level}.")
    hits = np.flatnonzero(steps == t0)
    if hits.size == 0:
        below, above = steps[steps < t0], steps[steps > t0]
        nearest = [float(s) for s in (below[-1:].tolist() + above[:1].tolist())]
        raise InputError(
            f"t0={t0} is not a recorded step; the nearest recorded steps are {nearest}."
        )
    ref = int(hits[0])
    lags = (steps[ref + 1 :] - steps[ref]).astype(float)
    if lags.size < 3:
        raise InputError(
            f"only {lags.size} recorded steps after t0={t0}; choose an earlier t0 so that at "
            "least 3 remain."
        )
    if window is None:
        return ref, lags, (float(lags[0]), float(lags[-1]))
    t_start, t_end = (float(w) for w in window)
    if not t_start < t_end:
        raise InputError(f"window must be (t_start, t_end) with t_start < t_end, got {window}.")
    if t_start < lags[0] or t_end > lags[-1]:
        raise InputError(
            f"window {window} (in lags t = step - t0) lies outside the recorded lags "
            f"[{lags[0]:g}, {lags[-1]:g}]; choose a window inside that range."
        )
    inside = int(np.sum((lags >= t_start) & (lags <= t_end)))
    if inside < 3:
        raise InputError(
            f"window {window} holds {inside} recorded lags; a fit needs at least 3, widen the "
            "window."
        )
    return ref, lags, (t_start, t_end)


def _llc_average(
    llc: Any, step_range: tuple[float, float]
) -> tuple[float | None, np.ndarray | None, np.ndarray | None]:
    """lambda_bar: the number itself, or the time average of llc.values over the window steps.

    The time average is (1/(b - a)) int_a^b lambda dt with the trapezoid rule over the recorded
    LLC steps inside [a, b] (the single value when only one falls inside), so unevenly spaced
    (e.g. geometric) LLC records are weighted by the time they cover.
    """
    if llc is None:
        return None, None, None
    if not hasattr(llc, "values"):
        value = float(llc)
        if not np.isfinite(value):
            raise InputError(f"llc must be finite, got {llc}.")
        return value, None, None
    steps = np.asarray(llc.steps, dtype=float)
    values = np.asarray(llc.values, dtype=float)
    if steps.shape != values.shape or steps.ndim != 1:
        raise InputError("llc.steps and llc.values must be 1-D arrays of the same length.")
    inside = (steps >= step_range[0]) & (steps <= step_range[1])
    if not inside.any():
        raise InputError(
            f"no LLC value recorded at steps inside the window {step_range}; LLC steps span "
            f"[{steps.min():g}, {steps.max():g}]. Record the LLC inside the window or pass a "
            "number."
        )
    s, v = steps[inside], values[inside]
    average = float(v[0]) if s.size == 1 else float(np.trapezoid(v, s) / (s[-1] - s[0]))
    return average, steps, values


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def analyze(
    source: Any,
    times: np.ndarray | None = None,
    *,
    t0: float = 0,
    window: tuple[float, float] | None = None,
    xi: float = 0.5,
    fractal_dim: str = "lambda",
    llc: Any = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> DiffusionResult:
    """Displacement analysis of SGD weights (Hennick & De Baerdemacker, eqs. 3, 4, 6, 7).

    Args:
        source: a Run (anything with ``checkpoints`` (chains, K, d), ``checkpoint_steps`` (K,)
            and optionally ``lag_window`` (chains, W, d) of consecutive steps from
            ``lag_window_start``) or an array of positions (chains, K, d).
        times: steps (K,) of a raw array; not allowed with a Run.
        t0: reference step (must be recorded); R(t) = ||w_{t0+t} - w_{t0}||.
        window: (t_start, t_end) in lags t = step - t0 for the fit; default all lags.
        xi: coarse-graining length for D_xi = xi^(2 - d_walk) and the independent estimates.
        fractal_dim: "lambda" (paper, d_s = 2 lambda_bar slope) or "2lambda" (textbook).
        llc: None, a number, or an object with ``steps`` and ``values``; lambda_bar is its time
            average over steps t0 + window. Without it lambda_bar is None, d_s NaN and
            bound_holds None.
        n_boot, ci, seed: chain bootstrap replicates, interval level and seed (also seeds the
            subsample of points for d_f). Intervals are NaN with a single chain.

    Returns:
        A :class:`DiffusionResult`.

    The covering estimate needs consecutive steps: it uses the checkpoints when they are
    unit-spaced from t0 on (fitted inside the window), else the Run's lag window (all lags),
    else it is marked "unavailable"; a lag window shorter than 4 steps counts as not recorded.
    Both independent fits keep lags where the rms displacement is at least 2 xi, i.e. past the
    initial plateau where the walker has not left its first xi-ball. Covering counts are
    meaningful when xi exceeds the typical single-step displacement. d_f uses the positions at
    the fitted lags and cross-chain distances above xi.
    """
    inputs = _unpack(source, times)
    boot = _Bootstrap(int(n_boot), float(ci), int(seed))
    ref, lags, window = _validate(inputs, t0, window, xi, fractal_dim, boot)
    steps = inputs.steps
    llc_range = (float(steps[ref] + window[0]), float(steps[ref] + window[1]))
    lambda_bar, llc_steps, llc_values = _llc_average(llc, llc_range)

    x = inputs.checkpoints
    sq = _reduce_checkpoints(x, ref)
    if not np.all(np.isfinite(sq)):
        bad = np.flatnonzero(~np.all(np.isfinite(sq), axis=1)).tolist()
        raise InputError(f"non-finite positions in chains {bad}; drop or repair those chains.")
    radius = np.sqrt(sq)
    mean_r = radius.mean(axis=0)
    in_window = (lags >= window[0]) & (lags <= window[1])
    if np.any(mean_r[in_window] <= 0):
        raise InputError(
            f"mean R(t) is 0 at lags {lags[in_window & (mean_r <= 0)].tolist()} (no chain moved); "
            "start the window later."
        )
    fitted = _log_thin(lags, in_window)
    t_fit, r_fit = lags[fitted], mean_r[fitted]
    power_law = fit_power_law(t_fit, r_fit)._replace(ci=boot.interval(t_fit, radius[:, fitted]))
    two_regime_lags = _log_thin(lags, mean_r > 0)
    lag_msd = None
    if inputs.lag_window is not None:
        lag_msd = _lag_msd(inputs.lag_window, inputs.lag_window_start)
    regime = classify(t_fit, r_fit, window[1], power_law,
                      None if lag_msd is None else lag_msd.exponent)
    returns = return_estimate(sq, lags, in_window, xi, boot)
    covering = covering_estimate(x, steps, inputs.lag_window, ref, lags, in_window, sq, xi, boot)
    d_f = correlation_dimension(x, ref, lags, fitted, xi, boot)

    return DiffusionResult(
        t0=float(steps[ref]),
        lags=lags,
        radius=radius,
        window=window,
        fitted=fitted,
        power_law=power_law,
        brownian=fit_brownian(t_fit, r_fit),
        logarithmic=fit_logarithmic(t_fit, r_fit),
        two_regime=fit_two_regime(lags[two_regime_lags], mean_r[two_regime_lags]),
        xi=float(xi),
        fractal_dim=fractal_dim,
        lambda_bar=lambda_bar,
        llc_steps=llc_steps,
        llc_values=llc_values,
        covering=covering,
        returns=returns,
        correlation=d_f,
        independent=best_spectral((returns, covering)),
        regime_fit=regime,
        lag_msd=lag_msd,
    )
