"""Layer 2, the samplers: BlackJAX-style kernels and the one registry ``fb.sample`` dispatches through.

Every module here that registers a :class:`~fractalbayes.samplers.registry.SamplerSpec` is imported
below, so adding a kernel touches one file: its own.
"""

import importlib
import pkgutil

from fractalbayes.samplers.base import Kernel, StepInfo
from fractalbayes.samplers.registry import REGISTRY, Option, SamplerSpec, get, register

_SUPPORT = {"base", "registry", "schedules", "gradients", "tempered"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT:
        importlib.import_module(f"{__name__}.{_module.name}")

SAMPLERS = REGISTRY
"""Every registered sampler by name (kernels here; methods such as 'fractal' register from above)."""

__all__ = ["Kernel", "Option", "REGISTRY", "SAMPLERS", "SamplerSpec", "StepInfo", "get", "register"]
