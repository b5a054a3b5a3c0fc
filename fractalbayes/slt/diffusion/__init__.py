"""Weight diffusion: R(t), MSD, power-law fits and baselines, walk and spectral dimensions.

Hennick & De Baerdemacker, "Almost Bayesian" (arXiv 2503.22478), SCIENCE.md section 3. One job
per module: ``analysis`` (:func:`analyze`: inputs, checks, the pipeline), ``fits`` (power law
log R = a + slope log t, Brownian and logarithmic baselines, two-regime fit, chain bootstrap),
``dimensions`` (d_walk = 1 / slope, d_s = 2 d_f slope, D_xi = xi^(2 - d_walk), the lag MSD),
``independent`` (d_s from return and covering, d_f from the correlation dimension, in the full
space), ``regime`` (confined / sub / Brownian / super, trapping vs medium), ``result``
(:class:`DiffusionResult`) and ``plots``.
"""

from fractalbayes.slt.diffusion.analysis import analyze
from fractalbayes.slt.diffusion.dimensions import (
    FRACTAL_DIMS,
    LagMSD,
    effective_diffusion,
    spectral_dimension,
    walk_dimension,
)
from fractalbayes.slt.diffusion.fits import (
    BaselineFit,
    PowerLawFit,
    TwoRegimeFit,
    fit_brownian,
    fit_logarithmic,
    fit_power_law,
    fit_two_regime,
)
from fractalbayes.slt.diffusion.independent import DimensionEstimate, FractalDimension
from fractalbayes.slt.diffusion.plots import plot_displacement, plot_llc
from fractalbayes.slt.diffusion.regime import (
    REGIMES,
    Regime,
    SaturatingFit,
    fit_saturating,
)
from fractalbayes.slt.diffusion.result import DiffusionResult

__all__ = [
    "FRACTAL_DIMS",
    "REGIMES",
    "BaselineFit",
    "DiffusionResult",
    "DimensionEstimate",
    "FractalDimension",
    "LagMSD",
    "PowerLawFit",
    "Regime",
    "SaturatingFit",
    "TwoRegimeFit",
    "analyze",
    "effective_diffusion",
    "fit_brownian",
    "fit_logarithmic",
    "fit_power_law",
    "fit_saturating",
    "fit_two_regime",
    "plot_displacement",
    "plot_llc",
    "spectral_dimension",
    "walk_dimension",
]
