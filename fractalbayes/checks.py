"""Argument checks shared by the public API: each names the argument and what is allowed."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import ModelError


def count(name: str, value: Any, minimum: int) -> int:
    """An int >= `minimum` (bools rejected), else a ModelError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ModelError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite real > 0 (or >= 0 with `allow_zero`), else a ModelError naming `name`."""
    bound = ">= 0" if allow_zero else "> 0"
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or value < 0 or (value == 0 and not allow_zero)):
        raise ModelError(f"{name} must be finite and {bound}, got {value!r}")
    return float(value)
