"""The arguments a NumPyro model is called with: named as the model names them, checked at the door.

:func:`argument_names` binds the call to the model's signature (``inspect.signature(model).bind``)
so that data arrays keep the model's own parameter names (``x``, ``y``) in ``Target.data``, in
predictions and in the run's DataTree; positional arguments that land in a ``*args`` parameter (or
models without a signature) are named ``arg0``, ``arg1``, ... by position.

:func:`check_arrays` refuses, with a :class:`~fractalbayes.ModelError` and before the model runs or
JAX compiles anything, array arguments that are empty, ragged (object dtype, inhomogeneous nested
lists) or hold non-finite values (NaN, +-inf): the error names the argument, the count and the first
index. Pure NumPy: nothing here touches JAX beyond reading an array's values.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import numpy as np

from fractalbayes.errors import ModelError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, jax.Array))


def model_name(model: Callable) -> str:
    inner = getattr(model, "func", model)  # functools.partial
    return getattr(inner, "__name__", type(inner).__name__)


def argument_names(model: Callable, args: tuple, kwargs: dict) -> tuple[str, ...]:
    """Names of the positional arguments of ``model(*args, **kwargs)``, from the model's signature.

    Raises ModelError when the call does not fit the signature (a missing or unknown argument), so
    that a wrong call is reported before the model runs.
    """
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):  # builtins or callables without a signature: names by position
        return tuple(f"arg{i}" for i in range(len(args)))
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise ModelError(
            f"model {model_name(model)!r} cannot be called with these arguments ({error}); its "
            f"signature is {model_name(model)}{signature}"
        ) from None
    positional = [p.name for p in signature.parameters.values() if p.kind in _POSITIONAL]
    return tuple(positional[i] if i < len(positional) else f"arg{i}" for i in range(len(args)))


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def check_value(label: str, value: Any, *, allow_nonfinite: bool, fix: str) -> None:
    """Refuse an empty, ragged or non-finite array ``value`` (described by ``label``)."""
    if isinstance(value, (list, tuple)):
        try:
            np.asarray(value)
        except ValueError:
            raise ModelError(
                f"{label} is a ragged nested sequence (rows of different lengths); pass a rectangular "
                f"array with one row per example"
            ) from None
        return
    if not is_array(value):
        return
    if value.dtype == object:
        raise ModelError(
            f"{label} is an array of Python objects (dtype object, e.g. ragged rows); pass a rectangular "
            f"numeric array"
        )
    if value.size == 0:
        raise ModelError(f"{label} is empty (shape {tuple(value.shape)}): the data set needs at least one example")
    if allow_nonfinite or not np.issubdtype(value.dtype, np.inexact):
        return
    bad = ~np.isfinite(np.asarray(value))
    if bad.any():
        raise ModelError(
            f"{label} has {int(bad.sum())} non-finite value(s) (NaN or inf) of {value.size}, the first "
            f"at index {_first_index(bad)}; {fix}"
        )


NONFINITE_FIX = (
    "drop or impute those rows, or, if the model masks them (numpyro.handlers.mask, obs_mask), pass "
    "allow_nonfinite=True"
)


def check_arrays(named: dict[str, Any], *, allow_nonfinite: bool) -> None:
    """Door checks for every argument of the model call (see the module docstring)."""
    for name, value in named.items():
        check_value(f"argument {name!r}", value, allow_nonfinite=allow_nonfinite, fix=NONFINITE_FIX)


def data_arrays(named: dict[str, Any]) -> dict[str, Any]:
    """The array arguments with at least one dimension (candidates for one row per example)."""
    return {k: v for k, v in named.items() if is_array(v) and np.ndim(v) >= 1}


def check_lengths(arrays: dict[str, Any]) -> None:
    lengths = {k: int(np.shape(v)[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k} has {n} rows" for k, n in lengths.items())
        raise ModelError(
            f"mismatched leading dimensions: {listing}; every data array passed to the model must "
            f"have one row per example (bind other arrays with functools.partial)"
        )
