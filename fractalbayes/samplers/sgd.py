"""SGD (or Adam) iterates treated as samples, with optax.

Each chain is one independent training run; after burn-in its thinned iterates are the draws.
The objective is the minibatch mean NLL L_B(w) (``objective="nll"``) or the minibatch MAP
objective L_B(w) - log rho(w) / n (``objective="map"``). ``weight_decay`` adds the decoupled term
optax.add_decayed_weights; for a N(0, s^2) prior, weight_decay = 1 / (n s^2) makes SGD's potential
the posterior's (Mandt, Hoffman & Blei 2017 treat constant-rate SGD as the sampler of exactly this).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import optax

from fractalbayes import checks
from fractalbayes.model.target import Target
from fractalbayes.samplers import schedules
from fractalbayes.samplers.base import Kernel, StepInfo, tree_norm
from fractalbayes.samplers.registry import Option, SamplerSpec, register

OPTIMIZERS = ("sgd", "adam")
OBJECTIVES = ("nll", "map")
OPTIONS = (
    Option("learning_rate", 1e-2, checks.positive(), "learning rate eta"),
    Option("momentum", 0.0, checks.positive(allow_zero=True), "heavy-ball momentum (optimizer 'sgd')"),
    Option("weight_decay", 0.0, checks.positive(allow_zero=True), "decoupled weight decay (optax.add_decayed_weights)"),
    Option("schedule", None, schedules.validate, "learning-rate schedule (constant, polynomial, cyclical, callable)"),
    Option("optimizer", "sgd", checks.choice(*OPTIMIZERS), "optax optimizer"),
    Option("objective", "nll", checks.choice(*OBJECTIVES), "minibatch NLL, or the MAP objective L_B - log rho / n"),
)


class SGDState(NamedTuple):
    position: jax.Array
    optimizer: Any
    """The optax optimizer state."""


def _optimizer(kind: str, rate, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    base = optax.sgd(rate, momentum=momentum or None) if kind == "sgd" else optax.adam(rate)
    return optax.chain(optax.add_decayed_weights(weight_decay), base) if weight_decay else base


def sgd_kernel(target: Target, optimizer: str, objective: str, momentum: float, weight_decay: float,
               schedule: str | Callable) -> Kernel:
    def objective_fn(z, batch):
        loss = target.loss(z, batch)
        if objective == "map":
            return loss - target.log_prior(z) / target.n_data, loss
        return loss, loss

    def init(position, key, hyper):
        return SGDState(position, _optimizer(optimizer, 0.0, momentum, weight_decay).init(position))

    def step(key, state, batch, i, hyper: schedules.Schedule):
        rate = schedules.rate_at(schedule, hyper, i)
        (_, loss), grad = jax.value_and_grad(objective_fn, has_aux=True)(state.position, batch)
        updates, opt_state = _optimizer(optimizer, rate, momentum, weight_decay).update(
            grad, state.optimizer, state.position)
        return SGDState(optax.apply_updates(state.position, updates), opt_state), StepInfo(loss, tree_norm(grad), rate)

    return Kernel(init=init, step=step, position=lambda state: state.position)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, schedules.Schedule]:
    kind, numbers = schedules.parameters(opts["schedule"], opts["learning_rate"], total_steps)
    structure = (opts["optimizer"], opts["objective"], opts["momentum"], opts["weight_decay"], kind)
    return target.memo(("sgd", *structure), lambda: sgd_kernel(target, *structure)), numbers


SPEC = register(SamplerSpec(
    name="sgd",
    summary="SGD or Adam iterates treated as samples (optax); each chain one training run",
    options=OPTIONS,
    build=build,
))
