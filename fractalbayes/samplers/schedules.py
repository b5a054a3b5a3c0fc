"""Step-size schedules, evaluated at the step index inside the scan.

- constant: h_t = h
- polynomial decay (Welling & Teh 2011): h_t = a (b + t)^(-gamma)
- cyclical cosine (Zhang et al. 2020, cSG-MCMC): h_t = (h / 2) [cos(pi mod(t, c) / c) + 1],
  c = ceil(T / num_cycles) for T total steps
- any callable ``t -> h_t`` written with jax.numpy (an optax schedule works).

The ``schedule`` option is validated by :func:`validate`; :func:`parameters` turns it into a static
kind (closed over by the kernel) and a :class:`Schedule` of numbers (passed at call time).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from fractalbayes import checks

KINDS = ("constant", "polynomial", "cyclical")
_KEYS = {"constant": {}, "polynomial": {"a": None, "b": 1.0, "gamma": 0.55}, "cyclical": {"num_cycles": 4.0}}
_CHECKS = {"a": checks.positive(), "b": checks.positive(), "gamma": checks.positive(allow_zero=True),
           "num_cycles": checks.positive()}


class Schedule(NamedTuple):
    rate: jnp.ndarray | float
    """The base step size (the ``step_size`` / ``learning_rate`` option); ``a`` defaults to it."""
    a: float = 0.0
    b: float = 1.0
    gamma: float = 0.55
    num_cycles: float = 4.0
    total_steps: int = 1


def validate(schedule: Any) -> Any:
    """None, 'constant', a callable, or a dict ``{"kind": ..., parameters}`` with valid parameters."""
    if schedule is None or schedule == "constant" or callable(schedule):
        return schedule
    if not isinstance(schedule, dict) or schedule.get("kind") not in KINDS:
        raise checks.Invalid(
            f"must be None, a callable t -> step size, or a dict with kind in {list(KINDS)}, got "
            f"{checks.show(schedule)}")
    kind = schedule["kind"]
    unknown = set(schedule) - {"kind"} - set(_KEYS[kind])
    if unknown:
        raise checks.Invalid(f"({kind}) takes {sorted(_KEYS[kind])}, not {sorted(unknown)}")
    for key in set(schedule) - {"kind"}:
        try:
            _CHECKS[key](schedule[key])
        except checks.Invalid as reason:
            raise checks.Invalid(f"key {key!r} {reason}") from None
    return dict(schedule)


validate.want = "None, a callable, or a table with kind in " + ", ".join(KINDS)


def parameters(schedule: Any, rate: float, total_steps: int) -> tuple[str | Callable, Schedule]:
    """(static kind or callable, numbers) of a validated schedule option at base step size ``rate``."""
    if callable(schedule):
        return schedule, Schedule(rate, total_steps=total_steps)
    if schedule is None or schedule == "constant":
        return "constant", Schedule(rate, total_steps=total_steps)
    kind = schedule["kind"]
    values = {k: float(schedule.get(k, rate if v is None else v)) for k, v in _KEYS[kind].items()}
    return kind, Schedule(rate, total_steps=total_steps, **values)


def rate_at(kind: str | Callable, s: Schedule, t) -> Any:
    """The step size at step t."""
    if callable(kind):
        return jnp.asarray(kind(t), jnp.float32)
    if kind == "constant":
        return s.rate
    if kind == "polynomial":
        return s.a * (s.b + t) ** (-s.gamma)
    cycle = jnp.ceil(s.total_steps / s.num_cycles)
    return s.rate / 2 * (jnp.cos(jnp.pi * jnp.mod(t, cycle) / cycle) + 1)
