"""Stochastic-gradient Langevin dynamics (Welling & Teh 2011) with BlackJAX's integrator.

SGLD is BlackJAX's overdamped Langevin step ``w + h g + sqrt(2 T h) xi``
(blackjax.sgmcmc.diffusions.overdamped_langevin) on minibatch gradients
g = grad[log rho(w) - nbeta L_B(w)] - localization (w - center) of the tempered density of
:mod:`fractalbayes.samplers.tempered`. We call the integrator rather than ``blackjax.sgld``'s step
so that one model pass yields both the gradient and the loss. With nbeta = n, localization = 0 and
temperature T = 1 the target is the Bayesian posterior.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from blackjax.sgmcmc import diffusions

from fractalbayes import checks
from fractalbayes.model.target import Target
from fractalbayes.samplers import schedules, tempered
from fractalbayes.samplers.base import Kernel, StepInfo, tree_norm
from fractalbayes.samplers.gradients import tempered_log_density_and_grad
from fractalbayes.samplers.registry import Option, SamplerSpec, register

STEP_OPTIONS = (
    Option("step_size", 1e-4, checks.positive(), "step size h of w + h g + sqrt(2 T h) xi"),
    Option("schedule", None, schedules.validate, "step-size schedule (constant, polynomial, cyclical, callable)"),
    Option("temperature", 1.0, checks.positive(allow_zero=True), "temperature T of the injected noise"),
)


class LangevinHyper(NamedTuple):
    """The numbers of a tempered SG-MCMC step (passed at call time: changing one never recompiles)."""

    schedule: schedules.Schedule
    temperature: float
    nbeta: float
    localization: float
    center: Any = None
    prior_power: float = 1.0
    """p of rho^p (tempered.PRIOR_POWER); the density weighs the prior only when p != 1."""


def hyper(name: str, target: Target, opts: dict, total_steps: int) -> tuple[str | Callable, LangevinHyper]:
    """The static schedule kind and the numbers of a resolved sgld/sghmc option dict."""
    kind, schedule = schedules.parameters(opts["schedule"], opts["step_size"], total_steps)
    return kind, LangevinHyper(schedule, opts["temperature"], tempered.nbeta(target, opts), opts["localization"],
                               tempered.center(name, target, opts["center"]), tempered.prior_power(opts))


def init(position, key, hyper: LangevinHyper) -> tempered.TemperedState:
    return tempered.TemperedState(position, position if hyper.center is None else hyper.center)


def sgld_kernel(target: Target, schedule: str | Callable, localized: bool, weighted_prior: bool = False) -> Kernel:
    grad_fn = tempered_log_density_and_grad(target, localized, weighted_prior)
    integrator = diffusions.overdamped_langevin()

    def step(key, state, batch, i, hyper: LangevinHyper):
        power = (hyper.prior_power,) if weighted_prior else ()
        (_, loss), grad = grad_fn(state.position, state.center, batch, hyper.nbeta, hyper.localization, *power)
        rate = schedules.rate_at(schedule, hyper.schedule, i)
        position = integrator(key, state.position, grad, rate, hyper.temperature)
        return state._replace(position=position), StepInfo(loss, tree_norm(grad), rate)

    return Kernel(init=init, step=step, position=lambda s: s.position)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, LangevinHyper]:
    kind, numbers = hyper("sgld", target, opts, total_steps)
    structure = (kind, numbers.localization > 0, numbers.prior_power != 1.0)
    return target.memo(("sgld", *structure), lambda: sgld_kernel(target, *structure)), numbers


SPEC = register(SamplerSpec(
    name="sgld",
    summary="stochastic-gradient Langevin dynamics (BlackJAX overdamped Langevin integrator)",
    options=STEP_OPTIONS + tempered.OPTIONS + (tempered.PRIOR_POWER,),
    build=build,
))
