"""Weight diffusion: displacement R(t), scaling fits, walk and spectral dimensions.

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
* Independent   d_s from the number of distinct xi-cells visited, N(t) ~ t^(d_s/2), and from the
                return probability P0(t) = P(||w_{t0+t} - w_{t0}|| < xi) ~ t^(-d_s/2), both in a
                seeded random projection to ``proj_dim`` dimensions; neither uses the slope.

Conventions: ``t0`` is a recorded step; lags are t = step - t0 for the recorded steps after t0;
``window = (t_start, t_end)`` is given in lags (equal to steps when t0 = 0). The ensemble curve
that is fitted is the mean of R over chains; the MSD exponent is 2 * slope. All three
one-regime models and the two-regime model are scored on log R over the same points, so their
r^2 and AIC are directly comparable. Log-log fits keep at most one recorded lag per 1/256 of
their log-time range, so a dense stretch of the record (a window of consecutive steps inside
the checkpoint grid) does not outweigh the rest; a geometric grid of up to 256 lags is used
whole.

Everything runs on numpy arrays. The checkpoints are read once, in blocks of parameters per
chain; no copy of the checkpoint array is made, so memory-mapped input works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize

__all__ = [
    "BaselineFit",
    "DiffusionResult",
    "DimensionEstimate",
    "LagMSD",
    "PowerLawFit",
    "TwoRegimeFit",
    "analyze",
    "effective_diffusion",
    "fit_brownian",
    "fit_logarithmic",
    "fit_power_law",
    "fit_two_regime",
    "plot_displacement",
    "plot_llc",
    "spectral_dimension",
    "walk_dimension",
]

FRACTAL_DIMS = ("lambda", "2lambda")
_BLOCK = 512  # parameters per block: a block of K rows stays in cache
_MAX_LAG_MSD_LAGS = 32
_MIN_LAG_WINDOW = 4  # consecutive steps needed for a lag curve (3 lags)
_LOG_BINS = 256  # log-log fits keep at most one lag per 1/256 of their log-time range


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------
class PowerLawFit(NamedTuple):
    """OLS of log R on log t: log R = intercept + slope log t; ``ci`` from a chain bootstrap."""

    slope: float
    intercept: float
    r2: float
    aic: float
    ci: tuple[float, float]
    n_points: int


class BaselineFit(NamedTuple):
    """A baseline model scored on log R; ``params`` named by ``names``."""

    names: tuple[str, ...]
    params: tuple[float, ...]
    r2: float
    aic: float


class TwoRegimeFit(NamedTuple):
    """Continuous broken power law in log-log space with a fitted crossover time.

    log R = log_r_cross + early_slope * min(x - x_c, 0) + late_slope * max(x - x_c, 0),
    x = log t, crossover = exp(x_c). Fitted on all lags with positive mean R (log-thinned).
    """

    early_slope: float
    late_slope: float
    crossover: float
    log_r_cross: float
    r2: float
    aic: float
    n_points: int


class DimensionEstimate(NamedTuple):
    """A spectral-dimension estimate that does not use the displacement slope.

    ``curve`` is the ensemble curve (mean N(t) for ``"covering"``, P0(t) for ``"return"``) at
    ``lags``; ``fitted`` marks the lags used; ``d_s = sign * 2 * slope`` of log curve on log t.
    ``data`` says what it was computed from ("checkpoints", "lag_window" or "unavailable").
    """

    method: str
    data: str
    lags: np.ndarray
    curve: np.ndarray
    fitted: np.ndarray
    slope: float
    r2: float
    d_s: float
    ci: tuple[float, float]
    proj_dim: int


class LagMSD(NamedTuple):
    """Time-averaged MSD over a window of consecutive steps.

    msd[c, j] = 1/(W - lag_j) sum_i || w_{i + lag_j} - w_i ||^2 for chain c (Metzler, Jeon,
    Cherstvy & Barkai 2014); ``exponent`` and ``r2`` come from OLS of log(mean_c msd) on log lag.
    For a CTRW with waiting-time density psi(t) ~ t^(-1-alpha) (Metzler & Klafter 2000) the
    time average grows linearly in the lag while the ensemble MSD grows as t^alpha (weak
    ergodicity breaking), so the two exponents together tell trapping from a fractal medium.
    """

    start: int
    lags: np.ndarray
    msd: np.ndarray
    exponent: float
    r2: float


@dataclass(frozen=True)
class DiffusionResult:
    """Displacement curves, fits and derived dimensions of one analysis.

    ``radius[c, j]`` is R for chain c at lag ``lags[j]``; ``fitted`` marks the lags that the
    window fits use (the window, log-thinned). ``lambda_bar`` is None, and ``d_s``,
    ``bound_holds`` are NaN / None, when no LLC was given. ``table()`` and ``to_arviz()`` export
    every number; :func:`plot_displacement` and :func:`plot_llc` draw it.
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
    lag_msd: LagMSD | None

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
        return self.power_law.slope

    @property
    def intercept(self) -> float:
        return self.power_law.intercept

    @property
    def r2(self) -> float:
        return self.power_law.r2

    @property
    def slope_ci(self) -> tuple[float, float]:
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
        """Spectral dimension from the slope, eq. 7: d_s = 2 d_f slope (NaN without an LLC)."""
        if self.lambda_bar is None:
            return float("nan")
        return spectral_dimension(self.slope, self.lambda_bar, self.fractal_dim)

    @property
    def bound_holds(self) -> bool | None:
        """Eq. 6, d_s <= lambda_bar; None without an LLC."""
        if self.lambda_bar is None:
            return None
        return bool(self.d_s <= self.lambda_bar)

    @property
    def D_xi(self) -> float:  # noqa: N802 (the paper's symbol)
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
                (est.method, "proj_dim", est.proj_dim, nan, nan),
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
        ``bound`` = "held" / "violated" / "not evaluated (no llc)".
        """
        table = self.table()
        attrs: dict[str, Any] = {
            "t0": float(self.t0),
            "window": [float(w) for w in self.window],
            "xi": self.xi,
            "fractal_dim": self.fractal_dim,
            "preferred_model": self.preferred_model,
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
                attrs={"data": est.data, "proj_dim": est.proj_dim},
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


# --------------------------------------------------------------------------------------------
# Derived quantities (eqs. 3, 4, 6)
# --------------------------------------------------------------------------------------------
def walk_dimension(slope: float) -> float:
    """d_walk = 1 / slope, from R(t) ~ t^(1/d_walk) (inf for slope 0)."""
    with np.errstate(divide="ignore"):
        return float(np.divide(1.0, slope))


def _fractal_dimension(lambda_bar: float | None, fractal_dim: str) -> float:
    if lambda_bar is None:
        return float("nan")
    return lambda_bar if fractal_dim == "lambda" else 2.0 * lambda_bar


def spectral_dimension(slope: float, lambda_bar: float, fractal_dim: str = "lambda") -> float:
    """Alexander-Orbach (eq. 3): d_walk = 2 d_f / d_s, so d_s = 2 d_f slope.

    ``fractal_dim="lambda"`` takes d_f = lambda_bar (the paper: d_s = 2 lambda_bar slope);
    ``"2lambda"`` takes d_f = 2 lambda_bar (textbook for loss ~ distance^2: d_s = 4 lambda_bar
    slope, i.e. d_walk = 4 lambda / d_s).
    """
    _check_fractal_dim(fractal_dim)
    return float(2.0 * _fractal_dimension(lambda_bar, fractal_dim) * slope)


def effective_diffusion(xi: float, d_walk: float) -> float:
    """Eq. 4: D_xi = xi^(2 - d_walk)."""
    with np.errstate(over="ignore"):
        return float(np.power(xi, 2.0 - d_walk))


# --------------------------------------------------------------------------------------------
# Fits on log R (all scored on the same response, so r^2 and AIC compare across models)
# --------------------------------------------------------------------------------------------
def _scores(y: np.ndarray, pred: np.ndarray, n_params: int) -> tuple[float, float]:
    """r^2 = 1 - RSS/TSS and Gaussian AIC = n ln(RSS/n) + 2 (n_params + 1) (the +1: sigma)."""
    rss = float(np.sum((y - pred) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    n = y.size
    with np.errstate(divide="ignore"):
        aic = n * np.log(rss / n) + 2 * (n_params + 1)
    r2 = 1.0 - rss / tss if tss > 0 else float("nan")
    return r2, float(aic)


def _ols_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slopes of each row of y (..., n) on x (n,)."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def fit_power_law(t: np.ndarray, r: np.ndarray) -> PowerLawFit:
    """OLS of log r on log t (eq. 7): log R = intercept + slope log t; ``ci`` is NaN here."""
    x, y = np.log(t), np.log(r)
    slope = float(_ols_slopes(x, y))
    intercept = float(y.mean() - slope * x.mean())
    r2, aic = _scores(y, intercept + slope * x, 2)
    return PowerLawFit(slope, intercept, r2, aic, (float("nan"), float("nan")), int(x.size))


def fit_brownian(t: np.ndarray, r: np.ndarray) -> BaselineFit:
    """Brownian baseline R = c t^(1/2): log R = log_c + (1/2) log t, log_c by least squares."""
    x, y = np.log(t), np.log(r)
    log_c = float(np.mean(y - 0.5 * x))
    r2, aic = _scores(y, log_c + 0.5 * x, 1)
    return BaselineFit(("log_c",), (log_c,), r2, aic)


def fit_logarithmic(t: np.ndarray, r: np.ndarray) -> BaselineFit:
    """Logarithmic baseline R = a + b ln t (slow, glassy growth), least squares on log R.

    Starts from OLS of R on ln t (or from R = mean R when that start predicts R <= 0).
    """
    x, y = np.log(t), np.log(r)
    b0 = float(_ols_slopes(x, r))
    a0 = float(r.mean() - b0 * x.mean())
    if np.any(a0 + b0 * x <= 0):
        a0, b0 = float(r.mean()), 0.0

    def residual(p: np.ndarray) -> np.ndarray:
        return y - np.log(np.maximum(p[0] + p[1] * x, np.finfo(float).tiny))

    a, b = optimize.least_squares(residual, [a0, b0], x_scale="jac").x
    r2, aic = _scores(y, y - residual(np.array([a, b])), 2)
    return BaselineFit(("a", "b"), (float(a), float(b)), r2, aic)


def _broken_fit(x: np.ndarray, y: np.ndarray, xc: float) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of y on [1, min(x - xc, 0), max(x - xc, 0)]: coefficients and prediction."""
    u = x - xc
    design = np.stack([np.ones_like(u), np.minimum(u, 0), np.maximum(u, 0)], axis=-1)
    coef = np.linalg.lstsq(design, y)[0]
    return coef, design @ coef


