"""Stochastic-gradient Hamiltonian Monte Carlo (Chen et al. 2014) with BlackJAX's integrator.

BlackJAX's ``diffusions.sghmc`` run ``num_integration_steps`` times on one minibatch, with the
momentum resampled at every step as blackjax.sghmc does, on the tempered density of
:mod:`fractalbayes.samplers.tempered`.

The integrator (Chen et al. 2014 with Ma et al. 2015's scaling) is

    w <- w + h p,    p <- (1 - alpha h) p + h grad log pi(w) + sqrt(h T (2 alpha - h T beta)) xi,

whose stationary momentum law is N(0, T I): Var p = (1 - alpha h)^2 Var p + h T (2 alpha - h T beta)
gives Var p = T (2 alpha - h T beta) / (2 alpha - alpha^2 h) -> T as h -> 0. blackjax.sghmc
resamples p ~ N(0, I) whatever T, which is that law only at T = 1 (at T = 0 it injects kinetic
energy the dynamics never dissipates into a deterministic optimiser); here p ~ N(0, T I).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
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
                 alpha: float, beta: float, weighted_prior: bool = False) -> Kernel:
    grad_fn = tempered_log_density_and_grad(target, localized, weighted_prior)
    integrator = diffusions.sghmc(alpha, beta)

    def step(key, state, batch, i, hyper: LangevinHyper):
        rate = schedules.rate_at(schedule, hyper.schedule, i)
        momentum_key, key = jax.random.split(key)
        # the integrator's stationary momentum law N(0, T I) (module docstring), not BlackJAX's N(0, I)
        momentum = jnp.sqrt(hyper.temperature) * generate_gaussian_noise(momentum_key, state.position)
        power = (hyper.prior_power,) if weighted_prior else ()

        def leapfrog(carry, step_key):
            position, momentum = carry
            (_, loss), grad = grad_fn(position, state.center, batch, hyper.nbeta, hyper.localization, *power)
            carry = integrator(step_key, position, momentum, grad, rate, hyper.temperature)
            return carry, (loss, tree_norm(grad))

        keys = jax.random.split(key, num_integration_steps)
        (position, _), (losses, norms) = jax.lax.scan(leapfrog, (state.position, momentum), keys)
        return state._replace(position=position), StepInfo(losses[0], norms[0], rate)

    return Kernel(init=init, step=step, position=lambda s: s.position)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, LangevinHyper]:
    kind, numbers = hyper("sghmc", target, opts, total_steps)
    structure = (kind, numbers.localization > 0, opts["num_integration_steps"], opts["alpha"], opts["beta"],
                 numbers.prior_power != 1.0)
    return target.memo(("sghmc", *structure), lambda: sghmc_kernel(target, *structure)), numbers


SPEC = register(SamplerSpec(
    name="sghmc",
    summary="stochastic-gradient HMC (BlackJAX sghmc integrator, momentum resampled from N(0, T I) every step)",
    options=STEP_OPTIONS + (
        Option("num_integration_steps", 10, checks.integer(1), "integrator steps per draw, on one minibatch"),
        Option("alpha", 0.01, checks.positive(), "friction"),
        Option("beta", 0.0, checks.positive(allow_zero=True), "estimate of the gradient-noise term"),
    ) + tempered.OPTIONS + (tempered.PRIOR_POWER,),
    build=build,
))
