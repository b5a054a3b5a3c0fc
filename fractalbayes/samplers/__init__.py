"""Sampler registry: name -> builder(target, options) -> (Kernel, hyper, resolved options)."""

from . import nuts, sgd, sgmcmc
from .base import Kernel

SAMPLERS = {
    "sgd": sgd.build,
    "sgld": sgmcmc.build_sgld,
    "sghmc": sgmcmc.build_sghmc,
    "nuts": nuts.build,
}

__all__ = ["SAMPLERS", "Kernel"]
