"""SGD (or Adam) iterates treated as samples, with optax.

Each chain is one independent training run; after burn-in its thinned iterates are the draws.
The objective is the minibatch mean NLL L_B(w) (``objective="nll"``) or the minibatch MAP
objective L_B(w) - log rho(w) / n (``objective="map"``). ``weight_decay`` adds the decoupled term
optax.add_decayed_weights; for a N(0, s^2) prior, weight_decay = 1 / (n s^2) makes SGD's potential
the posterior's (Mandt, Hoffman & Blei 2017 treat constant-rate SGD as the sampler of exactly this).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import optax

from ..errors import ModelError
from ..target import Target
from . import schedules
from .base import Kernel, positive, resolve_options, tree_norm

DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-2,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "schedule": None,
    "optimizer": "sgd",
    "objective": "nll",
}
OPTIMIZERS = ("sgd", "adam")
OBJECTIVES = ("nll", "map")


def _optimizer(kind: str, rate, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    base = (
        optax.sgd(rate, momentum=momentum or None) if kind == "sgd" else optax.adam(rate)
    )
    return optax.chain(optax.add_decayed_weights(weight_decay), base) if weight_decay else base


@functools.cache
def _kernel(
    target: Target, optimizer: str, objective: str, momentum: float, weight_decay: float, schedule: str | Callable
) -> Kernel:
    def objective_fn(z, batch):
        loss = target.loss(z, batch)
        if objective == "map":
            return loss - target.log_prior(z) / target.n_data, loss
        return loss, loss

    def init(position, key, hyper):
        return position, _optimizer(optimizer, 0.0, momentum, weight_decay).init(position)

    def step(key, state, batch, i, hyper):
        z, opt_state = state
        rate = schedules.rate_at(schedule, hyper, i, hyper["total_steps"])
        (_, loss), grad = jax.value_and_grad(objective_fn, has_aux=True)(z, batch)
        updates, opt_state = _optimizer(optimizer, rate, momentum, weight_decay).update(grad, opt_state, z)
        return (optax.apply_updates(z, updates), opt_state), {
            "loss": loss,
            "grad_norm": tree_norm(grad),
            "step_size": rate,
        }

    return Kernel(init=init, step=step, position=lambda state: state[0])


def build(target: Target, options: dict) -> tuple[Kernel, dict, dict]:
    opts = resolve_options("sgd", options, DEFAULTS)

    if opts["optimizer"] not in OPTIMIZERS:
        raise ModelError(f"sgd: optimizer must be one of {OPTIMIZERS}, got {opts['optimizer']!r}")
    if opts["objective"] not in OBJECTIVES:
        raise ModelError(f"sgd: objective must be one of {OBJECTIVES}, got {opts['objective']!r}")
    rate = positive("sgd", "learning_rate", opts["learning_rate"])
    momentum = positive("sgd", "momentum", opts["momentum"], allow_zero=True)
    weight_decay = positive("sgd", "weight_decay", opts["weight_decay"], allow_zero=True)
    kind, hyper = schedules.parse("sgd", opts["schedule"], rate)
    kernel = _kernel(target, opts["optimizer"], opts["objective"], momentum, weight_decay, kind)
    return kernel, hyper, opts
