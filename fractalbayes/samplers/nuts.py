"""BlackJAX NUTS with window adaptation on the full-data density: the reference posterior.

The density is the same tempered, localized one as the SG-MCMC kernels (nbeta = n and
localization = 0 give the posterior), evaluated on all n examples: NUTS cannot use minibatches
(NumPyro issue #928). Window adaptation (Stan's) runs vmapped over chains during burn-in; each
chain keeps its own step size and diagonal inverse mass matrix in its state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp

from fractalbayes import checks
from fractalbayes.model.target import Target
from fractalbayes.samplers import tempered
from fractalbayes.samplers.base import Kernel, tree_norm
from fractalbayes.samplers.gradients import tempered_log_density
from fractalbayes.samplers.registry import Option, SamplerSpec, register


class NUTSHyper(NamedTuple):
    nbeta: float
    localization: float
    center: Any = None
    prior_power: float = 1.0


class NUTSChainState(NamedTuple):
    hmc: Any
    """blackjax HMCState (position, logdensity, logdensity_grad)."""
    center: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array


class NUTSInfo(NamedTuple):
    """Per chain and transition, with ArviZ's ``sample_stats`` names (as ``arviz_base.from_numpyro``)."""

    loss: jax.Array
    grad_norm: jax.Array
    step_size: jax.Array
    lp: jax.Array
    """log density of the new position (tempered, localized; with nbeta = n the log posterior in
    unconstrained space, Jacobian included: Stan's ``lp__``)."""
    energy: jax.Array
    """Hamiltonian H = -lp + p^T M^{-1} p / 2 of the proposal (BlackJAX ``NUTSInfo.energy``): for BFMI."""
    acceptance_rate: jax.Array
    n_steps: jax.Array
    """Leapfrog steps of the transition (BlackJAX ``num_integration_steps``)."""
    tree_depth: jax.Array
    """Trajectory doublings (BlackJAX ``num_trajectory_expansions``)."""
    diverging: jax.Array
    """Divergent transition: energy error above BlackJAX's threshold (``is_divergent``)."""


def nuts_kernel(target: Target, max_num_doublings: int, target_acceptance_rate: float,
                weighted_prior: bool = False) -> Kernel:
    density = tempered_log_density(target, localized=True, prior_power=weighted_prior)
    kernel = blackjax.nuts.build_kernel()

    def log_density_fn(center, hyper: NUTSHyper):
        power = (hyper.prior_power,) if weighted_prior else ()
        return lambda z: density(z, center, target.data, hyper.nbeta, hyper.localization, *power)[0]

    def init(position, key, hyper: NUTSHyper):
        center = position if hyper.center is None else hyper.center
        hmc = blackjax.nuts.init(position, log_density_fn(center, hyper))
        return NUTSChainState(hmc, center, jnp.ones(()), jnp.ones_like(position))

    def warmup(key, state, num_steps, hyper: NUTSHyper):
        adaptation = blackjax.window_adaptation(
            blackjax.nuts,
            log_density_fn(state.center, hyper),
            target_acceptance_rate=target_acceptance_rate,
            max_num_doublings=max_num_doublings,
        )
        (hmc, params), _ = adaptation.run(key, state.hmc.position, num_steps)
        return NUTSChainState(hmc, state.center, params["step_size"], params["inverse_mass_matrix"])

    def step(key, state, batch, i, hyper: NUTSHyper):
        hmc, info = kernel(key, state.hmc, log_density_fn(state.center, hyper), state.step_size,
                           state.inverse_mass_matrix, max_num_doublings)
        z = state.hmc.position
        localization = 0.5 * hyper.localization * jnp.sum(jnp.square(z - state.center))
        # L_n at the pre-step position, recovered from the stored log density without a model pass.
        loss = (hyper.prior_power * target.log_prior(z) - localization - state.hmc.logdensity) / hyper.nbeta
        return state._replace(hmc=hmc), NUTSInfo(
            loss, tree_norm(state.hmc.logdensity_grad), state.step_size, hmc.logdensity, info.energy,
            info.acceptance_rate, info.num_integration_steps, info.num_trajectory_expansions, info.is_divergent)

    return Kernel(init=init, step=step, position=lambda s: s.hmc.position, full_batch=True, warmup=warmup)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, NUTSHyper]:
    numbers = NUTSHyper(tempered.nbeta(target, opts), opts["localization"],
                        tempered.center("nuts", target, opts["center"]), tempered.prior_power(opts))
    structure = (opts["max_num_doublings"], opts["target_acceptance_rate"], numbers.prior_power != 1.0)
    return target.memo(("nuts", *structure), lambda: nuts_kernel(target, *structure)), numbers


SPEC = register(SamplerSpec(
    name="nuts",
    summary="BlackJAX NUTS with Stan's window adaptation on the full data: the reference posterior",
    options=(
        Option("target_acceptance_rate", 0.8, checks.real(minimum=0.0, maximum=1.0), "adaptation's target acceptance"),
        Option("max_num_doublings", 10, checks.integer(1), "maximum tree depth"),
    ) + tempered.OPTIONS + (tempered.PRIOR_POWER,),
    build=build,
    warmup=True,
))
