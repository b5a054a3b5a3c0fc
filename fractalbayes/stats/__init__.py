"""Layer 4, statistics on runs: distances with their calibration, basins, diagnostics, comparisons.

`metrics` (weight-, function- and mass-space distances), `basins` (function-space clustering),
`diagnostics` (ArviZ summaries), `comparison` (`compare`, `compare_figures`) and `headline` (is the
fractal sampler closer to SGD than the posterior is?).
"""

from fractalbayes.stats import basins, headline, metrics, noise
from fractalbayes.stats.comparison import compare, compare_figures
from fractalbayes.stats.diagnostics import summary

__all__ = ["basins", "compare", "compare_figures", "headline", "metrics", "noise", "summary"]
