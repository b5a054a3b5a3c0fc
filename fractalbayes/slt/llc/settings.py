"""The LLC estimator's settings, typed once: :data:`OPTIONS` (name, default, validator, meaning) and
the record :class:`LLCSettings` built and checked from them.

The same Options serve ``fb.llc.estimate``/``calibrate``/``trajectory`` (through
:meth:`LLCSettings.build`), the fractal sampler's ``llc`` table, the suite analyses and the
suite-file schema, so a setting's default, allowed values and error message live here only.

``nbeta`` is the product n beta of the localized tempered posterior (Lau et al. 2023)

    pi(w) ∝ exp( -n beta L_n(w) - (gamma / 2) ||w - w*||^2 ) rho(w):

``"n/log n"`` gives beta = 1 / log n, Watanabe's WBIC temperature (Watanabe 2013, JMLR 14),
``"batch"`` gives B / log B for minibatches of B (devinterp's default) and a number is taken as is.
``prior=False`` drops rho from pi (prior power 0, :data:`fractalbayes.samplers.tempered.PRIOR_POWER`):
devinterp's estimator, whose lambda_hat does not depend on the prior's scale along weakly
identified directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fractalbayes import checks
from fractalbayes.engine.sample import LOOP_SETTINGS
from fractalbayes.errors import ModelError
from fractalbayes.model.target import Target
from fractalbayes.samplers import registry
from fractalbayes.samplers.registry import Option

NBETA_RULES = ("n/log n", "batch")
LLC_SAMPLERS = ("sgld", "sghmc", "nuts", "sgld_cv")
"""Kernels that sample the localized tempered posterior; sgld_cv's control variate is centred at each
chain's start, the centre w*, with SGLD's step size h. Not LLC samplers: psgld (its step size means
another thing), csgld (its draws need reweighting) and sgnht (at SGLD's h its momentum dynamics do not
equilibrate within the estimator's draws: 1.98 for a regular d/2 = 3 where SGLD gives 3.10)."""
SAMPLER_CLAIMS = ("nbeta", "localization", "center", "step_size", "prior_power")
"""Sampler options the estimator sets itself; ``sampler_options`` may not set them."""

_POSITIVE = checks.positive()
_SAMPLER_TABLE = checks.optional(checks.kind(dict, want="a table of sampler options"))


def _nbeta(value: Any) -> str | float:
    """A rule of :data:`NBETA_RULES` or a finite number > 0."""
    if isinstance(value, str):
        if value in NBETA_RULES:
            return value
        raise checks.Invalid(f"{value!r} is not a known rule; use one of {list(NBETA_RULES)} or a positive number")
    return _POSITIVE(value)


_nbeta.want = checks.choice(*NBETA_RULES, also=_POSITIVE).want


def _sampler(value: Any) -> str:
    """One of :data:`LLC_SAMPLERS`."""
    if isinstance(value, str) and value in LLC_SAMPLERS:
        return value
    raise checks.Invalid(f"{checks.show(value)} is not an LLC sampler; use one of {list(LLC_SAMPLERS)}")


_sampler.want = checks.choice(*LLC_SAMPLERS).want


def _sampler_options(value: Any) -> dict | None:
    """None or a dict of further sampler options, none of them one the estimator sets."""
    value = _SAMPLER_TABLE(value)
    clash = sorted(set(SAMPLER_CLAIMS) & set(value or {}))
    if clash:
        raise checks.Invalid(f"may not set {clash}: pass them as estimate's own arguments")
    return value


_sampler_options.want = _SAMPLER_TABLE.want

NBETA = Option("nbeta", "n/log n", _nbeta,
               "n beta: 'n/log n' (Watanabe's WBIC), 'batch' (B / log B, devinterp) or a number")
OPTIONS = (
    NBETA,
    Option("localization", 1.0, checks.positive(allow_zero=True), "gamma of the pull (gamma/2)||w - w*||^2"),
    Option("step_size", 1e-4, _POSITIVE, "SGLD/SGHMC step size h (NUTS adapts its own)"),
    Option("num_chains", 4, checks.integer(1), "chains started at the centre"),
    Option("num_draws", 1000, checks.integer(1), "draws per chain"),
    Option("burn_in", 500, checks.integer(0), "steps before the first draw"),
    Option("thin", 1, checks.integer(1), "steps per draw"),
    Option("sampler", "sgld", _sampler, "the kernel sampling the localized posterior"),
    Option("prior", True, checks.kind(bool, want="True or False"),
           "the model's prior inside the localized posterior (False: devinterp's estimator, no prior)"),
    Option("full_loss_every", None, checks.optional(checks.integer(1)),
           "full-data loss every k-th draw instead of the minibatch loss of each draw"),
    Option("sampler_options", None, _sampler_options, "further options of the sampler (temperature, schedule, ...)"),
    *LOOP_SETTINGS,
)
"""`fb.llc.estimate`'s numeric settings (its keyword arguments besides centre, seed and progress)."""

NAMES = tuple(o.name for o in OPTIONS)
DEFAULTS = {o.name: o.default for o in OPTIONS}


def resolve_nbeta(nbeta: str | float, target: Target) -> tuple[float, str]:
    """(n beta, rule): ``"n/log n"`` -> n / log n, ``"batch"`` -> B / log B, a number -> itself.

    n is ``target.n_data`` and B ``target.batch_size``; the rules need at least 2 examples
    (log 1 = 0). The rule is ``"given"`` for a number.
    """
    nbeta = checks.check("nbeta", nbeta, _nbeta, ModelError)
    if isinstance(nbeta, str):
        size = target.n_data if nbeta == "n/log n" else target.batch_size
        if size < 2:
            raise ModelError(f"nbeta={nbeta!r} needs at least 2 examples (log 1 = 0); pass a number")
        return size / math.log(size), nbeta
    return nbeta, "given"


@dataclass(frozen=True)
class LLCSettings:
    """Every setting of one LLC estimate, checked: one field per Option of :data:`OPTIONS` (``nbeta``
    resolved to a number, its rule kept in ``nbeta_rule``) and the seed. Build it with
    :meth:`build`; ``dataclasses.replace`` gives a variant (e.g. another cell of a calibration
    grid) without checking again."""

    nbeta: float
    """n beta, the product of the sample size and the inverse temperature."""
    nbeta_rule: str
    """"n/log n", "batch" or "given"."""
    localization: float
    """gamma of the pull (gamma / 2) ||w - w*||^2."""
    step_size: float | None
    """SGLD/SGHMC step size h (BlackJAX's; devinterp's eps = 2 h); None for NUTS, which adapts its own."""
    num_chains: int
    """Chains started at each centre."""
    num_draws: int
    burn_in: int
    thin: int
    sampler: str
    prior: bool
    """Is the model's prior rho in pi? (False: prior power 0, devinterp's estimator.)"""
    full_loss_every: int | None
    """Full-data loss every k-th draw; None for the minibatch loss of each draw."""
    sampler_options: dict = field(default_factory=dict)
    """Further options of the sampler (temperature, schedule, ...)."""
    shared_batches: bool = False
    """One minibatch per step for every chain."""
    prng_impl: str = "threefry2x32"
    """JAX's PRNG implementation of the chains' steps."""
    seed: int = 0

    @classmethod
    def build(cls, target: Target, *, seed: int = 0, **given: Any) -> LLCSettings:
        """The settings from keyword values named as in :data:`OPTIONS` (defaults for the rest),
        each checked by its Option's validator; every problem raises a
        :class:`~fractalbayes.errors.ModelError` naming the setting, before any work. NUTS takes no
        step size (``step_size`` is ignored and recorded as None) and needs ``burn_in >= 1`` to
        adapt one."""
        checks.unknown_names("the LLC estimator", list(given), NAMES)
        sampler = checks.check("sampler", given.get("sampler", DEFAULTS["sampler"]), _sampler, ModelError)
        values: dict[str, Any] = {}
        for option in OPTIONS:
            value = given.get(option.name, option.default)
            if option.name == "step_size" and sampler == "nuts":
                values["step_size"] = None
                continue
            validate = checks.integer(1) if option.name == "burn_in" and sampler == "nuts" else option.validate
            values[option.name] = checks.check(option.name, value, validate, ModelError)
        if not values["prior"] and "prior_power" not in registry.get(sampler).defaults:
            raise ModelError(f"prior=False needs a sampler with a prior_power option; {sampler!r} has none: "
                             f"use one of {[s for s in LLC_SAMPLERS if 'prior_power' in registry.get(s).defaults]}")
        nbeta, rule = resolve_nbeta(values.pop("nbeta"), target)
        values["sampler_options"] = dict(values["sampler_options"] or {})
        return cls(nbeta=nbeta, nbeta_rule=rule, **values, seed=checks.seed("seed", seed))

    @property
    def loss_kind(self) -> str:
        """"minibatch" or "full every k draws": which loss the trace records."""
        return "minibatch" if self.full_loss_every is None else f"full every {self.full_loss_every} draws"

    def sampler_kwargs(self) -> dict[str, Any]:
        """The options ``fb.sample`` gets for the localized chains (nbeta, localization, step size)."""
        options = {"nbeta": self.nbeta, "localization": self.localization, **self.sampler_options}
        if not self.prior:
            options["prior_power"] = 0.0
        if self.step_size is not None:
            options["step_size"] = self.step_size
        return options
