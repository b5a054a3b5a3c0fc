"""The result of a displacement analysis: :class:`DiffusionResult`, its table and DataTree.

Hennick & De Baerdemacker, "Almost Bayesian" (arXiv 2503.22478), SCIENCE.md section 3: the
ensemble curve R(t), the fitted slope with MSD ~ t^(2 slope), d_walk = 1 / slope, the spectral
dimension d_s = 2 d_f slope (eq. 7 with Alexander-Orbach, eq. 3), the bound d_s <= d_f
(eq. 6), D_xi = xi^(2 - d_walk) (eq. 4); the independent d_s and d_f, the regime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fractalbayes.slt.diffusion.dimensions import (
    LagMSD,
    _fractal_dimension,
    effective_diffusion,
    spectral_dimension,
    walk_dimension,
)
from fractalbayes.slt.diffusion.fits import BaselineFit, PowerLawFit, TwoRegimeFit
from fractalbayes.slt.diffusion.independent import DimensionEstimate, FractalDimension
from fractalbayes.slt.diffusion.regime import Regime


@dataclass(frozen=True)
class DiffusionResult:
    """Displacement curves, fits and derived dimensions of one analysis.

    ``radius[c, j]`` is R for chain c at lag ``lags[j]``; ``fitted`` marks the lags that the
    window fits use (the window, log-thinned). ``lambda_bar`` is None, and ``d_s``,
    ``bound_holds`` are NaN / None, when no LLC was given. ``regime`` says whether R(t) is a power
    law at all; ``d_s_independent`` and ``d_f`` are measured without the slope (NaN, with the
    reason in ``notes``, when they cannot be). ``table()`` and ``to_arviz()`` export every number;
    :func:`plot_displacement` and :func:`plot_llc` draw it.
    """

    t0: float
    lags: np.ndarray
    radius: np.ndarray
    window: tuple[float, float]
    fitted: np.ndarray
    power_law: PowerLawFit
    brownian: BaselineFit
    logarithmic: BaselineFit
    two_regime: TwoRegimeFit
    xi: float
    fractal_dim: str
    lambda_bar: float | None
    llc_steps: np.ndarray | None
    llc_values: np.ndarray | None
    covering: DimensionEstimate
    returns: DimensionEstimate
    correlation: FractalDimension
    independent: tuple[float, tuple[float, float], str, str]
    regime_fit: Regime
    lag_msd: LagMSD | None

    @property
    def regime(self) -> str:
        """"confined", "subdiffusive", "brownian" or "superdiffusive" (see ``regime.py``)."""
        return self.regime_fit.regime

    @property
    def mechanism(self) -> str:
        """For sub-diffusion: "trapping" / "medium" / "undetermined"; "none" otherwise."""
        return self.regime_fit.mechanism

    @property
    def d_s_independent(self) -> float:
        """Spectral dimension (textbook: P0 ~ t^(-d_s/2)) from the return or covering estimate
        with the narrower interval, without the slope; NaN when neither applies (see notes)."""
        return self.independent[0]

    @property
    def d_s_independent_ci(self) -> tuple[float, float]:
        """Chain-bootstrap interval of :attr:`d_s_independent`."""
        return self.independent[1]

    @property
    def d_s_independent_method(self) -> str:
        """"return", "covering" or "none"."""
        return self.independent[2]

    @property
    def d_f(self) -> float:
        """Correlation dimension of the visited set (textbook d_f; NaN with a note if unmeasurable)."""
        return self.correlation.d_f

    @property
    def d_s_alexander_orbach(self) -> float:
        """d_s = 2 d_f / d_walk = 2 d_f slope with the measured d_f: compare with d_s_independent."""
        return 2.0 * self.d_f * self.slope

    @property
    def notes(self) -> tuple[str, ...]:
        """Why an estimate is NaN, and the evidence for the regime."""
        found = [self.independent[3], self.correlation.note, f"regime: {self.regime_fit.reason}"]
        return tuple(n for n in found if n)

    @property
    def radius_mean(self) -> np.ndarray:
        """Ensemble mean of R over chains, per lag."""
        return self.radius.mean(axis=0)

    @property
    def radius_std(self) -> np.ndarray:
        """Ensemble standard deviation of R over chains, per lag."""
        return self.radius.std(axis=0)

    @property
    def msd(self) -> np.ndarray:
        """Ensemble mean squared displacement, mean over chains of R^2."""
        return (self.radius**2).mean(axis=0)

    @property
    def in_window(self) -> np.ndarray:
        """Boolean mask of the lags inside the fit window."""
        return (self.lags >= self.window[0]) & (self.lags <= self.window[1])

    @property
    def slope(self) -> float:
        """Power-law slope of log R on log t over the window (eq. 7): R ~ t^slope."""
        return self.power_law.slope

    @property
    def intercept(self) -> float:
        """Intercept of the power-law fit, log R = intercept + slope log t."""
        return self.power_law.intercept

    @property
    def r2(self) -> float:
        """r^2 of the power-law fit on log R."""
        return self.power_law.r2

    @property
    def slope_ci(self) -> tuple[float, float]:
        """Chain-bootstrap percentile interval of the slope."""
        return self.power_law.ci

    @property
    def msd_exponent(self) -> float:
        """MSD ~ t^(2 slope)."""
        return 2.0 * self.slope

    @property
    def d_walk(self) -> float:
        """Walk dimension d_walk = 1 / slope (R ~ t^(1/d_walk))."""
        return walk_dimension(self.slope)

    @property
    def d_s(self) -> float:
        """Spectral dimension from the slope, eq. 7: d_s = 2 d_f slope (NaN without an LLC).

        Computed whatever the regime; it is a dimension only when ``regime`` is not "confined"
        (a plateau's slope depends on the window; the fractal sampler refuses to use it)."""
        if self.lambda_bar is None:
            return float("nan")
        return spectral_dimension(self.slope, self.lambda_bar, self.fractal_dim)

    @property
    def bound_holds(self) -> bool | None:
        """Eq. 6, d_s <= d_f with d_f in the chosen convention (lambda_bar for "lambda",
        2 lambda_bar for "2lambda"); both read slope <= 1/2. None without an LLC."""
        if self.lambda_bar is None:
            return None
        return bool(self.d_s <= _fractal_dimension(self.lambda_bar, self.fractal_dim))

    @property
    def D_xi(self) -> float:
        """Eq. 4: D_xi = xi^(2 - d_walk)."""
        return effective_diffusion(self.xi, self.d_walk)

    @property
    def preferred_model(self) -> str:
        """The one-regime model (power_law, brownian, logarithmic) with the lowest AIC."""
        aics = {m: getattr(self, m).aic for m in ("power_law", "brownian", "logarithmic")}
        return min(aics, key=lambda m: aics[m])

    def table(self) -> pd.DataFrame:
        """Every number of the analysis as a tidy frame, one row per (model, quantity).

        Columns: model, quantity, value, ci_low, ci_high and the settings (t0, window_start,
        window_end, xi, fractal_dim, n_chains) repeated on every row, so tables from many runs
        concatenate. ``bound_holds`` is 1.0 / 0.0 (NaN without an LLC); ``delta_aic`` is AIC
        minus the smallest AIC among the one-regime models (0 = preferred). For the independent
        estimates, ``d_f_implied = d_s * d_walk / 2`` is the fractal dimension Alexander-Orbach
        needs to reconcile them with the slope: compare it with lambda_bar (paper convention)
        or 2 lambda_bar (textbook); equivalently, compare their d_s with the derived d_s.
        """
        nan = float("nan")
        scale = 2.0 * _fractal_dimension(self.lambda_bar, self.fractal_dim)
        aic_min = min(getattr(self, m).aic for m in ("power_law", "brownian", "logarithmic"))
        lo, hi = self.slope_ci
        rows: list[tuple[str, str, float, float, float]] = [
            ("power_law", "slope", self.slope, lo, hi),
            ("power_law", "intercept", self.intercept, nan, nan),
            ("power_law", "r2", self.r2, nan, nan),
            ("power_law", "aic", self.power_law.aic, nan, nan),
            ("power_law", "delta_aic", self.power_law.aic - aic_min, nan, nan),
            ("power_law", "msd_exponent", self.msd_exponent, 2 * lo, 2 * hi),
            ("power_law", "n_points", self.power_law.n_points, nan, nan),
        ]
        for model in ("brownian", "logarithmic"):
            fit = getattr(self, model)
            rows += [(model, n, p, nan, nan) for n, p in zip(fit.names, fit.params)]
            rows += [
                (model, "r2", fit.r2, nan, nan),
                (model, "aic", fit.aic, nan, nan),
                (model, "delta_aic", fit.aic - aic_min, nan, nan),
            ]
        two = self.two_regime
        rows += [
            ("two_regime", "early_slope", two.early_slope, nan, nan),
            ("two_regime", "late_slope", two.late_slope, nan, nan),
            ("two_regime", "crossover", two.crossover, nan, nan),
            ("two_regime", "r2", two.r2, nan, nan),
            ("two_regime", "aic", two.aic, nan, nan),
            ("two_regime", "n_points", two.n_points, nan, nan),
        ]
        d_walk_ci = (1 / hi, 1 / lo) if lo > 0 else (nan, nan)
        bound = self.bound_holds
        lambda_bar = nan if self.lambda_bar is None else self.lambda_bar
        rows += [
            ("derived", "d_walk", self.d_walk, *d_walk_ci),
            ("derived", "lambda_bar", lambda_bar, nan, nan),
            ("derived", "d_f_paper", lambda_bar, nan, nan),
            ("derived", "d_f_textbook", 2 * lambda_bar, nan, nan),
            ("derived", "d_s_paper", 2 * lambda_bar * self.slope, nan, nan),
            ("derived", "d_s_textbook", 4 * lambda_bar * self.slope, nan, nan),
            ("derived", "d_s", self.d_s, *sorted((scale * lo, scale * hi))),
            ("derived", "bound_holds", nan if bound is None else float(bound), nan, nan),
            ("derived", "D_xi", self.D_xi, nan, nan),
        ]
        for est in (self.covering, self.returns):
            rows += [
                (est.method, "slope", est.slope, nan, nan),
                (est.method, "r2", est.r2, nan, nan),
                (est.method, "d_s", est.d_s, *est.ci),
                (est.method, "d_f_implied", est.d_s * self.d_walk / 2, nan, nan),
                (est.method, "n_points", int(est.fitted.sum()), nan, nan),
            ]
        cor = self.correlation
        rows += [
            ("measured", "d_s_independent", self.d_s_independent, *self.d_s_independent_ci),
            ("measured", "d_f", cor.d_f, *cor.ci),
            ("measured", "d_s_alexander_orbach", self.d_s_alexander_orbach, nan, nan),
            ("measured", "d_f_r_lo", cor.r_lo, nan, nan),
            ("measured", "d_f_r_hi", cor.r_hi, nan, nan),
            ("measured", "d_f_pairs", cor.n_pairs, nan, nan),
            ("measured", "d_f_limit", cor.limit, nan, nan),
            ("regime", "saturating_tau", self.regime_fit.saturating.tau, nan, nan),
            ("regime", "saturating_h", self.regime_fit.saturating.h, nan, nan),
            ("regime", "delta_aic_best_power_law_minus_saturating", self.regime_fit.delta_aic, nan, nan),
        ]
        if self.lag_msd is not None:
            rows += [
                ("lag_msd", "exponent", self.lag_msd.exponent, nan, nan),
                ("lag_msd", "r2", self.lag_msd.r2, nan, nan),
            ]
        frame = pd.DataFrame(rows, columns=["model", "quantity", "value", "ci_low", "ci_high"])
        frame["value"] = frame["value"].astype(float)
        return frame.assign(
            t0=self.t0,
            window_start=self.window[0],
            window_end=self.window[1],
            xi=self.xi,
            fractal_dim=self.fractal_dim,
            n_chains=self.radius.shape[0],
        )

    def to_arviz(self) -> xr.DataTree:
        """The curves as an xarray DataTree; every number of :meth:`table` in the root attrs.

        Groups: ``displacement`` (R per chain and lag, its mean, std and the MSD),
        ``covering`` and ``return`` (the independent-d_s curves), ``lag_msd`` and ``llc`` when
        present. Root attrs: ``{model}_{quantity}`` (with ``_ci`` pairs), the settings, and
        ``bound`` = "held" / "violated" / "not evaluated (no llc)", ``regime``, ``mechanism``
        and ``notes``.
        """
        table = self.table()
        attrs: dict[str, Any] = {
            "t0": float(self.t0),
            "window": [float(w) for w in self.window],
            "xi": self.xi,
            "fractal_dim": self.fractal_dim,
            "preferred_model": self.preferred_model,
            "regime": self.regime,
            "mechanism": self.mechanism,
            "d_s_independent_method": self.d_s_independent_method,
            "notes": list(self.notes),
            "bound": {True: "held", False: "violated", None: "not evaluated (no llc)"}[
                self.bound_holds
            ],
        }
        for row in table.itertuples():
            key = f"{row.model}_{row.quantity}"
            attrs[key] = float(row.value)
            if np.isfinite(row.ci_low) or np.isfinite(row.ci_high):
                attrs[f"{key}_ci"] = [float(row.ci_low), float(row.ci_high)]
        chain = np.arange(self.radius.shape[0])
        groups = {
            "/": xr.Dataset(attrs=attrs),
            "displacement": xr.Dataset(
                {
                    "R": (("chain", "lag"), self.radius),
                    "R_mean": ("lag", self.radius_mean),
                    "R_std": ("lag", self.radius_std),
                    "msd": ("lag", self.msd),
                    "fitted": ("lag", self.fitted),
                },
                coords={"chain": chain, "lag": self.lags, "step": ("lag", self.lags + self.t0)},
            ),
        }
        for est, name in ((self.covering, "N"), (self.returns, "P0")):
            groups[est.method] = xr.Dataset(
                {name: ("lag", est.curve), "fitted": ("lag", est.fitted)},
                coords={"lag": est.lags},
                attrs={"data": est.data, "note": est.note},
            )
        if self.lag_msd is not None:
            groups["lag_msd"] = xr.Dataset(
                {"msd": (("chain", "lag"), self.lag_msd.msd)},
                coords={"chain": chain, "lag": self.lag_msd.lags},
                attrs={"start": self.lag_msd.start},
            )
        if self.llc_steps is not None:
            groups["llc"] = xr.Dataset(
                {"llc": ("step", self.llc_values)}, coords={"step": self.llc_steps}
            )
        return xr.DataTree.from_dict(groups)
