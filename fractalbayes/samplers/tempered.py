"""What the tempered, localizable kernels (SGLD, SGHMC, NUTS) share: options, numbers and state.

They all sample

    pi(w) ∝ rho(w)^p exp(-nbeta L_n(w) - (localization / 2) ||w - center||^2),

the posterior when p = 1, nbeta = n and localization = 0, the LLC estimator's localized tempered
posterior (Lau et al. 2023) otherwise. The prior power p (:data:`PRIOR_POWER`, default 1) is an
option of SGLD, SGHMC and NUTS only: 0 drops the prior (devinterp's LLC), nbeta / n is the SGD MAP
objective L_B - log rho / n at inverse temperature nbeta (the fractal sampler's basins).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from fractalbayes import checks
from fractalbayes.model.target import Target
from fractalbayes.samplers.registry import Option


def _position(value: Any) -> Any:
    if value is None or isinstance(value, dict) or isinstance(value, (list, tuple, np.ndarray, jax.Array)):
        return value
    raise checks.Invalid(f"must be None, a flat unconstrained vector or a dict of sites, got {checks.show(value)}")


_position.want = "None, a flat vector or a dict of sites"

NBETA = Option("nbeta", None, checks.optional(checks.positive()),
               "inverse temperature times n of the likelihood; None: n (the posterior)")
LOCALIZATION = Option("localization", 0.0, checks.positive(allow_zero=True),
                      "strength gamma of the pull (gamma/2)||w - center||^2; 0: none")
CENTER = Option("center", None, _position,
                "centre of the localization (flat vector or sites); None: each chain's start")
OPTIONS = (NBETA, LOCALIZATION, CENTER)
PRIOR_POWER = Option("prior_power", 1.0, checks.positive(allow_zero=True),
                     "power p of the prior rho^p: 1 the posterior, 0 none, nbeta/n the SGD MAP objective's")


class TemperedState(NamedTuple):
    position: jax.Array
    center: jax.Array
    """The localization centre w*: the given ``center``, else the chain's initial position."""


def nbeta(target: Target, opts: dict) -> float:
    return float(target.n_data if opts["nbeta"] is None else opts["nbeta"])


def prior_power(opts: dict) -> float:
    """The prior power p of a resolved option dict (1 for kernels without the option)."""
    return float(opts.get("prior_power", 1.0))


def center(name: str, target: Target, value: Any) -> jax.Array | None:
    """A flat centre of the target's dimension (from a vector or a dict of sites), or None."""
    return None if value is None else target.flat_position(value, f"{name}: center")
