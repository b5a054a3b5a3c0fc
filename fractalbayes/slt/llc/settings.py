"""The LLC estimator's settings, typed once and shared by `estimate`, the fractal sampler's ``llc``
table, the suite analyses and the suite-file schema."""

from __future__ import annotations

from fractalbayes import checks
from fractalbayes.samplers.registry import Option

NBETA_RULES = ("n/log n", "batch")
LLC_SAMPLERS = ("sgld", "sghmc", "nuts")

NBETA = Option("nbeta", "n/log n", checks.choice(*NBETA_RULES, also=checks.positive()),
               "n beta: 'n/log n' (Watanabe's WBIC), 'batch' (B / log B, devinterp) or a number")
OPTIONS = (
    NBETA,
    Option("localization", 1.0, checks.positive(allow_zero=True), "gamma of the pull (gamma/2)||w - w*||^2"),
    Option("step_size", 1e-4, checks.positive(), "SGLD/SGHMC step size h (NUTS adapts its own)"),
    Option("num_chains", 4, checks.integer(1), "chains started at the centre"),
    Option("num_draws", 1000, checks.integer(1), "draws per chain"),
    Option("burn_in", 500, checks.integer(0), "steps before the first draw"),
    Option("thin", 1, checks.integer(1), "steps per draw"),
    Option("sampler", "sgld", checks.choice(*LLC_SAMPLERS), "the kernel sampling the localized posterior"),
    Option("full_loss_every", None, checks.optional(checks.integer(1)),
           "full-data loss every k-th draw instead of the minibatch loss of each draw"),
    Option("sampler_options", None, checks.optional(checks.kind(dict, want="a table of sampler options")),
           "further options of the sampler (temperature, schedule, ...)"),
)
"""`fb.llc.estimate`'s numeric settings (its keyword arguments besides centre, seed and progress)."""
