"""Regime before dimension: is R(t) a power law at all, and if it is sub-diffusive, why?

A walk dimension d_walk = 1 / slope means something only while R(t) grows as a power law. Two
look-alikes are told apart first:

* Confinement (an Ornstein-Uhlenbeck plateau, a walker in a bowl): R(t) saturates. The
  saturating model log R = log A + h log(1 - exp(-t / tau)) (h: the early exponent, tau: the
  relaxation time; it tends to a power law as tau -> infinity) is fitted by profiling tau on a
  grid, and the window reads as "confined" when it beats both the power law and the broken
  power law (a concave crossover between two power laws, as in a CTRW, is not a plateau) by
  ``_CONFINED_DELTA_AIC`` and relaxes inside the window (tau <= t_end / 3, so the plateau is
  seen), or when R is flat (the slope's upper interval bound below ``_FLAT``). Otherwise the
  slope decides: "subdiffusive" / "superdiffusive" when its interval lies beyond 1/2 by more
  than ``_MARGIN``, else "brownian".
* Trapping vs a fractal medium (for sub-diffusion): a continuous-time random walk with
  heavy-tailed waits has an ensemble MSD ~ t^alpha but a time-averaged MSD linear in the lag
  (weak ergodicity breaking; Metzler, Jeon, Cherstvy & Barkai 2014), while a walk on a fractal
  has both ~ t^(2/d_walk). ``mechanism`` is "trapping" when the lag-window exponent exceeds the
  ensemble MSD exponent by more than ``_TRAP_GAP``, "medium" when they agree within it, and
  "undetermined" without a lag window.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fractalbayes.slt.diffusion.fits import PowerLawFit, _scores, fit_two_regime

REGIMES = ("confined", "subdiffusive", "brownian", "superdiffusive")
_CONFINED_DELTA_AIC = 10.0
_FLAT = 0.05
_MARGIN = 0.03
_TRAP_GAP = 0.2
_TAU_GRID = 192


class SaturatingFit(NamedTuple):
    """log R = log_a + h log(1 - exp(-t / tau)), least squares on log R; scores as in fits.py."""

    log_a: float
    h: float
    tau: float
    r2: float
    aic: float


class Regime(NamedTuple):
    """The regime of the fit window and the evidence for it."""

    regime: str
    mechanism: str
    saturating: SaturatingFit
    delta_aic: float
    reason: str


def fit_saturating(t: np.ndarray, r: np.ndarray) -> SaturatingFit:
    """Profile least squares over tau on a log grid from t_min / 10 to 100 t_max; for each tau,
    (log_a, h) by OLS of log R on log(1 - exp(-t / tau))."""
    y = np.log(r)
    best = None
    for tau in np.geomspace(t.min() / 10, 100 * t.max(), _TAU_GRID):
        u = np.log(-np.expm1(-t / tau))
        design = np.stack([np.ones_like(u), u], axis=-1)
        coef = np.linalg.lstsq(design, y)[0]
        rss = float(np.sum((y - design @ coef) ** 2))
        if best is None or rss < best[0]:
            best = (rss, coef, tau, design @ coef)
    _, coef, tau, pred = best
    r2, aic = _scores(y, pred, 3)
    return SaturatingFit(float(coef[0]), float(coef[1]), float(tau), r2, aic)


def classify(t: np.ndarray, r: np.ndarray, window_end: float, power_law: PowerLawFit,
             lag_exponent: float | None) -> Regime:
    """The regime of the window's mean curve r at lags t, given its power-law fit."""
    sat = fit_saturating(t, r)
    two = fit_two_regime(t, r)
    rival = min(power_law.aic, two.aic) if np.isfinite(two.aic) else power_law.aic
    delta = rival - sat.aic
    lo, hi = power_law.ci
    if not np.isfinite(lo):  # one chain: no interval, the point estimate decides
        lo = hi = power_law.slope
    if delta > _CONFINED_DELTA_AIC and sat.tau <= window_end / 3:
        regime = "confined"
        reason = (f"R(t) saturates: a plateau model (relaxation time {sat.tau:.3g} inside the window) "
                  f"beats the power law and the broken power law by {delta:.1f} AIC")
    elif hi < _FLAT:
        regime, reason = "confined", f"R(t) is flat over the window (slope <= {hi:.3f})"
    elif hi < 0.5 - _MARGIN:
        regime, reason = "subdiffusive", f"slope interval [{lo:.3f}, {hi:.3f}] below 1/2"
    elif lo > 0.5 + _MARGIN:
        regime, reason = "superdiffusive", f"slope interval [{lo:.3f}, {hi:.3f}] above 1/2"
    else:
        regime, reason = "brownian", f"slope interval [{lo:.3f}, {hi:.3f}] within {_MARGIN} of 1/2"
    mechanism = "none"
    if regime == "subdiffusive":
        if lag_exponent is None:
            mechanism = "undetermined"
        elif lag_exponent - 2 * power_law.slope > _TRAP_GAP:
            mechanism = "trapping"
            reason += (f"; time-averaged MSD ~ lag^{lag_exponent:.2f} against the ensemble "
                       f"t^{2 * power_law.slope:.2f}: trapping (weak ergodicity breaking)")
        else:
            mechanism = "medium"
            reason += (f"; time-averaged MSD ~ lag^{lag_exponent:.2f} agrees with the ensemble "
                       f"t^{2 * power_law.slope:.2f}: a sub-diffusive medium")
    return Regime(regime, mechanism, sat, float(delta), reason)
