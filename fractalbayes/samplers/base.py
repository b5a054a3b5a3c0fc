"""The shape every sampler shares: a BlackJAX-style pair of pure functions.

    init(position, key, hyper) -> state
    step(key, state, batch, i, hyper) -> (state, info)

``hyper`` is a dict of arrays (step sizes, temperatures, ...) passed at call time, so changing a
number does not recompile; everything structural is closed over by the kernel, which is cached per
target and structural options. ``info`` is a dict of per-chain scalars; every kernel reports
``loss`` (the minibatch mean NLL at the pre-step position), ``grad_norm`` and ``step_size``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .. import checks
from ..errors import ModelError


class Kernel(NamedTuple):
    init: Callable[[jax.Array, jax.Array, dict], Any]
    step: Callable[..., tuple[Any, dict[str, jax.Array]]]
    position: Callable[[Any], jax.Array]
    full_batch: bool = False
    warmup: Callable | None = None
    """Optional adaptation run before sampling: (keys (C,), states, num_steps, hyper) -> states."""


def resolve_options(sampler: str, given: dict, defaults: dict) -> dict:
    """Defaults updated by the given options; unknown names are a ModelError listing the allowed."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ModelError(
            f"unknown option(s) {unknown} for sampler {sampler!r}; allowed: {sorted(defaults)}"
        )
    return {**defaults, **given}


def positive(sampler: str, name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite positive (or non-negative) float option, else a ModelError naming it."""
    return checks.positive(f"{sampler}: option {name}", value, allow_zero=allow_zero)


def tree_norm(tree: Any) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))
