"""The shape every kernel shares: a BlackJAX-style pair of pure functions.

    init(position, key, hyper) -> state
    step(key, state, batch, i, hyper) -> (state, info)

``hyper`` is the kernel's NamedTuple of numbers (step sizes, temperatures, ...) passed at call time,
so changing a number does not recompile; everything structural is closed over by the kernel, which
is cached on the target per structural options. ``info`` is a NamedTuple of per-chain scalars
whose first three fields are always ``loss`` (the minibatch mean NLL at the pre-step position),
``grad_norm`` and ``step_size``, as in :class:`StepInfo`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class StepInfo(NamedTuple):
    """What every kernel reports per chain and step."""

    loss: jax.Array
    """Minibatch mean negative log-likelihood L_B at the pre-step position."""
    grad_norm: jax.Array
    step_size: jax.Array


class Kernel(NamedTuple):
    init: Callable[[jax.Array, jax.Array, Any], Any]
    step: Callable[..., tuple[Any, NamedTuple]]
    position: Callable[[Any], jax.Array]
    full_batch: bool = False
    warmup: Callable | None = None
    """Optional adaptation run before sampling: (keys (C,), states, num_steps, hyper) -> states."""


def tree_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))
