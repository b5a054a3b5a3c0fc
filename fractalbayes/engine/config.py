"""Typed records of how a run was made; JSON is only their serialisation on disk."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

PACKAGES = ("fractalbayes", "jax", "jaxlib", "numpyro", "blackjax", "optax", "arviz-base", "arviz-stats")


@dataclass(frozen=True)
class TargetInfo:
    """What identifies the sampled target: its model's name, data size, dimension and data hash."""

    name: str
    n_data: int
    dim: int
    fingerprint: str


@dataclass(frozen=True)
class RunConfig:
    """The settings of one ``fb.sample`` call, resolved and validated (``options`` with defaults)."""

    sampler: str
    options: dict[str, Any]
    num_chains: int
    num_samples: int
    burn_in: int
    thin: int
    seed: int
    batch_size: int
    target: TargetInfo
    init: str | None = None
    """None/'prior', 'uniform', or 'given' (the positions themselves are not recorded)."""
    num_checkpoints: int = 100
    checkpoint_start: int = 0
    record_window: tuple[int, int] | None = None
    method: dict[str, Any] | None = None
    """A composite method's own record (e.g. the fractal sampler's d_s, gamma_eff, steady state)."""
    devices: list[str] | None = None
    """The devices the chains were split over (None: JAX's default device)."""
    shared_batches: bool = False
    """One minibatch per step for every chain (True) instead of one per chain."""
    prng_impl: str = "threefry2x32"
    """JAX's PRNG implementation of the step loop's keys (minibatches and kernel noise)."""

    def to_json(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RunConfig:
        value = dict(value)
        value["target"] = TargetInfo(**value["target"])
        if value.get("record_window") is not None:
            value["record_window"] = tuple(value["record_window"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


def jsonable(value: Any) -> Any:
    """Values as JSON types (arrays to lists, callables to their repr)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


