"""A sampler run: draws, per-draw statistics, displacement checkpoints and the record of how.

`Run.to_arviz()` gives an ArviZ 1.x ``xarray.DataTree`` that ArviZ's tools take as they come
(``arviz_stats.summary/ess/rhat/loo/compare/bfmi``, ``arviz_plots.plot_trace_dist/plot_rank/
plot_ess/plot_energy/plot_ppc_dist``), with the groups

    posterior                 constrained NumPyro sites (chain, draw, *site dims)
    unconstrained_posterior   one variable per latent site with its unconstrained shape, NumPyro's
                              names (a simplex of K has K - 1 coordinates here); concatenated in
                              this order they are the flat position ``z`` the samplers move
    sample_stats              ArviZ's names: ``lp`` (log density of the draw: NUTS's own; for the
                              tempered SG samplers log rho(z) - nbeta L_n(z) - (gamma/2)||z - c||^2
                              evaluated at the draw, full data; SGD targets no density and has none),
                              NUTS's ``energy``, ``n_steps``, ``tree_depth``, ``acceptance_rate``;
                              every sampler's ``diverging`` (true at the draw whose steps left the
                              finite set, or a NUTS divergent transition) and ``frozen`` (true
                              from that draw on: the chain repeats its last finite state), ``loss``
                              (minibatch mean NLL at the step's start), ``grad_norm``, ``step_size``
    log_likelihood            per observed site, log p(y_i | x_i, z) elementwise (chain, draw,
                              *site dims), as NumPyro's ``log_likelihood``: on by default when
                              draws x observations <= LOG_LIKELIHOOD_LIMIT (1e7, 40 MB), else
                              opt-in with ``to_arviz(log_likelihood=True)``
    posterior_predictive      opt-in (``posterior_predictive=True``): one draw of every observed
                              site per posterior draw, on the training inputs
    observed_data             the observed sites
    constant_data             the model's other data arguments (e.g. ``x``), under its own names
    checkpoints               flat positions on the geometric step grid (chain, checkpoint, param)

and the run's config, timings, package versions and ``format_version`` as JSON in the root's
``fractalbayes`` attribute, so that `load_run(path)` gives back an identical Run. The groups that
need the model (``log_likelihood``, ``posterior_predictive``, the SG samplers' ``lp``) are computed
from ``run.target``; a loaded run (no target) keeps those its file holds.

Run files: format 1 (no ``format_version``, before 2026-11-30) stored ``z`` flat and a
``diverging`` that stayed true after a chain froze; `load_run` migrates it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fractalbayes.engine import arviz_groups
from fractalbayes.engine.config import RunConfig
from fractalbayes.errors import InputError, RunFileError

META_KEY = "fractalbayes"
FORMAT_VERSION = 2
"""Version of the run-file layout `Run.save` writes; 1 = files without one (migrated on load)."""
LOG_LIKELIHOOD_LIMIT = 10_000_000
"""Above this many draws x observations, ``log_likelihood`` (and the SG samplers' ``lp``) are opt-in."""
MODEL_GROUPS = ("log_likelihood", "posterior_predictive", "constant_data")
"""Groups computed from the model (kept in ``Run.groups`` when read from a file)."""


class Materialized:
    """A dataclass field whose value may be given as a zero-argument callable that makes it: the
    first read calls it and keeps the result. The value (or the callable) lives in the instance's
    ``__dict__`` under the field's own name, so ``Run(**run.__dict__)``, ``replace`` and pickling
    see the field as usual."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError(self.name)  # no class-level default: the field stays required
        value = obj.__dict__[self.name]
        if callable(value):
            value = obj.__dict__[self.name] = value()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


@dataclass
class Run:
    sampler: str
    positions: np.ndarray
    """Flat unconstrained draws, (chain, draw, param)."""
    sites: dict[str, np.ndarray]
    """Constrained NumPyro sites, (chain, draw, *shape)."""
    stats: dict[str, np.ndarray]
    """Per-draw statistics of the step that produced the draw, (chain, draw)."""
    checkpoints: np.ndarray = Materialized()
    """Positions at `checkpoint_steps` (chain, K, param); step 0 is the initial position. A sampler
    may pass a callable that assembles them (most are draws already in ``positions``): they are then
    built the first time they are read."""
    checkpoint_steps: np.ndarray
    diverged_at: np.ndarray
    """Step at which each chain turned non-finite and stopped updating; -1 if it never did."""
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    config: RunConfig | None = None
    """How the run was made (sampler, resolved options, run settings, target identity)."""
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    groups: dict[str, xr.Dataset] = field(default_factory=dict)
    """Extra ArviZ groups a sampler adds (e.g. the fractal sampler's ``basins``), and the model
    groups (``log_likelihood``, ``posterior_predictive``) of a run read from a file."""
    target: Any = field(default=None, repr=False, compare=False)
    """The Target sampled (not saved; None after `load_run`): needed for predictions."""
    unconstrained_sites: dict[str, tuple[int, ...]] | None = None
    """Latent sites and their unconstrained shapes, in the order they make up ``z`` (from the
    target when None)."""

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
    def healthy_chains(self) -> np.ndarray:
        """(chain,) True for chains that never diverged and whose draws and sites are all finite."""
        finite = np.isfinite(self.positions).all(axis=(1, 2))
        for value in self.sites.values():
            if np.issubdtype(np.asarray(value).dtype, np.inexact):
                finite &= np.isfinite(value).reshape(self.num_chains, -1).all(axis=1)
        return finite & ~self.diverged

    def select_chains(self, keep: np.ndarray) -> Run:
        """The same run restricted to the chains where ``keep`` (chain,) is True."""
        keep = np.asarray(keep, bool)
        index = np.flatnonzero(keep)
        groups = {name: (g.isel(chain=index) if "chain" in g.dims else g) for name, g in self.groups.items()}
        return replace(
            self,
            positions=self.positions[keep],
            sites={k: v[keep] for k, v in self.sites.items()},
            stats={k: v[keep] for k, v in self.stats.items()},
            checkpoints=self.checkpoints[keep],
            diverged_at=self.diverged_at[keep],
            groups=groups,
        )

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

    # --- ArviZ -------------------------------------------------------------------------------
    def site_layout(self) -> dict[str, tuple[int, ...]] | None:
        """Latent sites and unconstrained shapes in flat order (from the target; None if unknown)."""
        if self.unconstrained_sites is not None:
            return self.unconstrained_sites
        if self.target is None:
            return None
        import jax.numpy as jnp

        # Unravel the coordinate indices: each site's piece says where it sits in z.
        pieces = {k: np.asarray(v) for k, v in self.target._unravel(jnp.arange(self.target.dim, dtype=jnp.float32)).items()}
        order = sorted(pieces, key=lambda k: pieces[k].min() if pieces[k].size else -1)
        flat = np.concatenate([pieces[k].reshape(-1) for k in order]) if order else np.zeros(0)
        if not np.array_equal(flat, np.arange(self.target.dim)):
            return None
        return {k: tuple(pieces[k].shape) for k in order}

    def _unconstrained_variables(self) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
        layout = self.site_layout()
        if layout is None:
            return {"z": self.positions}, {"z": ["param"]}
        variables, start = {}, 0
        for name, shape in layout.items():
            size = math.prod(shape)
            variables[name] = self.positions[..., start:start + size].reshape(self.positions.shape[:2] + shape)
            start += size
        return variables, {}

    def _log_likelihood_wanted(self, log_likelihood: bool | None) -> bool:
        if log_likelihood is not None:
            return bool(log_likelihood)
        size = self.num_chains * self.num_draws * sum(np.size(v) for v in self.observed.values())
        return size <= LOG_LIKELIHOOD_LIMIT

    def _needs_target(self, what: str) -> None:
        if self.target is None:
            raise InputError(
                f"{what} needs the model, and this run has no target (runs read by load_run carry none): "
                f"set run.target = fb.from_numpyro(...) with the same model and data, or save the run with "
                f"the group in it"
            )

    def _from_model(self, compute, asked: bool | None, what: str) -> Any:
        """``compute(self)``; on the default path (not asked for) a model it fails on leaves the
        part out with a warning instead of failing the whole conversion."""
        if asked:
            return compute(self)
        try:
            return compute(self)
        except Exception as error:  # noqa: BLE001  (any model construct: the DataTree is useful without it)
            warnings.warn(f"{what} is left out of the DataTree ({type(error).__name__}: {error}); pass "
                          f"log_likelihood=True to raise the error, or False to skip it quietly", stacklevel=3)
            return None

    def to_arviz(self, *, log_likelihood: bool | None = None, posterior_predictive: bool = False) -> xr.DataTree:
        """The run as an ArviZ 1.x DataTree (see the module docstring for its groups).

        ``log_likelihood``: None (default) adds the group when draws x observations <=
        ``LOG_LIKELIHOOD_LIMIT``, True always, False never. ``posterior_predictive=True`` adds one
        predictive draw per posterior draw. Both need ``run.target`` unless the run was read from a
        file that holds them.
        """
        from arviz_base import from_dict

        want_ll = self._log_likelihood_wanted(log_likelihood)
        if (log_likelihood or posterior_predictive) and self.target is None:
            missing = [g for g, asked in (("log_likelihood", log_likelihood), ("posterior_predictive", posterior_predictive))
                       if asked and g not in self.groups]
            if missing:
                self._needs_target(f"the {missing[0]} group")
        unconstrained, dims = self._unconstrained_variables()
        stats = dict(self.stats)
        if "lp" not in stats and self.target is not None and want_ll:
            lp = self._from_model(arviz_groups.tempered_lp, log_likelihood, "sample_stats.lp")
            if lp is not None:
                stats["lp"] = lp
        groups = {"posterior": self.sites, "unconstrained_posterior": unconstrained, "sample_stats": stats}
        if self.observed:
            groups["observed_data"] = self.observed
        if "constant_data" not in self.groups and self.target is not None and (constant := self._constant_data()):
            groups["constant_data"] = constant
        if want_ll and "log_likelihood" not in self.groups and self.target is not None and self.observed:
            values = self._from_model(arviz_groups.log_likelihood, log_likelihood, "the log_likelihood group")
            if values is not None:
                groups["log_likelihood"] = values
        if posterior_predictive and "posterior_predictive" not in self.groups:
            groups["posterior_predictive"] = arviz_groups.posterior_predictive(self)
        tree = from_dict(groups, dims=dims)
        tree["checkpoints"] = xr.Dataset(
            {"position": (("chain", "checkpoint", "param"), self.checkpoints)},
            coords={"step": ("checkpoint", self.checkpoint_steps)},
        )
        for name, dataset in self.groups.items():
            if name == "log_likelihood" and not want_ll or name == "posterior_predictive" and not posterior_predictive:
                continue
            tree[name] = dataset
        tree.attrs[META_KEY] = json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "sampler": self.sampler,
                "diverged_at": self.diverged_at.tolist(),
                "config": self.config.to_json() if self.config is not None else None,
                "timings": self.timings,
                "versions": self.versions,
                "extra_groups": sorted(g for g in self.groups if g not in MODEL_GROUPS),
                "unconstrained_sites": None if dims else [[k, list(v)] for k, v in self.site_layout().items()],
            }
        )
        return tree

    def _constant_data(self) -> dict[str, np.ndarray]:
        """The model's data arguments that are not observations (e.g. the inputs), under the model's
        own parameter names."""
        observed = [np.asarray(v) for v in self.observed.values()]
        return {name: np.asarray(value) for name, value in self.target.data.items()
                if not any(o.shape == np.shape(value) and np.array_equal(o, np.asarray(value)) for o in observed)}

    @classmethod
    def from_arviz(cls, tree: xr.DataTree) -> Run:
        """Rebuild a Run from the DataTree written by :meth:`to_arviz` (format 1 or 2)."""
        if META_KEY not in tree.attrs:
            raise RunFileError(
                "this DataTree was not written by fractalbayes (no 'fractalbayes' attribute); "
                "load ArviZ files of other tools with arviz_base directly"
            )
        try:
            meta = json.loads(tree.attrs[META_KEY])
        except (TypeError, ValueError) as error:
            raise RunFileError(f"its 'fractalbayes' attribute is not valid JSON ({error}); the file is corrupt: "
                               f"write the run again with run.save(path)") from None
        version = meta.get("format_version", 1) if isinstance(meta, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RunFileError(f"format_version {version!r} is not a run-file version; the file is corrupt: "
                               f"write the run again with run.save(path)")
        if version > FORMAT_VERSION:
            raise RunFileError(f"run-file format version {version} is newer than this fractalbayes reads "
                               f"(up to {FORMAT_VERSION}): upgrade fractalbayes to load it")
        variables = lambda group: {
            k: np.asarray(v.values) for k, v in tree[group].to_dataset().data_vars.items()
        } if group in tree.children else {}
        checkpoints = tree["checkpoints"].to_dataset()
        diverged_at = np.asarray(meta["diverged_at"], dtype=np.int64)
        stats = variables("sample_stats")
        unconstrained = variables("unconstrained_posterior")
        layout = None
        if version == 1:
            positions = unconstrained["z"]
            stats = _migrate_diverging(stats, diverged_at)
        elif meta.get("unconstrained_sites") is None:
            positions = unconstrained["z"]
        else:
            layout = {name: tuple(shape) for name, shape in meta["unconstrained_sites"]}
            draws = next(iter(unconstrained.values())).shape[:2] if unconstrained else (0, 0)
            positions = np.concatenate([unconstrained[k].reshape(draws + (-1,)) for k in layout], axis=-1)
        groups = {g: tree[g].to_dataset() for g in meta.get("extra_groups", [])}
        groups |= {g: tree[g].to_dataset() for g in MODEL_GROUPS if g in tree.children}
        return cls(
            sampler=meta["sampler"],
            positions=positions,
            sites=variables("posterior"),
            stats=stats,
            checkpoints=np.asarray(checkpoints["position"].values),
            checkpoint_steps=np.asarray(checkpoints["step"].values),
            diverged_at=diverged_at,
            observed=variables("observed_data"),
            config=RunConfig.from_json(meta["config"]) if meta["config"] is not None else None,
            timings=meta["timings"],
            versions=meta["versions"],
            groups=groups,
            unconstrained_sites=layout,
        )

    def save(self, path: str | os.PathLike, *, log_likelihood: bool | None = None,
             posterior_predictive: bool = False) -> Path:
        """Write the run as netCDF (h5netcdf) atomically: a temporary file, then a rename.

        The groups are those of :meth:`to_arviz` with the same arguments (``log_likelihood`` by
        default below the size limit), so ArviZ tools can read the file directly.
        """
        path = Path(path)
        tree = self.to_arviz(log_likelihood=log_likelihood, posterior_predictive=posterior_predictive)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            tree.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path


def _migrate_diverging(stats: dict[str, np.ndarray], diverged_at: np.ndarray) -> dict[str, np.ndarray]:
    """Format 1 -> 2: the old ``diverging`` stayed true from a chain's first non-finite step on
    (OR-ed with NUTS's divergent transitions). ``frozen`` is its true tail on chains that diverged;
    ``diverging`` keeps the first frozen draw and the divergent transitions before it."""
    if "diverging" not in stats or "frozen" in stats:
        return stats
    old = stats["diverging"].astype(bool)
    tail = np.flip(np.logical_and.accumulate(np.flip(old, axis=1), axis=1), axis=1)
    frozen = tail & (diverged_at >= 0)[:, None]
    first = frozen & ~np.concatenate([np.zeros_like(frozen[:, :1]), frozen[:, :-1]], axis=1)
    return stats | {"diverging": (old & ~frozen) | first, "frozen": frozen}


def load_run(path: str | os.PathLike) -> Run:
    """Read a run written by :meth:`Run.save`; any unreadable file is a `RunFileError` naming it.

    Files of format 1 (no ``format_version``) are migrated; files of a newer format than this
    version writes are refused (upgrade fractalbayes).
    """
    path = Path(path)
    fix = "write it again with run.save(path), or point load_run at the right file"
    if not path.is_file():
        what = "is a folder, not a run file" if path.is_dir() else "does not exist"
        raise RunFileError(f"{path} {what}: {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with xr.open_datatree(path, engine="h5netcdf") as tree:
                tree = tree.load()
    except Exception as error:  # h5py, h5netcdf and xarray raise OSError, ValueError, KeyError, ...
        size = path.stat().st_size
        state = "is empty" if size == 0 else f"({size} bytes) is not a readable netCDF/HDF5 file (truncated or corrupt?)"
        raise RunFileError(f"{path} {state}: {type(error).__name__}: {error}; {fix}") from error
    try:
        return Run.from_arviz(tree)
    except RunFileError as error:
        raise RunFileError(f"{path}: {error}") from None
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise RunFileError(f"{path} lacks part of a run ({type(error).__name__}: {error}); the file is corrupt "
                           f"or not a fractalbayes run: {fix}") from error
