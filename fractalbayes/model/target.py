"""A NumPyro model, defined once, seen by every sampler as a flat unconstrained target.

`from_numpyro` checks the model's arguments at the door (:mod:`fractalbayes.model.inputs`), traces
the model once, finds the plate that holds the observations (the data plate) and builds pure
functions of a flat unconstrained position ``z`` and a minibatch of the model's data arguments.
Every density is NumPyro's own: the model runs under ``handlers.substitute`` with NumPyro's
unconstraining reparametrisation (the one ``numpyro.infer.util.potential_energy`` uses, which adds
each transform's log |det J| as a factor site), and every sample site contributes
``scale * fn.log_prob(value)`` exactly as in ``numpyro.infer.util.log_density``. So every handler
NumPyro honours is honoured here: ``scale``, ``mask`` and ``obs_mask``, ``factor``, ``condition``,
``deterministic``, constrained supports, plates with ``subsample_size``. The terms are split into

    log_lik(z, batch)   -> (B,)       per-example terms: observed sites and factors inside the
                                      data plate, log p(y_i | x_i, z)
    log_prior(z)                      every other term: latent sites' priors (wherever they sit),
                                      the Jacobians, observed sites and factors outside the plate
    loss(z, batch)                    L_B(z) = -(1/B) sum_i log p(y_i | x_i, z)  (the paper's L_m)
    log_posterior_estimate(z, batch, nbeta)
                                      log rho(z) + nbeta * (1/B) sum_i log p(y_i | x_i, z)

so that log_prior(z) + sum_i log_lik(z, data)_i = -potential_energy(z) (NumPyro). With ``nbeta = n``
the last one is the usual unbiased minibatch estimate of the log posterior (likelihood scaled by
N/B, Welling & Teh 2011); smaller ``nbeta`` tempers the likelihood as in the LLC estimator of Lau et
al. (2023); terms outside the data plate are never tempered.

Minibatches are the model's data arguments sliced by row. A model whose prior terms depend on the
data (a factor coupling all examples), whose latent shapes follow the number of examples (the
non-centred eight schools' ``theta_trans``), or with latents inside the data plate, works with full
batches only; asking for minibatches (``batch_size < n``) raises a ModelError naming the sites.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import _unconstrain_reparam

from fractalbayes.errors import ModelError
from fractalbayes.model import inputs

Batch = dict[str, jax.Array]


def _site_log_prob(site: dict) -> jax.Array:
    """``scale * fn.log_prob(value)`` as in ``numpyro.infer.util.compute_log_probs``."""
    fn, value = site["fn"], site["value"]
    log_prob = fn.log_prob(value, site["intermediates"]) if site["intermediates"] else fn.log_prob(value)
    if site["scale"] is not None:
        log_prob = site["scale"] * log_prob
    return log_prob


def _in_plate(site: dict, plate: str) -> bool:
    return any(frame.name == plate for frame in site["cond_indep_stack"])


def _is_factor(site: dict) -> bool:
    return bool(site["infer"].get("is_auxiliary", False))


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
    """The arrays passed to the model that have one row per example, keyed by the model's argument names."""
    latent_sites: tuple[str, ...]
    observed_sites: tuple[str, ...]
    """Observed sample sites inside the data plate (the observations; factors are not listed)."""
    deterministic_sites: tuple[str, ...]
    dim: int
    fingerprint: str
    likelihood_sites: tuple[str, ...] = ()
    """Every site whose terms are per-example: the observed sites and the factors in the data plate."""
    minibatch_blockers: dict[str, str] = field(default_factory=dict)
    """Why the model cannot be minibatched, by site (empty when it can)."""
    _names: tuple[str, ...] = field(default=(), repr=False)
    _args: tuple = field(default=(), repr=False)
    _kwargs: dict = field(default_factory=dict, repr=False)
    _transforms: dict = field(default_factory=dict, repr=False)
    _unravel: Callable | None = field(default=None, repr=False)
    _subsampled: bool = field(default=False, repr=False)
    _memo: dict = field(default_factory=dict, init=False, repr=False)
    """Compiled functions built for this target (kernels, drivers), dropped with it."""

    def memo(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """``build()`` once per key for this target: compiled samplers live as long as their target."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    # --- running the model -------------------------------------------------------------------
    def _call(self, batch: dict[str, Any]) -> tuple[tuple, dict]:
        args = tuple(batch.get(n, a) for n, a in zip(self._names, self._args))
        kwargs = {k: batch.get(k, v) for k, v in self._kwargs.items()}
        return args, kwargs

    def _seeded(self, batch: dict[str, Any], key: Any = 0) -> Callable:
        """The model seeded; a subsampled data plate gets the batch's rows as its indices."""
        model = handlers.seed(self.model, key)
        if self._subsampled:
            rows = next(np.shape(v)[0] for v in batch.values() if v is not None)
            model = handlers.substitute(model, data={self.data_plate: jnp.arange(rows)})
        return model

    def _run(self, model: Callable, batch: dict[str, Any]) -> dict:
        args, kwargs = self._call(batch)
        with warnings.catch_warnings():  # our batch size replaces a subsampled plate's own
            warnings.filterwarnings("ignore", message="subsample_size does not match")
            return handlers.trace(model).get_trace(*args, **kwargs)

    def _trace(self, z: jax.Array, batch: dict[str, Any]) -> dict:
        """The model's trace at unconstrained z, as ``potential_energy`` runs it (Jacobian sites added)."""
        unconstrained = self._unravel(z)
        model = handlers.substitute(self._seeded(batch),
                                    substitute_fn=functools.partial(_unconstrain_reparam, unconstrained))
        return self._run(model, batch)

    def _terms(self, trace: dict) -> tuple[dict[str, jax.Array], jax.Array]:
        """(global terms by site, per-example log-likelihood (B,)) of a trace."""
        globals_, per_example = {}, jnp.zeros(())
        for name, site in trace.items():
            if site["type"] != "sample":
                continue
            log_prob = _site_log_prob(site)
            if name in self.likelihood_sites:
                dim = next(f.dim for f in site["cond_indep_stack"] if f.name == self.data_plate)
                shape = jnp.broadcast_shapes(jnp.shape(log_prob), site["fn"].batch_shape)
                log_prob = jnp.moveaxis(jnp.broadcast_to(log_prob, shape), dim, 0)
                per_example = per_example + log_prob.reshape(log_prob.shape[0], -1).sum(axis=1)
            else:
                globals_[name] = jnp.sum(log_prob)
        return globals_, per_example

    @functools.cached_property
    def _small(self) -> Batch:
        """A few rows (2, or 1 when n <= 2): enough to evaluate terms that do not depend on the data."""
        # Concrete even when first read inside a trace (a cached tracer would leak into later jits).
        with jax.ensure_compile_time_eval():
            rows = 2 if self.n_data > 2 else 1
            return {k: v[:rows] for k, v in self.data.items()}

    # --- densities ---------------------------------------------------------------------------
    def global_terms(self, z: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """The prior-side terms (everything outside the likelihood) by site, on the given batch."""
        return self._terms(self._trace(z, batch))[0]

    def log_prior(self, z: jax.Array) -> jax.Array:
        """log rho(z) in unconstrained space: every term outside the likelihood, Jacobians included."""
        batch = self.data if self.minibatch_blockers else self._small
        return sum(self.global_terms(z, batch).values(), jnp.zeros(()))

    def log_lik(self, z: jax.Array, batch: Batch) -> jax.Array:
        """Per-example log-likelihood log p(y_i | x_i, z) (scaled as the model's handlers say), shape (B,)."""
        return self._terms(self._trace(z, batch))[1]

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
        globals_, per_example = self._terms(self._trace(z, batch))
        loss = -jnp.mean(per_example)
        return sum(globals_.values(), jnp.zeros(())) - nbeta * loss, loss

    def log_density(self, z: jax.Array) -> jax.Array:
        """Full-data log density: log rho(z) + sum_i log p(y_i|x_i,z) = -potential_energy(z) (NumPyro)."""
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
        """A flat unconstrained draw from the prior (the model traced on the full data)."""
        trace = self._run(self._seeded(self.data, key), self.data)
        return self.unconstrain({k: trace[k]["value"] for k in self.latent_sites})

    def predictive(self, z: jax.Array, inputs: Batch, key: jax.Array | None = None) -> dict:
        """Distributions of the observed sites at z for new inputs (model's prior predictive).

        ``inputs`` maps data-argument names (as in ``target.data``, e.g. ``"x"``) to new arrays;
        data arguments not given (the observations) are passed as None.
        """
        unconstrained = self._unravel(z)
        params = {k: self._transforms[k](u) for k, u in unconstrained.items()}
        batch = {k: inputs.get(k) for k in self.data}
        seed = jax.random.key(0) if key is None else key
        trace = self._run(handlers.substitute(self._seeded(batch, seed), data=params), batch)
        return {k: trace[k]["fn"] for k in self.observed_sites}

    def observed_data(self) -> dict[str, np.ndarray]:
        """Observed values of every observed site on the full data."""
        trace = self._run(self._seeded(self.data), self.data)
        return {k: np.asarray(trace[k]["value"]) for k in self.observed_sites}

    def with_batch_size(self, batch_size: int | None) -> "Target":
        """The same target with another minibatch size (validated)."""
        size = _check_batch_size(batch_size, self.n_data)
        _refuse_minibatches(self, size)
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


def _refuse_minibatches(target: Target, size: int) -> None:
    """Minibatches of a model that cannot be minibatched are an error naming every site and why."""
    if size == target.n_data or not target.minibatch_blockers:
        return
    reasons = "; ".join(f"{site}: {why}" for site, why in target.minibatch_blockers.items())
    raise ModelError(
        f"batch_size={size} asks for minibatches of {target.n_data} examples, but model {target.name!r} "
        f"cannot be minibatched: {reasons}. Use batch_size=None (full-batch gradients work with every "
        f"sampler), or restructure the model so that only the data plate sees the examples"
    )


def _fingerprint(name: str, data: Batch) -> str:
    digest = hashlib.sha1(name.encode())
    for key in sorted(data):
        arr = np.ascontiguousarray(np.asarray(data[key]))
        digest.update(f"{key}{arr.shape}{arr.dtype}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()[:16]


def _find_data_plate(trace: dict, observed: list[str], data_plate: str | None, n_rows: int | None) -> str:
    """The plate shared by every observation that sits in a plate (observations outside all plates are
    global terms); factors count only when the model has no other observation."""
    real = [k for k in observed if not _is_factor(trace[k])] or observed
    plates_of = {name: {f.name for f in trace[name]["cond_indep_stack"]} for name in real}
    plated = {name: p for name, p in plates_of.items() if p}
    if data_plate is not None:
        all_plates = sorted({p for ps in plates_of.values() for p in ps})
        if not plated or any(data_plate not in p for p in plated.values()):
            raise ModelError(
                f"data_plate={data_plate!r} does not hold every observed site {list(plated) or real}; "
                f"plates around the observations: {all_plates or 'none'}"
            )
        return data_plate
    common = set.intersection(*plated.values()) if plated else set()
    if not common:
        outside = [n for n in real if not plates_of[n]]
        raise ModelError(
            f"no data plate: observed site(s) {outside or real} are not inside a plate shared by "
            f"all observations; wrap them in `with numpyro.plate('data', x.shape[0]):`"
        )
    if len(common) > 1 and n_rows is not None:
        common = {p for p in common if trace[p]["args"][0] == n_rows}
    if len(common) != 1:
        raise ModelError(
            f"ambiguous data plate: plates {sorted(common)} all hold every observed site; name the "
            f"one whose size is the number of examples with data_plate=..."
        )
    return common.pop()


def _check_plates(trace: dict, plate: str) -> int | None:
    """The data plate's own subsample size (None if it has none); other subsampled plates are refused."""
    for name, site in trace.items():
        if site["type"] != "plate" or site["args"][1] is None or site["args"][1] == site["args"][0]:
            continue
        if name != plate:
            raise ModelError(
                f"plate {name!r} subsamples ({site['args'][1]} of {site['args'][0]}) but is not the data "
                f"plate {plate!r}: only the data plate can be minibatched; drop its subsample_size"
            )
    size, subsample = trace[plate]["args"]
    return None if subsample is None or subsample == size else int(subsample)


def _dependent_outputs(closed: Any) -> list[bool]:
    """For each output of a jaxpr, whether it depends on any input (conservatively, through every equation)."""
    jaxpr = closed.jaxpr
    tainted = set(jaxpr.invars)
    for eqn in jaxpr.eqns:
        if any(isinstance(v, jax_core.Var) and v in tainted for v in eqn.invars):
            tainted.update(eqn.outvars)
    return [isinstance(v, jax_core.Var) and v in tainted for v in jaxpr.outvars]


def _minibatch_blockers(target: Target, trace: dict) -> dict[str, str]:
    """Sites that make minibatches wrong, with the reason: latents in the data plate, latent shapes that
    follow the number of examples, prior-side terms that depend on the data's values or size."""
    plate, n = target.data_plate, target.n_data
    blockers = {
        f"site {k!r}": f"latent inside the data plate {plate!r} (one value per example)"
        for k in target.latent_sites if _in_plate(trace[k], plate)
    }
    if n < 2:
        return blockers
    small = target._small
    rows = next(iter(small.values())).shape[0]
    try:
        small_trace = target._run(target._seeded(small), small)
    except Exception as error:  # the user's model, on fewer rows: any failure means "no minibatches"
        return blockers | {f"plate {plate!r}": f"the model fails when given {rows} of the {n} rows "
                                                f"({type(error).__name__}: {error}); a data plate must take "
                                                f"its size from the data, e.g. numpyro.plate({plate!r}, x.shape[0])"}
    size = small_trace[plate]["args"][0] if plate in small_trace else None
    if size != rows:
        return blockers | {f"plate {plate!r}": f"keeps size {size} when the model gets {rows} rows; take "
                                                f"its size from the data, e.g. numpyro.plate({plate!r}, x.shape[0])"}
    for k in target.latent_sites:
        full, part = tuple(np.shape(trace[k]["value"])), tuple(np.shape(small_trace[k]["value"]))
        if full != part:
            blockers.setdefault(f"site {k!r}", f"its shape follows the number of examples ({full} with all "
                                               f"{n} rows, {part} with {rows})")
    if blockers:
        return blockers
    z = target.init_position(jax.random.key(0))
    names = list(target.global_terms(z, target.data))
    closed = jax.make_jaxpr(lambda batch: tuple(target.global_terms(z, batch)[k] for k in names))(target.data)
    on_full, on_small = target.global_terms(z, target.data), target.global_terms(z, small)
    for k, depends in zip(names, _dependent_outputs(closed)):
        what = "factor" if k in trace and _is_factor(trace[k]) else "site"
        if depends:
            blockers[f"{what} {k!r}"] = "outside the data plate but its log density depends on the data's values"
        elif not np.allclose(on_full[k], on_small[k], rtol=1e-5, atol=1e-5):
            blockers[f"{what} {k!r}"] = "outside the data plate but its log density depends on the number of rows"
    return blockers


def from_numpyro(
    model: Callable,
    *model_args: Any,
    batch_size: int | None = None,
    data_plate: str | None = None,
    allow_nonfinite: bool = False,
    **model_kwargs: Any,
) -> Target:
    """Build a :class:`Target` from a NumPyro model and the arguments it is called with.

    Every array argument with one row per example (leading dimension n, the data plate's size) is
    treated as data, keyed by the model's parameter name, and sliced into minibatches; other
    arguments are passed unchanged. Constants that are arrays with a different leading dimension
    should be bound with ``functools.partial``. ``batch_size=None`` is the full batch, or the data
    plate's own ``subsample_size`` when the model gives one.

    Raises :class:`~fractalbayes.ModelError` before any work when an array argument is empty, ragged
    or holds NaN/inf (``allow_nonfinite=True`` lets through values the model masks), when the call
    does not fit the model's signature, the model has a ``numpyro.param`` site or a discrete latent
    site, no observed site, a
    missing or ambiguous data plate, a subsampled plate other than the data plate, data arrays of
    different lengths, a batch size outside [1, n], or minibatches of a model that cannot be
    minibatched (:attr:`Target.minibatch_blockers` says why).
    """
    names = inputs.argument_names(model, model_args, model_kwargs)
    named = dict(zip(names, model_args)) | dict(model_kwargs)
    inputs.check_arrays(named, allow_nonfinite=allow_nonfinite)
    arrays = inputs.data_arrays(named)
    inputs.check_lengths(arrays)
    name = inputs.model_name(model)
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(*model_args, **model_kwargs)
    params = [k for k, s in trace.items() if s["type"] == "param"]
    if params:
        raise ModelError(
            f"site(s) {params} are numpyro.param (point parameters fitted by SVI): a sampler needs every "
            f"parameter as numpyro.sample with a prior, or bind fixed values with functools.partial"
        )
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
    for k in observed:
        if not _is_factor(samples[k]):
            inputs.check_value(f"observed site {k!r}", samples[k]["value"], allow_nonfinite=allow_nonfinite,
                               fix=inputs.NONFINITE_FIX)
    n_rows = next((int(np.shape(v)[0]) for v in arrays.values()), None)
    plate = _find_data_plate(trace, observed, data_plate, n_rows)
    model_subsample = _check_plates(trace, plate)
    n = int(trace[plate]["args"][0])
    data = {k: jnp.asarray(v) for k, v in arrays.items() if np.shape(v)[0] == n}
    if not data:
        raise ModelError(
            f"no array argument has one row per example (the data plate {plate!r} has size {n}); "
            f"pass the data as arrays with leading dimension {n}"
        )
    size = _check_batch_size(model_subsample if batch_size is None else batch_size, n)
    in_plate = [k for k in observed if _in_plate(samples[k], plate)]
    deterministic = [
        k for k, s in trace.items() if s["type"] == "deterministic" and not _in_plate(s, plate)
    ]
    transforms = {k: biject_to(samples[k]["fn"].support) for k in latent}
    flat, unravel = ravel_pytree({k: transforms[k].inv(samples[k]["value"]) for k in latent})
    target = Target(
        model=model,
        name=name,
        n_data=n,
        batch_size=size,
        data_plate=plate,
        data=data,
        latent_sites=tuple(latent),
        observed_sites=tuple(k for k in in_plate if not _is_factor(samples[k])),
        deterministic_sites=tuple(deterministic),
        dim=int(flat.shape[0]),
        fingerprint=_fingerprint(name, data),
        likelihood_sites=tuple(in_plate),
        _names=names,
        _args=tuple(model_args),
        _kwargs=dict(model_kwargs),
        _transforms=transforms,
        _unravel=unravel,
        _subsampled=model_subsample is not None,
    )
    target = dataclasses.replace(target, minibatch_blockers=_minibatch_blockers(target, trace))
    _refuse_minibatches(target, size)
    return target
