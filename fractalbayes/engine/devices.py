"""Which devices a run's chains go to: ``devices=None | int | list`` -> a 1-D mesh of the chain axis.

``None`` (or 1) runs every chain on JAX's default device, as a plain vmap. An int k takes the first k
of ``jax.devices()``; a list of ``jax.Device`` takes those. The chains are split evenly over a 1-D
mesh whose one axis (``"chain"``) is of type ``AxisType.Auto``: with jax 0.12's default explicit axis
types, the minibatch gather inside a sampler step raised ``ShardingTypeError``. Each device then runs
the unchanged per-chain arithmetic on its own chains (``jax.shard_map``), with no communication.

To try several devices on a CPU-only machine, set
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before JAX is imported.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
from jax.sharding import AxisType, Mesh

from fractalbayes import checks
from fractalbayes.errors import InputError

CHAIN_AXIS = "chain"


def chain_mesh(devices: Any, num_chains: int) -> Mesh | None:
    """The 1-D mesh that splits ``num_chains`` chains over ``devices`` (None: one device).

    Raises :class:`InputError` before any work when the devices are not available, repeat, or do
    not divide the chains evenly.
    """
    if devices is None:
        return None
    available = jax.devices()
    if checks.is_int(devices):
        count = checks.count("devices", devices, 1)
        if count > len(available):
            raise InputError(
                f"devices={count} but JAX sees {len(available)} {available[0].platform} device(s); pass at most "
                f"{len(available)} (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N set before "
                f"importing JAX simulates N)")
        chosen: Sequence[Any] = available[:count]
    elif isinstance(devices, (list, tuple)) and devices and all(isinstance(d, jax.Device) for d in devices):
        chosen = list(devices)
        if len(set(chosen)) != len(chosen):
            raise InputError(f"devices lists a device twice: {chosen}; list each once")
    else:
        raise InputError(f"devices must be None, a positive int or a non-empty list of jax.Device, got "
                         f"{checks.show(devices)}")
    if len(chosen) == 1 and chosen[0] == available[0]:
        return None
    if num_chains % len(chosen):
        raise InputError(
            f"num_chains={num_chains} cannot be split evenly over {len(chosen)} devices; use a multiple of "
            f"{len(chosen)} chains or fewer devices")
    return jax.make_mesh((len(chosen),), (CHAIN_AXIS,), axis_types=(AxisType.Auto,), devices=chosen)


def describe(mesh: Mesh | None) -> list[str]:
    """The devices of a mesh as strings, for the run record (the default device when None)."""
    devices = [jax.devices()[0]] if mesh is None else list(mesh.devices.flat)
    return [str(d) for d in devices]
