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
    single_step_blocks: bool = False
    """At thin 1, run each draw's one step under a `lax.cond` instead of a `fori_loop` nested in the
    driver's scan (:func:`fractalbayes.engine.driver.advance_fn`). Which is faster depends on the
    kernel's XLA program: measured at ~400 parameters against BlackJAX's loops, SGLD-CV 0.89 ->
    0.98-1.02 (its shared centre is then a plain invariant of the scan), SGNHT 0.94 -> 0.96-0.98,
    SGLD unchanged, CSGLD 0.92-0.94 -> 0.87; so it is the kernel's choice."""


def tree_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))