def fit_two_regime(t: np.ndarray, r: np.ndarray, n_grid: int = 256) -> TwoRegimeFit:
    """Broken power law with fitted crossover: profile least squares over x_c = log t_c.

    x_c is searched on a grid between the third and the third-to-last point (each regime keeps
    at least three points), then refined by bounded scalar minimisation of the profile RSS.
    Needs at least 6 points; returns NaNs otherwise.
    """
    x, y = np.log(t), np.log(r)
    nan = float("nan")
    if x.size < 6:
        return TwoRegimeFit(nan, nan, nan, nan, nan, nan, int(x.size))

    def rss(xc: float) -> float:
        return float(np.sum((y - _broken_fit(x, y, xc)[1]) ** 2))

    grid = np.linspace(x[2], x[-3], n_grid)
    profile = np.array([rss(xc) for xc in grid])
    best = int(np.argmin(profile))
    bounds = (grid[max(best - 1, 0)], grid[min(best + 1, n_grid - 1)])
    found = optimize.minimize_scalar(rss, bounds=bounds, method="bounded", options={"xatol": 1e-10})
    xc = found.x if found.fun <= profile[best] else grid[best]
    coef, pred = _broken_fit(x, y, xc)
    r2, aic = _scores(y, pred, 4)
    return TwoRegimeFit(
        float(coef[1]), float(coef[2]), float(np.exp(xc)), float(coef[0]), r2, aic, int(x.size)
    )


