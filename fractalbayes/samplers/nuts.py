"""BlackJAX NUTS with window adaptation on the full-data density: the reference posterior.

The density is the same tempered, localized one as the SG-MCMC kernels (nbeta = n and
localization = 0 give the posterior), evaluated on all n examples: NUTS cannot use minibatches
(NumPyro issue #928). Window adaptation (Stan's) runs vmapped over chains during burn-in; each
chain keeps its own step size and diagonal inverse mass matrix in its state.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp

from .. import checks
from ..target import Target
from .base import Kernel, positive, resolve_options, tree_norm
from .sgmcmc import check_center

DEFAULTS: dict[str, Any] = {
    "target_acceptance_rate": 0.8,
    "max_num_doublings": 10,
    "nbeta": None,
    "localization": 0.0,
    "center": None,
}


class NUTSChainState(NamedTuple):
    hmc: Any
    """blackjax HMCState (position, logdensity, logdensity_grad)."""
    center: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array


def _log_density_fn(target: Target, center, hyper):
    def log_density(z):
        value, _ = target.log_posterior_estimate(z, target.data, hyper["nbeta"])
        return value - 0.5 * hyper["localization"] * jnp.sum(jnp.square(z - center))

    return log_density


@functools.cache
def nuts_kernel(target: Target, max_num_doublings: int, target_acceptance_rate: float) -> Kernel:
    kernel = blackjax.nuts.build_kernel()

    def init(position, key, hyper):
        center = hyper.get("center", position)
        hmc = blackjax.nuts.init(position, _log_density_fn(target, center, hyper))
        return NUTSChainState(hmc, center, jnp.ones(()), jnp.ones_like(position))

    def warmup(key, state, num_steps, hyper):
        adaptation = blackjax.window_adaptation(
            blackjax.nuts,
            _log_density_fn(target, state.center, hyper),
            target_acceptance_rate=target_acceptance_rate,
            max_num_doublings=max_num_doublings,
        )
        (hmc, params), _ = adaptation.run(key, state.hmc.position, num_steps)
        return NUTSChainState(hmc, state.center, params["step_size"], params["inverse_mass_matrix"])

    def step(key, state, batch, i, hyper):
        log_density = _log_density_fn(target, state.center, hyper)
        hmc, info = kernel(
            key, state.hmc, log_density, state.step_size, state.inverse_mass_matrix, max_num_doublings
        )
        z = state.hmc.position
        localization = 0.5 * hyper["localization"] * jnp.sum(jnp.square(z - state.center))
        # L_n at the pre-step position, recovered from the stored log density without a model pass.
        loss = (target.log_prior(z) - localization - state.hmc.logdensity) / hyper["nbeta"]
        return state._replace(hmc=hmc), {
            "loss": loss,
            "grad_norm": tree_norm(state.hmc.logdensity_grad),
            "step_size": state.step_size,
            "acceptance_rate": info.acceptance_rate,
            "num_integration_steps": info.num_integration_steps,
            "diverging": info.is_divergent,
        }

    return Kernel(init=init, step=step, position=lambda s: s.hmc.position, full_batch=True, warmup=warmup)


def build(target: Target, options: dict) -> tuple[Kernel, dict, dict]:
    opts = resolve_options("nuts", options, DEFAULTS)
    accept = positive("nuts", "target_acceptance_rate", opts["target_acceptance_rate"])
    doublings = checks.count("nuts: option max_num_doublings", opts["max_num_doublings"], 1)
    hyper = {
        "nbeta": target.n_data if opts["nbeta"] is None else positive("nuts", "nbeta", opts["nbeta"]),
        "localization": positive("nuts", "localization", opts["localization"], allow_zero=True),
    }
    center = check_center("nuts", target, opts["center"])
    if center is not None:
        hyper["center"] = center
    return nuts_kernel(target, doublings, accept), hyper, opts
