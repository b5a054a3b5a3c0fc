"""Stochastic-gradient Hamiltonian Monte Carlo (Chen et al. 2014) with BlackJAX's integrator.

BlackJAX's ``diffusions.sghmc`` run ``num_integration_steps`` times on one minibatch, with the
momentum resampled at every step as blackjax.sghmc does, on the tempered density of
:mod:`fractalbayes.samplers.tempered`.
"""

from __future__ import annotations

from typing import Callable

import jax
from blackjax.sgmcmc import diffusions
from blackjax.util import generate_gaussian_noise

from fractalbayes import checks
from fractalbayes.model.target import Target
from fractalbayes.samplers import schedules, tempered
from fractalbayes.samplers.base import Kernel, StepInfo, tree_norm
from fractalbayes.samplers.gradients import tempered_log_density_and_grad
from fractalbayes.samplers.registry import Option, SamplerSpec, register
from fractalbayes.samplers.sgld import STEP_OPTIONS, LangevinHyper, hyper, init


def sghmc_kernel(target: Target, schedule: str | Callable, localized: bool, num_integration_steps: int,
                 alpha: float, beta: float) -> Kernel:
    grad_fn = tempered_log_density_and_grad(target, localized)
    integrator = diffusions.sghmc(alpha, beta)

    def step(key, state, batch, i, hyper: LangevinHyper):
        rate = schedules.rate_at(schedule, hyper.schedule, i)
        momentum = generate_gaussian_noise(key, state.position)

        def leapfrog(carry, step_key):
            position, momentum = carry
            (_, loss), grad = grad_fn(position, state.center, batch, hyper.nbeta, hyper.localization)
            carry = integrator(step_key, position, momentum, grad, rate, hyper.temperature)
            return carry, (loss, tree_norm(grad))

        keys = jax.random.split(key, num_integration_steps)
        (position, _), (losses, norms) = jax.lax.scan(leapfrog, (state.position, momentum), keys)
        return state._replace(position=position), StepInfo(losses[0], norms[0], rate)

    return Kernel(init=init, step=step, position=lambda s: s.position)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, LangevinHyper]:
    kind, numbers = hyper("sghmc", target, opts, total_steps)
    structure = (kind, numbers.localization > 0, opts["num_integration_steps"], opts["alpha"], opts["beta"])
    return target.memo(("sghmc", *structure), lambda: sghmc_kernel(target, *structure)), numbers


SPEC = register(SamplerSpec(
    name="sghmc",
    summary="stochastic-gradient HMC (BlackJAX sghmc integrator, momentum resampled every step)",
    options=STEP_OPTIONS + (
        Option("num_integration_steps", 10, checks.integer(1), "integrator steps per draw, on one minibatch"),
        Option("alpha", 0.01, checks.positive(), "friction"),
        Option("beta", 0.0, checks.positive(allow_zero=True), "estimate of the gradient-noise term"),
    ) + tempered.OPTIONS,
    build=build,
))