def _bootstrap_slopes(
    t: np.ndarray, per_chain: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """Slopes of log(mean over resampled chains) on log t, one per bootstrap replicate.

    Resampling chains with replacement = multinomial chain weights, so replicate means are a
    (replicates, chains) @ (chains, n) product, taken in chunks of about 2^20 numbers.
    Replicates with a non-positive mean are NaN; all are NaN for a single chain.
    """
    chains, n = per_chain.shape
    if chains < 2:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, 2**20 // max(chains, n))
    slopes = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        counts = rng.multinomial(chains, np.full(chains, 1.0 / chains), size=size)
        with np.errstate(divide="ignore"):
            y = np.log(counts @ per_chain / chains)
        finite = np.all(np.isfinite(y), axis=1)
        fitted = _ols_slopes(np.log(t), np.where(finite[:, None], y, 0.0))
        slopes.append(np.where(finite, fitted, np.nan))
    return np.concatenate(slopes)


def _log_thin(lags: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first masked lag in each of ``_LOG_BINS`` equal bins of log t over the masked range.

    Leaves a log-spaced grid of up to 256 lags as it is and cuts a dense stretch (consecutive
    steps) down to its share of log time, so each part of the range weighs by its log extent.
    """
    idx = np.flatnonzero(mask)
    if idx.size < 2:
        return mask
    x = np.log(lags[idx])
    bins = np.floor((x - x[0]) / (x[-1] - x[0]) * _LOG_BINS)
    _, first = np.unique(bins, return_index=True)
    kept = np.zeros_like(mask)
    kept[idx[first]] = True
    return kept


def _percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite samples; NaN when fewer than two are finite."""
    finite = samples[np.isfinite(samples)]
    if finite.size < 2:
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


class _Bootstrap(NamedTuple):
    """Chain-bootstrap settings: replicates, interval level, seed."""

    n_boot: int
    level: float
    seed: int

    def interval(
        self, t: np.ndarray, per_chain: np.ndarray, scale: float = 1.0
    ) -> tuple[float, float]:
        """Percentile interval of scale * (log-log slope of the chain-resampled mean curve)."""
        slopes = _bootstrap_slopes(t, per_chain, self.n_boot, self.seed)
        return _percentile_ci(scale * slopes, self.level)


# --------------------------------------------------------------------------------------------
# One pass over the checkpoints
# --------------------------------------------------------------------------------------------
def _reduce_checkpoints(
    x: np.ndarray, ref: int, projection: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Squared displacements ||w_k - w_ref||^2 for k > ref, and projected positions w_k P.

    Reads x (chains, K, d) once, ``_BLOCK`` parameters at a time, into one reused difference
    buffer; each block is summed in the input precision (at least float32: relative error
    ~ 512 eps) and the blocks are accumulated in float64. Returns (chains, K - ref - 1) and
    (chains, K, proj_dim).
    """
    chains, n_steps, dim = x.shape
    work = np.result_type(x.dtype, np.float32)
    projection = projection.astype(work)
    buffer = np.empty((n_steps - ref - 1, min(_BLOCK, dim)), dtype=work)
    sq = np.zeros((chains, n_steps - ref - 1))
    proj = np.zeros((chains, n_steps, projection.shape[1]))
    for c in range(chains):
        for j in range(0, dim, _BLOCK):
            block = x[c, :, j : j + _BLOCK]
            proj[c] += block @ projection[j : j + _BLOCK]
            diff = np.subtract(block[ref + 1 :], block[ref], out=buffer[:, : block.shape[1]])
            sq[c] += np.einsum("ij,ij->i", diff, diff)
    return sq, proj


def _project(x: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """Positions x (chains, T, d) times projection (d, k), chain by chain and block by block."""
    projection = projection.astype(np.result_type(x.dtype, np.float32))
    out = np.zeros(x.shape[:2] + (projection.shape[1],))
    for c in range(x.shape[0]):
        for j in range(0, x.shape[2], _BLOCK):
            out[c] += x[c, :, j : j + _BLOCK] @ projection[j : j + _BLOCK]
    return out


def _random_projection(dim: int, proj_dim: int, seed: int) -> np.ndarray:
    """Identity when dim <= proj_dim; else sqrt(dim/k) Q with Q (dim, k) Haar-orthonormal.

    The scale makes E||Q^T v||^2 (dim/k) = ||v||^2 for any v, so xi keeps its meaning as a length
    in weight space (Johnson-Lindenstrauss).
    """
    if dim <= proj_dim:
        return np.eye(dim)
    gauss = np.random.default_rng(seed).standard_normal((dim, proj_dim))
    q, _ = np.linalg.qr(gauss)
    return q * np.sqrt(dim / proj_dim)


def _sq_row_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a_i - b_i||^2 for rows of a, b (n, d), in float64 blocks of parameters."""
    out = np.zeros(a.shape[0])
    for j in range(0, a.shape[1], _BLOCK):
        diff = np.subtract(a[:, j : j + _BLOCK], b[:, j : j + _BLOCK], dtype=np.float64)
        out += np.einsum("ij,ij->i", diff, diff)
    return out


def _lag_msd(window: np.ndarray, start: int) -> LagMSD:
    """Time-averaged MSD of consecutive steps at up to 32 log-spaced integer lags."""
    width = window.shape[1]
    lags = np.unique(np.geomspace(1, width - 1, _MAX_LAG_MSD_LAGS).astype(int))
    msd = np.array(
        [[_sq_row_distances(w[lag:], w[:-lag]).mean() for lag in lags] for w in window]
    )
    fit = fit_power_law(lags, msd.mean(axis=0))
    return LagMSD(start, lags, msd, fit.slope, fit.r2)


# --------------------------------------------------------------------------------------------
# Independent spectral dimension (covering number and return probability)
# --------------------------------------------------------------------------------------------
def _covering_counts(positions: np.ndarray, xi: float) -> np.ndarray:
    """N[c, i] = number of distinct xi-cells among positions[c, :i+1], for (chains, T, k).

    Cells are boxes of side xi anchored at each chain's first position (box counting standing in
    for the covering by xi-balls). A stable lexicographic sort on (chain, cell) puts each cell's
    earliest visit first in its group, which marks the steps where a new cell is entered.
    """
    chains, steps, k = positions.shape
    cells = np.floor((positions - positions[:, :1]) / xi).astype(np.int64).reshape(-1, k)
    chain = np.repeat(np.arange(chains), steps)
    order = np.lexsort((*cells.T[::-1], chain))
    cells, chain_sorted = cells[order], chain[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = np.any(cells[1:] != cells[:-1], axis=1) | (chain_sorted[1:] != chain_sorted[:-1])
    new = np.zeros(order.size)
    new[order[first]] = 1.0
    return np.cumsum(new.reshape(chains, steps), axis=1)


def _past_plateau(positions: np.ndarray, xi: float) -> np.ndarray:
    """Lags where the ensemble rms displacement from positions[:, 0] is at least 2 xi."""
    sq = np.sum((positions[:, 1:] - positions[:, :1]) ** 2, axis=-1)
    return np.sqrt(sq.mean(axis=0)) >= 2 * xi


def _dimension_estimate(
    method: str,
    data: str,
    lags: np.ndarray,
    per_chain: np.ndarray,
    fitted: np.ndarray,
    sign: float,
    proj_dim: int,
    boot: _Bootstrap,
) -> DimensionEstimate:
    """d_s = sign * 2 * slope of log(mean over chains of per_chain) on log lag over ``fitted``."""
    curve = per_chain.mean(axis=0)
    fitted = _log_thin(lags, fitted & (curve > 0))
    nan = float("nan")
    if fitted.sum() < 3:
        return DimensionEstimate(
            method, data, lags, curve, fitted, nan, nan, nan, (nan, nan), proj_dim
        )
    fit = fit_power_law(lags[fitted], curve[fitted])
    return DimensionEstimate(
        method, data, lags, curve, fitted, fit.slope, fit.r2, sign * 2.0 * fit.slope,
        boot.interval(lags[fitted], per_chain[:, fitted], sign * 2.0), proj_dim,
    )


def _return_estimate(
    projected: np.ndarray, lags: np.ndarray, in_window: np.ndarray, xi: float, boot: _Bootstrap
) -> DimensionEstimate:
    """P0(t) = fraction of chains within xi of their t0 position ~ t^(-d_s/2).

    ``projected`` holds the projected checkpoints from t0 on, (chains, 1 + lags, k).
    """
    inside = np.sum((projected[:, 1:] - projected[:, :1]) ** 2, axis=-1) < xi**2
    fitted = in_window & _past_plateau(projected, xi)
    k = projected.shape[2]
    return _dimension_estimate(
        "return", "checkpoints", lags, inside.astype(float), fitted, -1.0, k, boot
    )


def _covering_estimate(
    inputs: _Inputs,
    ref: int,
    lags: np.ndarray,
    in_window: np.ndarray,
    projected: np.ndarray,
    projection: np.ndarray,
    xi: float,
    boot: _Bootstrap,
) -> DimensionEstimate:
    """N(t) ~ t^(d_s/2) on the densest consecutive record: the checkpoints when unit-spaced
    from t0 on (fitted inside the window), else the lag window (all its lags)."""
    k = projection.shape[1]
    if np.all(np.diff(inputs.steps[ref:]) == 1):
        positions, dense_lags, mask, data = projected[:, ref:], lags, in_window, "checkpoints"
    elif inputs.lag_window is not None:
        positions = _project(inputs.lag_window, projection)
        dense_lags = np.arange(1, positions.shape[1], dtype=float)
        mask, data = np.ones(dense_lags.size, dtype=bool), "lag_window"
    else:
        empty, nan = np.array([]), float("nan")
        no_fit = (nan, nan, nan, (nan, nan))
        return DimensionEstimate("covering", "unavailable", empty, empty, empty > 0, *no_fit, k)
    counts = _covering_counts(positions, xi)[:, 1:]
    fitted = mask & _past_plateau(positions, xi)
    return _dimension_estimate("covering", data, dense_lags, counts, fitted, 1.0, k, boot)


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
class _Inputs(NamedTuple):
    checkpoints: np.ndarray
    steps: np.ndarray
    lag_window: np.ndarray | None
    lag_window_start: int


def _unpack(source: Any, times: Any) -> _Inputs:
    """Checkpoints, steps and the optional lag window from a Run (duck-typed) or an array."""
    if hasattr(source, "checkpoints"):
        if times is not None:
            raise ValueError(
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
        raise ValueError(
            "a raw position array needs times: the step index of each of its K entries, "
            "e.g. analyze(x, np.arange(x.shape[1])) for consecutive steps."
        )
    return _Inputs(np.asarray(source), np.asarray(times), None, 0)


def _check_fractal_dim(fractal_dim: str) -> None:
    if fractal_dim not in FRACTAL_DIMS:
        raise ValueError(
            f"unknown fractal_dim {fractal_dim!r}; use 'lambda' (the paper, d_s = 2 lambda slope) "
            "or '2lambda' (textbook, d_s = 4 lambda slope)."
        )


def _validate(
    inputs: _Inputs,
    t0: float,
    window: tuple[float, float] | None,
    xi: float,
    fractal_dim: str,
    proj_dim: int,
    boot: _Bootstrap,
) -> tuple[int, np.ndarray, tuple[float, float]]:
    """Check shapes and settings; return the reference index, the lags and the window."""
    x, steps, lag_window = inputs.checkpoints, inputs.steps, inputs.lag_window
    if x.ndim != 3:
        raise ValueError(
            f"positions must have shape (chains, K, d), got ndim={x.ndim} {x.shape}; "
            "add a chain axis with x[None] for a single trajectory."
        )
    if lag_window is not None and (lag_window.ndim != 3 or lag_window.shape[::2] != x.shape[::2]):
        raise ValueError(
            f"run.lag_window must have shape (chains, W, d) = ({x.shape[0]}, W, {x.shape[2]}) like "
            f"the checkpoints, got {lag_window.shape}; set it to None if it was not recorded."
        )
    if steps.ndim != 1 or steps.size != x.shape[1]:
        raise ValueError(
            f"times must be a 1-D array with one step per checkpoint (K={x.shape[1]}), got shape "
            f"{steps.shape}."
        )
    if not np.all(np.isfinite(steps)) or np.any(np.diff(steps) <= 0):
        raise ValueError(
            "times must be finite and strictly increasing; sort the checkpoints by step."
        )
    if not (np.isfinite(xi) and xi > 0):
        raise ValueError(f"xi must be a positive length, got {xi}; the paper uses xi = 0.5.")
    _check_fractal_dim(fractal_dim)
    if proj_dim < 1 or boot.n_boot < 1 or not 0 < boot.level < 1:
        raise ValueError(
            f"need proj_dim >= 1, n_boot >= 1 and 0 < ci < 1; got {proj_dim}, {boot.n_boot}, "
            f"{boot.level}."
        )
    hits = np.flatnonzero(steps == t0)
    if hits.size == 0:
        below, above = steps[steps < t0], steps[steps > t0]
        nearest = [float(s) for s in (below[-1:].tolist() + above[:1].tolist())]
        raise ValueError(
            f"t0={t0} is not a recorded step; the nearest recorded steps are {nearest}."
        )
    ref = int(hits[0])
    lags = (steps[ref + 1 :] - steps[ref]).astype(float)
    if lags.size < 3:
        raise ValueError(
            f"only {lags.size} recorded steps after t0={t0}; choose an earlier t0 so that at "
            "least 3 remain."
        )
    if window is None:
        return ref, lags, (float(lags[0]), float(lags[-1]))
    t_start, t_end = (float(w) for w in window)
    if not t_start < t_end:
        raise ValueError(f"window must be (t_start, t_end) with t_start < t_end, got {window}.")
    if t_start < lags[0] or t_end > lags[-1]:
        raise ValueError(
            f"window {window} (in lags t = step - t0) lies outside the recorded lags "
            f"[{lags[0]:g}, {lags[-1]:g}]; choose a window inside that range."
        )
    inside = int(np.sum((lags >= t_start) & (lags <= t_end)))
    if inside < 3:
        raise ValueError(
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
            raise ValueError(f"llc must be finite, got {llc}.")
        return value, None, None
    steps = np.asarray(llc.steps, dtype=float)
    values = np.asarray(llc.values, dtype=float)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError("llc.steps and llc.values must be 1-D arrays of the same length.")
    inside = (steps >= step_range[0]) & (steps <= step_range[1])
    if not inside.any():
        raise ValueError(
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
    proj_dim: int = 3,
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
        proj_dim: dimension of the seeded random projection for the covering and return
            estimates (no projection when d <= proj_dim). Projected Euclidean walks have
            d_s <= proj_dim, and covering counts grow as t^(d_s/2) only for d_s < 2.
        n_boot, ci, seed: chain bootstrap replicates, interval level and seed (also seeds the
            projection). Intervals are NaN with a single chain.

    Returns:
        A :class:`DiffusionResult`.

    The covering estimate needs consecutive steps: it uses the checkpoints when they are
    unit-spaced from t0 on (fitted inside the window), else the Run's lag window (all lags),
    else it is marked "unavailable"; a lag window shorter than 4 steps counts as not recorded.
    Both independent fits keep lags where the projected rms displacement is at least 2 xi, i.e.
    past the initial plateau where the walker has not left its first xi-ball. Covering counts
    are meaningful when xi exceeds the typical single-step displacement.
    """
    inputs = _unpack(source, times)
    boot = _Bootstrap(int(n_boot), float(ci), int(seed))
    ref, lags, window = _validate(inputs, t0, window, xi, fractal_dim, int(proj_dim), boot)
    steps = inputs.steps
    llc_range = (float(steps[ref] + window[0]), float(steps[ref] + window[1]))
    lambda_bar, llc_steps, llc_values = _llc_average(llc, llc_range)

    x = inputs.checkpoints
    projection = _random_projection(x.shape[2], proj_dim, seed)
    sq, projected = _reduce_checkpoints(x, ref, projection)
    if not np.all(np.isfinite(sq)):
        bad = np.flatnonzero(~np.all(np.isfinite(sq), axis=1)).tolist()
        raise ValueError(f"non-finite positions in chains {bad}; drop or repair those chains.")
    radius = np.sqrt(sq)
    mean_r = radius.mean(axis=0)
    in_window = (lags >= window[0]) & (lags <= window[1])
    if np.any(mean_r[in_window] <= 0):
        raise ValueError(
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
        covering=_covering_estimate(inputs, ref, lags, in_window, projected, projection, xi, boot),
        returns=_return_estimate(projected[:, ref:], lags, in_window, xi, boot),
        lag_msd=lag_msd,
    )


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def plot_displacement(result: DiffusionResult, ax: Any = None, max_chains: int = 20) -> Any:
    """Log-log R(t): ensemble mean, 16-84 % chain band and up to ``max_chains`` chains, the
    power-law fit on the window, the Brownian reference (slope 1/2), the logarithmic baseline
    and the two-regime fit with its crossover. Returns the matplotlib Figure (not shown)."""
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(6.4, 4.8), layout="constrained").subplots()
    t, radius = result.lags, result.radius
    for chain in radius[:max_chains]:
        ax.plot(t, chain, color="0.75", lw=0.5, zorder=1)
    lo, hi = np.percentile(radius, [16, 84], axis=0)
    ax.fill_between(t, lo, hi, color="C0", alpha=0.2, lw=0, label="chains 16-84 %")
    ax.plot(t, result.radius_mean, color="C0", lw=2, label="mean R(t)")
    tw = t[result.in_window]
    pl = result.power_law
    ax.plot(tw, np.exp(pl.intercept) * tw**pl.slope, "C3-", lw=1.5,
            label=f"power law, slope {pl.slope:.3f} (r$^2$ {pl.r2:.3f})")
    brownian = np.exp(result.brownian.params[0]) * np.sqrt(tw)
    ax.plot(tw, brownian, "k--", lw=1, label="Brownian, slope 1/2")
    a, b = result.logarithmic.params
    ax.plot(tw, a + b * np.log(tw), "C2:", lw=1.5, label="logarithmic a + b ln t")
    two = result.two_regime
    if np.isfinite(two.crossover):
        u = np.log(t[t > 0] / two.crossover)
        ax.plot(t[t > 0], np.exp(two.log_r_cross + two.early_slope * np.minimum(u, 0)
                                 + two.late_slope * np.maximum(u, 0)), "C1-.", lw=1,
                label=f"two-regime {two.early_slope:.2f} -> {two.late_slope:.2f}")
        ax.axvline(two.crossover, color="C1", lw=0.8, ls=":")
    ax.axvspan(*result.window, color="0.5", alpha=0.07, lw=0)
    ax.set(xscale="log", yscale="log", xlabel=f"lag t (steps after t0 = {result.t0:g})",
           ylabel="R(t) = ||w(t0 + t) - w(t0)||")
    ax.legend(fontsize="small")
    return ax.figure


def plot_llc(result: DiffusionResult, ax: Any = None) -> Any:
    """LLC over training steps with the fit window shaded and lambda_bar marked. Needs an LLC
    given as a series (``steps``, ``values``). Returns the matplotlib Figure (not shown)."""
    from matplotlib.figure import Figure

    if result.llc_steps is None:
        raise ValueError("no LLC series in this result; pass llc=<object with .steps and .values>.")
    if ax is None:
        ax = Figure(figsize=(6.4, 3.6), layout="constrained").subplots()
    ax.plot(result.llc_steps, result.llc_values, "o-", color="C4", ms=3, label="LLC")
    start, end = (result.t0 + w for w in result.window)
    ax.axvspan(start, end, color="0.5", alpha=0.1, lw=0, label="fit window")
    ax.axhline(result.lambda_bar, color="C4", ls="--", lw=1,
               label=f"lambda_bar = {result.lambda_bar:.3g}")
    ax.set(xlabel="step", ylabel="local learning coefficient")
    ax.legend(fontsize="small")
    return ax.figure
