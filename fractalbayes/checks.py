"""The one way arguments are checked, in the public API and in suite files alike.

A *validator* is a callable ``value -> value`` (possibly normalised, e.g. an int to a float) that
raises :class:`Invalid` with a reason ("must be an integer >= 1, got 0") when the value cannot be
used. :func:`check` runs one for a named argument and turns the reason into an
:class:`~fractalbayes.errors.InputError` (or a subclass) naming the argument; the suite-file
validator runs the same validators and records the reason against the file's key and line.

    checks.check("num_chains", 0, checks.integer(1))
    # InputError: num_chains must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from fractalbayes.errors import InputError, ModelError

Validator = Callable[[Any], Any]


class Invalid(Exception):
    """A value a validator refuses; ``str(error)`` is the reason, without the argument's name."""


def show(value: Any) -> str:
    """A value as the reason quotes it: its repr, with its type when that is not obvious."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, (bool, int, float, str, type(None))):
        return text
    return f"{text} ({type(value).__name__})"


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    """An int (bools refused) in [minimum, maximum]."""
    bounds = " and ".join(b for b in (f">= {minimum}" if minimum is not None else "",
                                      f"<= {maximum}" if maximum is not None else "") if b)
    want = f"an integer{' ' + bounds if bounds else ''}"

    def validate(value):
        if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise Invalid(f"must be {want}, got {show(value)}")
        return int(value)

    validate.want = want
    return validate


def real(*, minimum: float | None = 0.0, allow_minimum: bool = False, maximum: float | None = None) -> Validator:
    """A finite real > minimum (>= with ``allow_minimum``; no bound with ``minimum=None``), <= maximum."""
    parts = ["finite"]
    if minimum is not None:
        parts.append(f"{'>=' if allow_minimum else '>'} {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    want = "a number " + " and ".join(parts[1:]) if len(parts) > 1 else "a finite number"

    def validate(value):
        ok = is_real(value) and math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum or (allow_minimum and value == minimum)
        if ok and maximum is not None:
            ok = value <= maximum
        if not ok:
            raise Invalid(f"must be finite and {' and '.join(parts[1:]) or 'real'}, got {show(value)}")
        return float(value)

    validate.want = want
    return validate


def positive(allow_zero: bool = False) -> Validator:
    """A finite real > 0 (or >= 0)."""
    return real(minimum=0.0, allow_minimum=allow_zero)


def choice(*allowed: Any, also: Validator | None = None) -> Validator:
    """One of ``allowed`` (compared with ==), or else whatever ``also`` accepts."""
    names = ", ".join(repr(a) for a in allowed)
    want = f"one of {names}" + (f" or {also.want}" if also is not None else "")

    def validate(value):
        if isinstance(value, (str, bool, type(None))) or not hasattr(value, "__len__"):
            if any(value == a and type(value) is type(a) for a in allowed):
                return value
        if also is not None:
            try:
                return also(value)
            except Invalid:
                pass
        raise Invalid(f"must be {want}; got {show(value)}")

    validate.want = want
    return validate


def optional(validator: Validator) -> Validator:
    """None, or what ``validator`` accepts."""

    def validate(value):
        return None if value is None else validator(value)

    validate.want = f"None or {getattr(validator, 'want', 'a value')}"
    return validate


def kind(*types: type, want: str) -> Validator:
    """An instance of one of ``types``."""

    def validate(value):
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            raise Invalid(f"must be {want}, got {show(value)}")
        return value

    validate.want = want
    return validate


def sequence_of(validator: Validator, length: int | None = None, want: str | None = None) -> Validator:
    """A list or tuple (of ``length`` items) each accepted by ``validator``; returned as a tuple."""
    want = want or f"a list{f' of {length}' if length else ''} of {getattr(validator, 'want', 'values')}"

    def validate(value):
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            raise Invalid(f"must be {want}, got {show(value)}")
        try:
            return tuple(validator(v) for v in value)
        except Invalid as error:
            raise Invalid(f"must be {want}: an item {error}") from None

    validate.want = want
    return validate


def anything(value: Any) -> Any:
    return value


anything.want = "any value"


def check(name: str, value: Any, validator: Validator, error: type[InputError] = InputError) -> Any:
    """``validator(value)``, raising ``error`` that names the argument when it refuses."""
    try:
        return validator(value)
    except Invalid as reason:
        raise error(f"{name} {reason}") from None


def count(name: str, value: Any, minimum: int) -> int:
    """An int >= `minimum` (bools refused), else a ModelError naming `name`."""
    return check(name, value, integer(minimum), ModelError)


def seed(name: str, value: Any) -> int:
    """An integer seed >= 0, or a JAX PRNG key (``jax.random.key(0)``, or a legacy uint32[2] key).

    A key becomes the 32-bit integer ``jax.random.bits(key)`` draws from it, so that every seed is
    recorded (and can be repeated) as an int: pass that int to reproduce the run.
    """
    if is_int(value) and value >= 0:
        return int(value)
    if isinstance(value, jax.Array):
        typed = jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)
        if (typed and value.shape == ()) or (value.dtype == np.uint32 and value.shape == (2,)):
            key = value if typed else jax.random.wrap_key_data(value)
            return int(jax.random.bits(key))
    raise ModelError(f"{name} must be an integer >= 0 or a JAX PRNG key such as jax.random.key(0), "
                     f"got {show(value)}")


NUMPYRO_NAMES = {"num_warmup": "burn_in", "thinning": "thin", "rng_key": "seed", "progress_bar": "progress"}
"""NumPyro's ``MCMC``/``MCMC.run`` spellings and fractalbayes' names for the same settings."""


def refuse_numpyro_names(given: Sequence[str]) -> None:
    """A ModelError naming ours when a NumPyro spelling (``num_warmup``, ``thinning``, ...) is used."""
    used = [k for k in given if k in NUMPYRO_NAMES]
    if used:
        renames = ", ".join(f"{k}= -> {NUMPYRO_NAMES[k]}=" for k in used)
        raise ModelError(f"{', '.join(used)}: NumPyro's spelling; fractalbayes.sample calls these {renames} "
                         f"(docs/guide.md, 'Names')")


def finite(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite real > 0 (or >= 0 with `allow_zero`), else a ModelError naming `name`."""
    return check(name, value, positive(allow_zero), ModelError)


def unknown_names(owner: str, given: Sequence[str], allowed: Sequence[str]) -> None:
    """A ModelError listing the allowed names when ``given`` has any other."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ModelError(f"unknown option(s) {unknown} for {owner}; allowed: {sorted(allowed)}")
