"""Stochastic-gradient Nosé-Hoover thermostat (Ding et al. 2014) with BlackJAX's kernel.

BlackJAX's ``blackjax.sgmcmc.sgnht`` step (Euler solver ``diffusions.sgnht``), unit mass:

    w' = w + h p
    p' = (1 - xi h) p + h g + sqrt(h T (2 alpha - h T beta)) nu,        nu ~ N(0, I)
    xi' = xi + h (p'.p' / d - T)

with g the minibatch gradient of the tempered density of :mod:`fractalbayes.samplers.tempered`.
The thermostat xi is a friction that rises while the mean kinetic energy per dimension p.p / d
exceeds the temperature T and falls while it is below: at stationarity E[p.p / d] = T exactly,
whatever the (unknown) minibatch gradient noise, which xi absorbs (Ding et al. 2014, Sec. 3). With
a gradient-noise variance c per coordinate, xi settles about h c / (2 T) above its full-batch value.
The momentum is drawn N(0, I) at the start and then carried (not resampled as in SGHMC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.sgmcmc import sgnht

from fractalbayes import checks
from fractalbayes.errors import ModelError
from fractalbayes.model.target import Target
from fractalbayes.samplers import schedules, tempered
from fractalbayes.samplers.base import Kernel, tree_norm
from fractalbayes.samplers.gradients import tempered_log_density_and_grad
from fractalbayes.samplers.registry import Option, SamplerSpec, register
from fractalbayes.samplers.sgld import STEP_OPTIONS, LangevinHyper, hyper
from fractalbayes.samplers.sgld_cv import local_center


class SGNHTHyper(NamedTuple):
    langevin: LangevinHyper
    alpha: float
    beta: float
    init_xi: float


class SGNHTChainState(NamedTuple):
    sgnht: sgnht.SGNHTState
    """BlackJAX's (position, momentum, xi)."""
    center: jax.Array | None
    """The localization centre; None when the kernel is not localized (nothing to carry)."""


class SGNHTInfo(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array
    step_size: jax.Array
    xi: jax.Array
    """The thermostat after the step."""
    kinetic_energy: jax.Array
    """p.p / d after the step: its mean over draws is the temperature T at stationarity (opt-in:
    ``stats="all"`` or a tuple naming it, as it costs a pass over the momentum)."""


def sgnht_kernel(target: Target, schedule: str | Callable, localized: bool) -> Kernel:
    grad_fn = tempered_log_density_and_grad(target, localized)

    def init(position, key, hyper: SGNHTHyper) -> SGNHTChainState:
        return SGNHTChainState(sgnht.init(position, key, hyper.init_xi), local_center(position, hyper.langevin, localized))

    def step(key, state: SGNHTChainState, batch, i, hyper: SGNHTHyper):
        h = hyper.langevin
        (_, loss), grad = grad_fn(state.sgnht.position, state.center, batch, h.nbeta, h.localization)
        rate = schedules.rate_at(schedule, h.schedule, i)
        # BlackJAX's kernel evaluates its gradient estimator once, at the pre-step position: hand it
        # the gradient computed above, so that one model pass also gives the loss statistic.
        kernel = sgnht.build_kernel(hyper.alpha, hyper.beta)
        new = kernel(key, state.sgnht, lambda position, minibatch: grad, batch, rate, h.temperature)
        kinetic = jnp.sum(jnp.square(new.momentum)) / new.momentum.size
        return state._replace(sgnht=new), SGNHTInfo(loss, tree_norm(grad), rate, new.xi, kinetic)

    return Kernel(init=init, step=step, position=lambda s: s.sgnht.position, single_step_blocks=True)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, SGNHTHyper]:
    kind, numbers = hyper("sgnht", target, opts, total_steps)
    init_xi = opts["alpha"] if opts["init_xi"] is None else opts["init_xi"]
    if opts["step_size"] * opts["temperature"] * opts["beta"] >= 2 * opts["alpha"]:
        raise ModelError(
            f"sgnht: the injected noise variance h T (2 alpha - h T beta) is not positive for step_size="
            f"{opts['step_size']}, temperature={opts['temperature']}, alpha={opts['alpha']}, beta={opts['beta']}; "
            f"lower beta below 2 alpha / (h T) or raise alpha")
    localized = numbers.localization > 0
    kernel = target.memo(("sgnht", kind, localized), lambda: sgnht_kernel(target, kind, localized))
    return kernel, SGNHTHyper(numbers, opts["alpha"], opts["beta"], init_xi)


SPEC = register(SamplerSpec(
    name="sgnht",
    summary="stochastic-gradient Nosé-Hoover thermostat (BlackJAX sgnht): friction adapts to gradient noise",
    options=STEP_OPTIONS + (
        Option("alpha", 0.01, checks.positive(), "injected-noise friction A: noise sqrt(2 A h T) per step"),
        Option("beta", 0.0, checks.positive(allow_zero=True), "estimate of the gradient-noise term (subtracted)"),
        Option("init_xi", None, checks.optional(checks.real(minimum=None)), "initial thermostat; None: alpha"),
    ) + tempered.OPTIONS,
    build=build,
))
