"""A sampler run: draws, per-draw statistics, displacement checkpoints and the record of how.

`Run.to_arviz()` gives an ArviZ 1.x ``xarray.DataTree`` with the groups

    posterior                 constrained NumPyro sites (chain, draw, *site dims)
    unconstrained_posterior   the flat position ``z`` (chain, draw, param)
    sample_stats              loss, grad_norm, step_size, diverging (+ sampler extras)
    observed_data             the observed sites
    checkpoints               positions on the geometric step grid (chain, checkpoint, param)

and the run's config, timings and package versions as JSON in the root's attributes, so that
`load_run(path)` gives back an identical Run.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fractalbayes.engine.config import RunConfig

META_KEY = "fractalbayes"


@dataclass
class Run:
    sampler: str
    positions: np.ndarray
    """Flat unconstrained draws, (chain, draw, param)."""
    sites: dict[str, np.ndarray]
    """Constrained NumPyro sites, (chain, draw, *shape)."""
    stats: dict[str, np.ndarray]
    """Per-draw statistics of the step that produced the draw, (chain, draw)."""
    checkpoints: np.ndarray
    """Positions at `checkpoint_steps` (chain, K, param); step 0 is the initial position."""
    checkpoint_steps: np.ndarray
    diverged_at: np.ndarray
    """Step at which each chain turned non-finite and stopped updating; -1 if it never did."""
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    config: RunConfig | None = None
    """How the run was made (sampler, resolved options, run settings, target identity)."""
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    groups: dict[str, xr.Dataset] = field(default_factory=dict)
    """Extra ArviZ groups a sampler adds (e.g. the fractal sampler's ``basins``)."""
    target: Any = field(default=None, repr=False, compare=False)
    """The Target sampled (not saved; None after `load_run`): needed for predictions."""

    @property
    def num_chains(self) -> int:
        return self.positions.shape[0]

    @property
    def num_draws(self) -> int:
        return self.positions.shape[1]

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_at >= 0

    @property
    def lag_window_start(self) -> int | None:
        window = self.config.record_window
        return None if window is None else int(window[0])

    @property
    def lag_window(self) -> np.ndarray | None:
        """Positions at every step of the recorded window (chain, W, param), if one was asked for."""
        window = self.config.record_window
        if window is None:
            return None
        start, length = window
        inside = (self.checkpoint_steps >= start) & (self.checkpoint_steps < start + length)
        return self.checkpoints[:, inside]

    def to_arviz(self) -> xr.DataTree:
        """The run as an ArviZ 1.x DataTree (see the module docstring for its groups)."""
        from arviz_base import from_dict

        groups = {
            "posterior": self.sites,
            "unconstrained_posterior": {"z": self.positions},
            "sample_stats": self.stats,
        }
        if self.observed:
            groups["observed_data"] = self.observed
        tree = from_dict(groups, dims={"z": ["param"]})
        tree["checkpoints"] = xr.Dataset(
            {"position": (("chain", "checkpoint", "param"), self.checkpoints)},
            coords={"step": ("checkpoint", self.checkpoint_steps)},
        )
        for name, dataset in self.groups.items():
            tree[name] = dataset
        tree.attrs[META_KEY] = json.dumps(
            {
                "sampler": self.sampler,
                "diverged_at": self.diverged_at.tolist(),
                "config": self.config.to_json() if self.config is not None else None,
                "timings": self.timings,
                "versions": self.versions,
                "extra_groups": sorted(self.groups),
            }
        )
        return tree

    @classmethod
    def from_arviz(cls, tree: xr.DataTree) -> "Run":
        """Rebuild a Run from the DataTree written by :meth:`to_arviz`."""
        if META_KEY not in tree.attrs:
            raise ValueError(
                "this DataTree was not written by fractalbayes (no 'fractalbayes' attribute); "
                "load ArviZ files of other tools with arviz_base directly"
            )
        meta = json.loads(tree.attrs[META_KEY])
        variables = lambda group: {  # noqa: E731
            k: np.asarray(v.values) for k, v in tree[group].to_dataset().data_vars.items()
        } if group in tree.children else {}
        checkpoints = tree["checkpoints"].to_dataset()
        return cls(
            sampler=meta["sampler"],
            positions=np.asarray(tree["unconstrained_posterior"]["z"].values),
            sites=variables("posterior"),
            stats=variables("sample_stats"),
            checkpoints=np.asarray(checkpoints["position"].values),
            checkpoint_steps=np.asarray(checkpoints["step"].values),
            diverged_at=np.asarray(meta["diverged_at"], dtype=np.int64),
            observed=variables("observed_data"),
            config=RunConfig.from_json(meta["config"]) if meta["config"] is not None else None,
            timings=meta["timings"],
            versions=meta["versions"],
            groups={g: tree[g].to_dataset() for g in meta.get("extra_groups", [])},
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the run as netCDF (h5netcdf) atomically: a temporary file, then a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            self.to_arviz().to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path


def load_run(path: str | os.PathLike) -> Run:
    """Read a run written by :meth:`Run.save`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no run file at {path}; write one with run.save(path)")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return Run.from_arviz(tree.load())
