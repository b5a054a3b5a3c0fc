"""Stochastic-gradient Langevin dynamics and SGHMC with BlackJAX's integrators.

Both sample the tempered, optionally localized density (Lau et al. 2023 for the LLC form)

    pi(w) ∝ rho(w) exp(-nbeta L_n(w) - (localization / 2) ||w - center||^2)

from minibatch gradients g = grad[log rho(w) - nbeta L_B(w)] - localization (w - center).
SGLD (Welling & Teh 2011) is BlackJAX's overdamped Langevin step
``w + h g + sqrt(2 T h) xi`` (blackjax.sgmcmc.diffusions.overdamped_langevin); SGHMC (Chen et al.
2014) is BlackJAX's ``diffusions.sghmc`` run ``num_integration_steps`` times on one minibatch with
momentum resampled at every step, exactly as blackjax.sghmc does. We call the integrators rather
than ``blackjax.sgld``'s step so that one model pass yields both the gradient and the loss.
With nbeta = n, localization = 0 and temperature T = 1 the target is the Bayesian posterior.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.sgmcmc import diffusions
from blackjax.util import generate_gaussian_noise

from .. import checks
from ..target import Target
from . import schedules
from .base import Kernel, positive, resolve_options, tree_norm

DEFAULTS: dict[str, Any] = {
    "step_size": 1e-4,
    "schedule": None,
    "temperature": 1.0,
    "nbeta": None,
    "localization": 0.0,
    "center": None,
}
SGHMC_DEFAULTS = {**DEFAULTS, "num_integration_steps": 10, "alpha": 0.01, "beta": 0.0}


class SGMCMCState(NamedTuple):
    position: jax.Array
    center: jax.Array
    """The localization centre w*: the given ``center``, else the chain's initial position."""


def _gradient_fn(target: Target, localized: bool) -> Callable:
    """value_and_grad of the tempered log density; the localization term is left out of the
    compiled step altogether when the localization is 0 (a structural option)."""

    def log_density(z, center, batch, hyper):
        value, loss = target.log_posterior_estimate(z, batch, hyper["nbeta"])
        if localized:
            value = value - 0.5 * hyper["localization"] * jnp.sum(jnp.square(z - center))
        return value, loss

    return jax.value_and_grad(log_density, has_aux=True)


def _init(position, key, hyper) -> SGMCMCState:
    return SGMCMCState(position, hyper.get("center", position))


@functools.cache
def sgld_kernel(target: Target, schedule: str | Callable, localized: bool) -> Kernel:
    grad_fn = _gradient_fn(target, localized)
    integrator = diffusions.overdamped_langevin()

    def step(key, state, batch, i, hyper):
        (_, loss), grad = grad_fn(state.position, state.center, batch, hyper)
        rate = schedules.rate_at(schedule, hyper, i, hyper["total_steps"])
        position = integrator(key, state.position, grad, rate, hyper["temperature"])
        return state._replace(position=position), {"loss": loss, "grad_norm": tree_norm(grad), "step_size": rate}

    return Kernel(init=_init, step=step, position=lambda s: s.position)


@functools.cache
def sghmc_kernel(
    target: Target, schedule: str | Callable, localized: bool, num_integration_steps: int, alpha: float, beta: float
) -> Kernel:
    grad_fn = _gradient_fn(target, localized)
    integrator = diffusions.sghmc(alpha, beta)

    def step(key, state, batch, i, hyper):
        rate = schedules.rate_at(schedule, hyper, i, hyper["total_steps"])
        momentum = generate_gaussian_noise(key, state.position)

        def leapfrog(carry, step_key):
            position, momentum = carry
            (_, loss), grad = grad_fn(position, state.center, batch, hyper)
            carry = integrator(step_key, position, momentum, grad, rate, hyper["temperature"])
            return carry, (loss, tree_norm(grad))

        keys = jax.random.split(key, num_integration_steps)
        (position, _), (losses, norms) = jax.lax.scan(leapfrog, (state.position, momentum), keys)
        return state._replace(position=position), {"loss": losses[0], "grad_norm": norms[0], "step_size": rate}

    return Kernel(init=_init, step=step, position=lambda s: s.position)


def _hyper(name: str, target: Target, opts: dict) -> tuple[str | Callable, dict]:
    rate = positive(name, "step_size", opts["step_size"])
    kind, hyper = schedules.parse(name, opts["schedule"], rate)
    nbeta = target.n_data if opts["nbeta"] is None else positive(name, "nbeta", opts["nbeta"])
    hyper |= {
        "temperature": positive(name, "temperature", opts["temperature"], allow_zero=True),
        "nbeta": nbeta,
        "localization": positive(name, "localization", opts["localization"], allow_zero=True),
    }
    center = check_center(name, target, opts["center"])
    if center is not None:
        hyper["center"] = center
    return kind, hyper


def check_center(name: str, target: Target, center: Any) -> jax.Array | None:
    """A flat centre of the target's dimension (from a vector or a dict of sites), or None."""
    return None if center is None else target.flat_position(center, f"{name}: center")


def build_sgld(target: Target, options: dict) -> tuple[Kernel, dict, dict]:
    opts = resolve_options("sgld", options, DEFAULTS)
    kind, hyper = _hyper("sgld", target, opts)
    return sgld_kernel(target, kind, hyper["localization"] > 0), hyper, opts


def build_sghmc(target: Target, options: dict) -> tuple[Kernel, dict, dict]:
    opts = resolve_options("sghmc", options, SGHMC_DEFAULTS)
    kind, hyper = _hyper("sghmc", target, opts)
    steps = checks.count("sghmc: option num_integration_steps", opts["num_integration_steps"], 1)
    alpha = positive("sghmc", "alpha", opts["alpha"])
    beta = positive("sghmc", "beta", opts["beta"], allow_zero=True)
    return sghmc_kernel(target, kind, hyper["localization"] > 0, steps, alpha, beta), hyper, opts
