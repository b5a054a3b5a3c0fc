"""A NumPyro model, defined once, seen by every sampler as a flat unconstrained target.

`from_numpyro` traces the model once, finds the plate that holds the observations (the data plate)
and builds pure functions of a flat unconstrained position ``z`` (NumPyro's bijections, Jacobian
included) and a minibatch of the arrays passed to the model:

    log_prior(z)                      log rho(z), Jacobian of the constraining transform included
    log_lik(z, batch)   -> (B,)       log p(y_i | x_i, z) per example
    loss(z, batch)                    L_B(z) = -(1/B) sum_i log p(y_i | x_i, z)  (the paper's L_m)
    log_posterior_estimate(z, batch, nbeta)
                                      log rho(z) + nbeta * (1/B) sum_i log p(y_i | x_i, z)

With ``nbeta = n`` the last one is the usual unbiased minibatch estimate of the log posterior
(likelihood scaled by N/B, Welling & Teh 2011); smaller ``nbeta`` tempers the likelihood as in the
LLC estimator of Lau et al. (2023).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to

from fractalbayes.errors import ModelError

Batch = dict[str, jax.Array]


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, jax.Array))


@dataclass(frozen=True, eq=False)
class Target:
    """A model's flat unconstrained log density and per-example likelihood.

    Hashable by identity, so compiled samplers are cached per target. Build it with
    :func:`from_numpyro`.
    """

    model: Callable
    name: str
    n_data: int
    batch_size: int
    data_plate: str
    data: Batch
    """The arrays passed to the model that have one row per example, keyed by argument name."""
    latent_sites: tuple[str, ...]
    observed_sites: tuple[str, ...]
    deterministic_sites: tuple[str, ...]
    dim: int
    fingerprint: str
    _args: tuple = field(repr=False)
    _kwargs: dict = field(repr=False)
    _transforms: dict = field(repr=False)
    _unravel: Callable = field(repr=False)
    _memo: dict = field(default_factory=dict, init=False, repr=False)
    """Compiled functions built for this target (kernels, drivers), dropped with it."""

    def memo(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """``build()`` once per key for this target: compiled samplers live as long as their target."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    # --- running the model -------------------------------------------------------------------
    def _call(self, batch: Batch) -> tuple[tuple, dict]:
        args = tuple(batch.get(f"arg{i}", a) for i, a in enumerate(self._args))
        kwargs = {k: batch.get(k, v) for k, v in self._kwargs.items()}
        return args, kwargs

    def _trace(self, z: jax.Array, batch: Batch) -> dict:
        unconstrained = self._unravel(z)
        params = {k: self._transforms[k](u) for k, u in unconstrained.items()}
        model = handlers.substitute(handlers.seed(self.model, 0), data=params)
        args, kwargs = self._call(batch)
        return handlers.trace(model).get_trace(*args, **kwargs)

    @functools.cached_property
    def _one_row(self) -> Batch:
        # Concrete even when first read inside a trace (a cached tracer would leak into later jits).
        with jax.ensure_compile_time_eval():
            return {k: v[:1] for k, v in self.data.items()}

    # --- densities ---------------------------------------------------------------------------
    def _log_prior_from_trace(self, z: jax.Array, trace: dict) -> jax.Array:
        unconstrained = self._unravel(z)
        total = jnp.zeros(())
        for name in self.latent_sites:
            site = trace[name]
            total = total + jnp.sum(site["fn"].log_prob(site["value"]))
            transform = self._transforms[name]
            total = total + jnp.sum(
                transform.log_abs_det_jacobian(unconstrained[name], site["value"])
            )
        return total

    def _log_lik_from_trace(self, trace: dict) -> jax.Array:
        total = 0.0
        for name in self.observed_sites:
            site = trace[name]
            log_prob = site["fn"].log_prob(site["value"])
            dim = next(f.dim for f in site["cond_indep_stack"] if f.name == self.data_plate)
            batch_shape = jnp.broadcast_shapes(log_prob.shape, site["fn"].batch_shape)
            log_prob = jnp.moveaxis(jnp.broadcast_to(log_prob, batch_shape), dim, 0)
            total = total + log_prob.reshape(log_prob.shape[0], -1).sum(axis=1)
        return total

    def log_prior(self, z: jax.Array) -> jax.Array:
        """log rho(z) in unconstrained space, log |det J| of the constraining map included."""
        return self._log_prior_from_trace(z, self._trace(z, self._one_row))

    def log_lik(self, z: jax.Array, batch: Batch) -> jax.Array:
        """Per-example log-likelihood log p(y_i | x_i, z), shape (B,)."""
        return self._log_lik_from_trace(self._trace(z, batch))

    def loss(self, z: jax.Array, batch: Batch) -> jax.Array:
        """Mean negative log-likelihood on a batch: L_B(z) = -(1/B) sum_i log p(y_i | x_i, z)."""
        return -jnp.mean(self.log_lik(z, batch))

    def full_loss(self, z: jax.Array) -> jax.Array:
        """L_n(z), the mean negative log-likelihood over all n training examples."""
        return self.loss(z, self.data)

    def log_posterior_estimate(
        self, z: jax.Array, batch: Batch, nbeta: jax.Array | float
    ) -> tuple[jax.Array, jax.Array]:
        """log rho(z) - nbeta * L_B(z), and L_B(z) as auxiliary output (one model pass)."""
        trace = self._trace(z, batch)
        loss = -jnp.mean(self._log_lik_from_trace(trace))
        return self._log_prior_from_trace(z, trace) - nbeta * loss, loss

    def log_density(self, z: jax.Array) -> jax.Array:
        """Full-data log posterior density (up to a constant): log rho(z) + sum_i log p(y_i|x_i,z)."""
        return self.log_posterior_estimate(z, self.data, self.n_data)[0]

    # --- batches, positions, sites -----------------------------------------------------------
    def sample_batch(self, key: jax.Array, batch_size: int | None = None) -> Batch:
        """A minibatch drawn with replacement by `randint` (cheap inside a scan)."""
        size = self.batch_size if batch_size is None else batch_size
        if size == self.n_data:
            return self.data
        idx = jax.random.randint(key, (size,), 0, self.n_data)
        return {k: v[idx] for k, v in self.data.items()}

    def constrain(self, z: jax.Array) -> dict[str, jax.Array]:
        """Named NumPyro sites at z: latent sites and deterministic sites outside the data plate."""
        trace = self._trace(z, self.data)
        return {k: trace[k]["value"] for k in self.latent_sites + self.deterministic_sites}

    def unconstrain(self, sites: dict[str, Any]) -> jax.Array:
        """Flat unconstrained position from a dict of constrained latent site values."""
        missing = set(self.latent_sites) - set(sites)
        if missing:
            raise ModelError(
                f"position dict lacks latent site(s) {sorted(missing)}; give every one of "
                f"{list(self.latent_sites)}"
            )
        unconstrained = {k: self._transforms[k].inv(jnp.asarray(sites[k])) for k in self.latent_sites}
        return ravel_pytree(unconstrained)[0]

    def flat_position(self, value: Any, name: str = "position") -> jax.Array:
        """A checked flat unconstrained position (dim,) from a dict of constrained sites or a vector."""
        flat = self.unconstrain(value) if isinstance(value, dict) else jnp.asarray(value, jnp.float32)
        if flat.shape != (self.dim,):
            raise ModelError(
                f"{name} must be a flat unconstrained vector of length {self.dim} or a dict of the "
                f"sites {list(self.latent_sites)}, got shape {tuple(flat.shape)}"
            )
        if not bool(jnp.all(jnp.isfinite(flat))):
            raise ModelError(f"{name} has non-finite entries; pass a finite position")
        return flat

    def init_position(self, key: jax.Array) -> jax.Array:
        """A flat unconstrained draw from the prior."""
        model = handlers.seed(self.model, key)
        args, kwargs = self._call(self._one_row)
        trace = handlers.trace(model).get_trace(*args, **kwargs)
        return self.unconstrain({k: trace[k]["value"] for k in self.latent_sites})

    def predictive(self, z: jax.Array, inputs: Batch, key: jax.Array | None = None) -> dict:
        """Distributions of the observed sites at z for new inputs (model's prior predictive).

        ``inputs`` maps data-argument names (as in ``target.data``, e.g. ``"arg0"``) to new arrays;
        data arguments not given (the observations) are passed as None.
        """
        unconstrained = self._unravel(z)
        params = {k: self._transforms[k](u) for k, u in unconstrained.items()}
        batch = {k: inputs.get(k) for k in self.data}
        args, kwargs = self._call(batch)
        seed = jax.random.key(0) if key is None else key
        model = handlers.substitute(handlers.seed(self.model, seed), data=params)
        trace = handlers.trace(model).get_trace(*args, **kwargs)
        return {k: trace[k]["fn"] for k in self.observed_sites}

    def observed_data(self) -> dict[str, np.ndarray]:
        """Observed values of every observed site on the full data."""
        args, kwargs = self._call(self.data)
        trace = handlers.trace(handlers.seed(self.model, 0)).get_trace(*args, **kwargs)
        return {k: np.asarray(trace[k]["value"]) for k in self.observed_sites}

    def with_batch_size(self, batch_size: int | None) -> "Target":
        """The same target with another minibatch size (validated)."""
        size = _check_batch_size(batch_size, self.n_data)
        return Target(**{**_fields(self), "batch_size": size})


