"""Step-size schedules, evaluated at the step index inside the scan.

- constant: h_t = h
- polynomial decay (Welling & Teh 2011): h_t = a (b + t)^(-gamma)
- cyclical cosine (Zhang et al. 2020, cSG-MCMC): h_t = (h / 2) [cos(pi mod(t, c) / c) + 1],
  c = ceil(T / num_cycles) for T total steps
- any callable ``t -> h_t`` written with jax.numpy (an optax schedule works).
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp

from ..errors import ModelError
from .base import positive

KINDS = ("constant", "polynomial", "cyclical")


def parse(sampler: str, schedule: Any, base: float) -> tuple[str | Callable, dict[str, float]]:
    """(static kind, numeric parameters) of a schedule option; ``base`` is the step size option."""
    if schedule is None or schedule == "constant":
        return "constant", {"rate": base}
    if callable(schedule):
        return schedule, {}
    if not isinstance(schedule, dict) or schedule.get("kind") not in KINDS:
        raise ModelError(
            f"{sampler}: schedule must be None, a callable t -> step size, or a dict with kind in "
            f"{list(KINDS)}, got {schedule!r}"
        )
    kind = schedule["kind"]
    params = {k: v for k, v in schedule.items() if k != "kind"}
    allowed = {"constant": set(), "polynomial": {"a", "b", "gamma"}, "cyclical": {"num_cycles"}}[kind]
    unknown = set(params) - allowed
    if unknown:
        raise ModelError(f"{sampler}: {kind} schedule takes {sorted(allowed)}, not {sorted(unknown)}")
    if kind == "polynomial":
        return kind, {
            "a": positive(sampler, "schedule.a", params.get("a", base)),
            "b": positive(sampler, "schedule.b", params.get("b", 1.0)),
            "gamma": positive(sampler, "schedule.gamma", params.get("gamma", 0.55), allow_zero=True),
        }
    if kind == "cyclical":
        return kind, {"rate": base, "num_cycles": positive(sampler, "schedule.num_cycles", params.get("num_cycles", 4))}
    return "constant", {"rate": base}


def rate_at(kind: str | Callable, params: dict, t, total_steps) -> Any:
    """The step size at step t."""
    if callable(kind):
        return jnp.asarray(kind(t), jnp.float32)
    if kind == "constant":
        return params["rate"]
    if kind == "polynomial":
        return params["a"] * (params["b"] + t) ** (-params["gamma"])
    cycle = jnp.ceil(total_steps / params["num_cycles"])
    return params["rate"] / 2 * (jnp.cos(jnp.pi * jnp.mod(t, cycle) / cycle) + 1)