def _fields(target: Target) -> dict:
    return {f.name: getattr(target, f.name) for f in dataclasses.fields(Target) if f.init}


def _check_batch_size(batch_size: int | None, n: int) -> int:
    if batch_size is None:
        return n
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ModelError(f"batch_size must be an int in [1, {n}] or None (full batch), got {batch_size!r}")
    if not 0 < batch_size <= n:
        raise ModelError(
            f"batch_size={batch_size} is outside [1, n={n}]: use a positive batch no larger than "
            f"the number of examples, or batch_size=None for full batch"
        )
    return int(batch_size)


def _data_arrays(args: tuple, kwargs: dict) -> dict[str, Any]:
    named = {f"arg{i}": a for i, a in enumerate(args)} | dict(kwargs)
    return {k: v for k, v in named.items() if _is_array(v) and np.ndim(v) >= 1}


def _fingerprint(name: str, data: Batch) -> str:
    digest = hashlib.sha1(name.encode())
    for key in sorted(data):
        arr = np.ascontiguousarray(np.asarray(data[key]))
        digest.update(f"{key}{arr.shape}{arr.dtype}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()[:16]


def _find_data_plate(trace: dict, observed: list[str], data_plate: str | None, n_rows: int | None) -> str:
    plates_of = {
        name: {f.name: f.size for f in trace[name]["cond_indep_stack"]} for name in observed
    }
    common = set.intersection(*(set(p) for p in plates_of.values()))
    if data_plate is not None:
        all_plates = sorted({p for ps in plates_of.values() for p in ps})
        if data_plate not in common:
            raise ModelError(
                f"data_plate={data_plate!r} does not hold every observed site {observed}; plates "
                f"around the observations: {all_plates or 'none'}"
            )
        return data_plate
    if not common:
        outside = [n for n, p in plates_of.items() if not p]
        raise ModelError(
            f"no data plate: observed site(s) {outside or observed} are not inside a plate shared by "
            f"all observations; wrap them in `with numpyro.plate('data', x.shape[0]):`"
        )
    sizes = {p: next(iter(plates_of.values()))[p] for p in common}
    if len(common) > 1 and n_rows is not None:
        common = {p for p in common if sizes[p] == n_rows}
    if len(common) != 1:
        raise ModelError(
            f"ambiguous data plate: plates {sorted(common)} all hold every observed site; name the "
            f"one whose size is the number of examples with data_plate=..."
        )
    return common.pop()


def from_numpyro(
    model: Callable,
    *model_args: Any,
    batch_size: int | None = None,
    data_plate: str | None = None,
    **model_kwargs: Any,
) -> Target:
    """Build a :class:`Target` from a NumPyro model and the arguments it is called with.

    Every array argument with one row per example (leading dimension n, the data plate's size) is
    treated as data and sliced into minibatches; other arguments are passed unchanged. Constants
    that are arrays with a different leading dimension should be bound with ``functools.partial``.

    Raises :class:`~fractalbayes.ModelError` before any work when the model has a discrete latent
    site, no observed site, a missing or ambiguous data plate, latent sites inside the data plate,
    data arrays of different lengths, or a batch size outside [1, n].
    """
    arrays = _data_arrays(model_args, model_kwargs)
    lengths = {k: int(np.shape(v)[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k} has {n} rows" for k, n in lengths.items())
        raise ModelError(
            f"mismatched leading dimensions: {listing}; every data array passed to the model must "
            f"have one row per example (bind other arrays with functools.partial)"
        )
    name = getattr(model, "__name__", type(model).__name__)
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(*model_args, **model_kwargs)
    samples = {k: s for k, s in trace.items() if s["type"] == "sample"}
    observed = [k for k, s in samples.items() if s["is_observed"]]
    latent = [k for k, s in samples.items() if not s["is_observed"]]
    for k in latent:
        if samples[k]["fn"].support.is_discrete:
            raise ModelError(
                f"latent site {k!r} is discrete ({type(samples[k]['fn']).__name__}); gradient-based "
                f"samplers need continuous latents: marginalise it out or make it observed"
            )
    if not observed:
        raise ModelError(
            f"model {name!r} has no observed site: pass the observations (e.g. model(x, y)) so a "
            f"site gets obs=..."
        )
    n_rows = next(iter(lengths.values()), None)
    plate = _find_data_plate(trace, observed, data_plate, n_rows)
    n = next(f.size for f in trace[observed[0]]["cond_indep_stack"] if f.name == plate)
    local = [k for k in latent if any(f.name == plate for f in samples[k]["cond_indep_stack"])]
    if local:
        raise ModelError(
            f"latent site(s) {local} sit inside the data plate {plate!r}: per-example latents cannot "
            f"be minibatched; move them out of the plate or marginalise them"
        )
    data = {k: jnp.asarray(v) for k, v in arrays.items() if lengths[k] == n}
    if not data:
        raise ModelError(
            f"no array argument has one row per example (the data plate {plate!r} has size {n}); "
            f"pass the data as arrays with leading dimension {n}"
        )
    size = _check_batch_size(batch_size, n)
    deterministic = [
        k
        for k, s in trace.items()
        if s["type"] == "deterministic" and not any(f.name == plate for f in s["cond_indep_stack"])
    ]
    transforms = {k: biject_to(samples[k]["fn"].support) for k in latent}
    unconstrained = {k: transforms[k].inv(samples[k]["value"]) for k in latent}
    flat, unravel = ravel_pytree(unconstrained)
    target = Target(
        model=model,
        name=name,
        n_data=n,
        batch_size=size,
        data_plate=plate,
        data=data,
        latent_sites=tuple(latent),
        observed_sites=tuple(observed),
        deterministic_sites=tuple(deterministic),
        dim=int(flat.shape[0]),
        fingerprint=_fingerprint(name, data),
        _args=tuple(model_args),
        _kwargs=dict(model_kwargs),
        _transforms=transforms,
        _unravel=unravel,
    )
    _check_plate_follows_data(target)
    return target


def _check_plate_follows_data(target: Target) -> None:
    """The data plate must take its size from the data, or minibatches would be mislabelled."""
    if target.n_data < 2:
        return
    two = {k: v[:2] for k, v in target.data.items()}
    args, kwargs = target._call(two)
    try:
        trace = handlers.trace(handlers.seed(target.model, 0)).get_trace(*args, **kwargs)
        size = trace[target.data_plate]["args"][0]
    except (TypeError, ValueError) as error:
        size = f"?, failing with {type(error).__name__},"
    if size != 2:
        raise ModelError(
            f"the data plate {target.data_plate!r} keeps size {size} when the model gets 2 rows; "
            f"take its size from the data, e.g. numpyro.plate({target.data_plate!r}, x.shape[0])"
        )
