"""``fb.sample``: validate every setting, dispatch through the sampler registry, return a `Run`.

Kernels run in the scan driver (:mod:`fractalbayes.engine.driver`); composite methods (registered
from the methods layer, e.g. the fractal sampler) receive the validated :class:`RunConfig` and
their resolved options. Every argument is checked before any work.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import IdentityTransform, IndependentTransform

from fractalbayes import checks
from fractalbayes import progress as progress_lines
from fractalbayes.engine.config import RunConfig, TargetInfo, package_versions
from fractalbayes.engine import driver
from fractalbayes.engine.devices import chain_mesh, describe
from fractalbayes.engine.driver import Carry, advance_fn, compiled, geometric_steps, warmup_fn
from fractalbayes.engine.run import Run
from fractalbayes.errors import ModelError, SamplerError
from fractalbayes.model.target import Target
from fractalbayes.samplers import registry
from fractalbayes.samplers.registry import SamplerSpec

count = checks.count

OPT_IN_STATS = ("grad_norm", "kinetic_energy")
"""Per-draw statistics computed only when asked for (``stats="all"`` or by name): each is a
reduction over all d coordinates at every step."""
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
"""JAX's PRNG implementations a run's step loop may use (the first is JAX's default)."""
LOOP_SETTINGS = (
    registry.Option("shared_batches", False, checks.kind(bool, want="True or False"),
                    "one minibatch per step for every chain (False: one per chain)"),
    registry.Option("prng_impl", PRNG_IMPLS[0], checks.choice(*PRNG_IMPLS),
                    "JAX's PRNG implementation for the step loop's keys"),
)
"""How the step loop draws its randomness: settings of fb.sample that fb.llc.estimate and suite
arms pass through, checked by these Options everywhere."""


def target_info(target: Target) -> TargetInfo:
    return TargetInfo(target.name, target.n_data, target.dim, target.fingerprint)


def run_config(
    target: Target,
    spec: SamplerSpec,
    options: dict[str, Any],
    *,
    num_chains: Any,
    num_samples: Any,
    burn_in: Any,
    thin: Any,
    seed: Any,
    init: Any = None,
    num_checkpoints: Any = None,
    checkpoint_start: Any = None,
    record_window: Any = None,
    shared_batches: Any = None,
    prng_impl: Any = None,
) -> RunConfig:
    """The validated run settings of a ``fb.sample`` call (options resolved by the spec)."""
    given = {"init": init, "num_checkpoints": num_checkpoints, "checkpoint_start": checkpoint_start,
             "record_window": record_window, "shared_batches": shared_batches, "prng_impl": prng_impl}
    refused = sorted(k for k, v in given.items() if v is not None and k not in spec.run_settings)
    if refused:
        raise ModelError(f"the {spec.name!r} sampler does not take {refused}: it sets them itself "
                         f"(it takes {sorted(s for s in spec.run_settings if s != 'progress')}); drop them")
    num_chains = count("num_chains", num_chains, 1)
    num_samples = count("num_samples", num_samples, 1)
    burn_in = count("burn_in", burn_in, 0)
    thin = count("thin", thin, 1)
    seed = checks.seed("seed", seed)
    num_checkpoints = count("num_checkpoints", 100 if num_checkpoints is None else num_checkpoints, 2)
    checkpoint_start = count("checkpoint_start", checkpoint_start or 0, 0)
    if spec.warmup and burn_in == 0:
        raise ModelError(f"{spec.name} adapts its step size during burn-in: use burn_in >= 1 (e.g. 500)")
    total_steps = (0 if spec.warmup else burn_in) + num_samples * thin
    if checkpoint_start >= max(total_steps, 1):
        raise ModelError(f"checkpoint_start={checkpoint_start} is not before the last step {total_steps}")
    if record_window is not None:
        if not isinstance(record_window, (list, tuple)) or len(record_window) != 2:
            raise ModelError(f"record_window must be (start, length), got {record_window!r}")
        record_window = (count("record_window start", record_window[0], 0),
                         count("record_window length", record_window[1], 1))
        if sum(record_window) > total_steps + 1:
            raise ModelError(f"record_window {record_window} ends after the last step {total_steps}")
    shared_batches, prng_impl = (checks.check(o.name, o.default if value is None else value, o.validate, ModelError)
                                 for o, value in zip(LOOP_SETTINGS, (shared_batches, prng_impl)))
    init_label = init if init is None or isinstance(init, str) else "given"
    return RunConfig(spec.name, spec.resolve(options), num_chains, num_samples, burn_in, thin, seed,
                     target.batch_size, target_info(target), init_label, num_checkpoints, checkpoint_start,
                     record_window, shared_batches=shared_batches, prng_impl=prng_impl)


def sample(
    target: Target,
    sampler: str = "sgld",
    *,
    num_chains: int = 4,
    num_samples: int = 1000,
    burn_in: int = 1000,
    thin: int = 1,
    seed: int | jax.Array = 0,
    init: Any = None,
    num_checkpoints: int | None = None,
    checkpoint_start: int | None = None,
    record_window: tuple[int, int] | None = None,
    progress: bool | None = None,
    stats: str | tuple[str, ...] | None = None,
    devices: int | list | None = None,
    shared_batches: bool | None = None,
    prng_impl: str | None = None,
    **options: Any,
) -> Run:
    """Run `sampler` on `target` with vmapped chains and return a :class:`Run`.

    ``burn_in`` steps are taken first (for NUTS: window adaptation), then ``num_samples * thin``
    steps of which every ``thin``-th is kept. ``init`` is None/'prior' (prior draws), 'uniform'
    (U(-2, 2) in unconstrained space, NumPyro's default), a dict of sites or a flat array.
    Positions are recorded at step 0 and on a geometric grid of about ``num_checkpoints`` (100) lags
    after ``checkpoint_start`` (e.g. ``burn_in``, to study late-time diffusion from there);
    ``record_window=(start, length)`` also records every step in [start, start + length).
    ``options`` go to the sampler (``fb.SAMPLERS[name].options`` lists them); unknown ones, and run
    settings a composite method sets itself, are an error before any work, and so are NumPyro's
    spellings (``num_warmup``, ``thinning``, ``rng_key``, ``progress_bar``: the error names ours).
    ``seed`` is an int or a JAX key (recorded as the int it maps to, see ``checks.seed``).
    ``progress``: True/False, or None for a bar only when chains x steps >= 200 000; the bar and
    the phase lines (compiling, NUTS warm-up and its duration) go through :mod:`fractalbayes.progress`
    (a tqdm bar on a terminal, ``fractalbayes`` logger lines otherwise).

    ``stats``: the kernel's per-step statistics kept per draw (``run.stats``): None keeps all but
    the O(d) reductions of ``OPT_IN_STATS`` (gradient norm, SGNHT's kinetic energy), ``"all"`` every
    one, or a tuple of names; XLA skips the work behind the others. ``diverging`` and ``frozen`` are always there. ``devices``: None runs
    every chain on the default device; an int k or a list of devices splits the chains evenly over
    them (:mod:`fractalbayes.engine.devices`), with the same draws as on one device.

    ``shared_batches=True`` gives every chain the same minibatch at each step (one gather instead of
    one per chain; the chains' noise stays independent, but their gradient errors are then
    correlated, so between-chain diagnostics such as R-hat see less spread). ``prng_impl`` is JAX's
    PRNG implementation for the step loop's keys (:data:`PRNG_IMPLS`; ``"rbg"`` is the native
    generator of accelerators, but slower than threefry on CPU, docs/performance.md); the initial
    positions and the warm-up keep threefry.
    """
    checks.refuse_numpyro_names(options)
    spec = registry.get(sampler)
    config = run_config(target, spec, options, num_chains=num_chains, num_samples=num_samples, burn_in=burn_in,
                        thin=thin, seed=seed, init=init, num_checkpoints=num_checkpoints,
                        checkpoint_start=checkpoint_start, record_window=record_window,
                        shared_batches=shared_batches, prng_impl=prng_impl)
    mesh = chain_mesh(devices, config.num_chains)
    if spec.run is not None:
        if stats is not None or devices is not None:
            raise ModelError(f"the {spec.name!r} method sets its own statistics and devices; drop stats= and devices=")
        return spec.run(target, config, progress)
    if mesh is not None:
        config = dataclasses.replace(config, devices=describe(mesh))
    return run_kernel(target, spec, config, init, progress, stats=stats, mesh=mesh)


def run_kernel(target: Target, spec: SamplerSpec, config: RunConfig, init: Any, progress: bool | None, *,
               stats: Any = None, mesh: Any = None) -> Run:
    """Drive a registered kernel with the validated settings (see :mod:`fractalbayes.engine.driver`)."""
    num_chains, num_samples, thin, burn_in = config.num_chains, config.num_samples, config.thin, config.burn_in
    main_steps = num_samples * thin
    loop_burn = 0 if spec.warmup else burn_in
    total_steps = loop_burn + main_steps
    kernel, hyper = spec.build(target, config.options, total_steps)
    record_steps = geometric_steps(total_steps, config.num_checkpoints, config.checkpoint_start)
    if config.record_window is not None:
        start, length = config.record_window
        record_steps = np.union1d(record_steps, np.arange(start, start + length))
    # A checkpoint at a step that is also a draw is read from the draws; only the others (step 0,
    # burn-in steps, steps between draws) are written by the loop (none after step 0 at thin 1).
    from_draws = (record_steps > loop_burn) & ((record_steps - loop_burn) % thin == 0)
    hyper = jax.tree.map(jnp.asarray, hyper)
    timings: dict[str, float] = {"compile_s": 0.0}
    start_time = time.perf_counter()

    init_key, warm_key, chain_key = jax.random.split(jax.random.key(config.seed), 3)
    if config.prng_impl != PRNG_IMPLS[0]:
        chain_key = jax.random.key(int(jax.random.randint(chain_key, (), 0, 2**31 - 1)), impl=config.prng_impl)
    positions0 = _initial_positions(target, init, num_chains, init_key)
    start, make_carry = _start_fns(kernel, target, int(np.sum(~from_draws)))
    states, chain_keys = start(positions0, chain_key, hyper)
    kept_stats = _stats_fields(stats, driver.info_fields(kernel, target, states, hyper))
    show = progress if progress is not None else total_steps * num_chains >= 200_000
    label, say = progress_lines.name(spec.name), progress_lines.logger.info if show else progress_lines.logger.debug
    if kernel.warmup is not None:
        warm = warmup_fn(kernel, target, mesh)
        say("%s: warm-up (%d steps x %d chains, compiled on first use) ...", label, burn_in, num_chains)
        tic = time.perf_counter()
        warm_keys, states = driver.shard_chains((jax.random.split(warm_key, num_chains), states), mesh)
        states = warm(warm_keys, states, burn_in, hyper)
        jax.block_until_ready(states)
        timings["warmup_s"] = time.perf_counter() - tic
        say("%s: warm-up done in %.1f s", label, timings["warmup_s"])

    # about 20 progress updates; a power of two so that runs of similar length share executables
    draws_per_chunk = 1 << max(0, math.ceil(math.log2(max(1, min(num_samples, main_steps // 20 // thin)))))
    carry = make_carry(states, chain_keys, chain_key)
    carry = driver.shard_carry(carry, mesh)
    record_dev = jnp.asarray(record_steps[~from_draws], jnp.int32)
    blocks = jnp.asarray(np.arange(draws_per_chunk, dtype=np.int32))

    chunk = draws_per_chunk * thin
    # (steps, steps per block): burn-in in blocks of ceil(steps / blocks), then draws every `thin`
    calls = [(n, -(-n // draws_per_chunk)) for n in (min(chunk, loop_burn - s) for s in range(0, loop_burn, chunk))]
    first_draw_call = len(calls)
    calls += [(min(chunk, main_steps - s), thin) for s in range(0, main_steps, chunk)]
    # Every call has the same shapes: look the executable up once.
    say("%s: compiling the %d-chain step loop ...", label, num_chains)
    advance = advance_fn(kernel, target, kept_stats, mesh, config.shared_batches,
                         single_step=thin == 1 and kernel.single_step_blocks)
    advance, timings["compile_s"] = compiled(target, advance, carry, hyper, record_dev, np.int32(0), np.int32(1),
                                              blocks)
    (say if timings["compile_s"] else progress_lines.logger.debug)("%s: step loop ready in %.1f s", label,
                                                                   timings["compile_s"])
    phases = [f"{label}: burn-in"] * first_draw_call + [f"{label}: sampling"] * (len(calls) - first_draw_call)
    bar = progress_lines.bar(total_steps, phases[0], progress=show)
    outputs = []
    tic = time.perf_counter()
    for index, (num_steps, block_steps) in enumerate(calls):
        # dispatch is asynchronous: without a progress bar the host queues every chunk at once
        carry, chunk_out = advance(carry, hyper, record_dev, np.int32(num_steps), np.int32(block_steps), blocks)
        if index >= first_draw_call:
            outputs.append((num_steps // thin, chunk_out))
        if show:
            jax.block_until_ready(carry.step)
        bar.set_description(phases[index])
        bar.update(num_steps)
    positions = np.empty((num_chains, num_samples, target.dim), positions0.dtype)
    stats_out = {k: np.empty((num_chains, num_samples), v.dtype) for k, v in outputs[0][1][1].items()}
    done = 0
    for kept, (draws, infos) in outputs:  # (block, chain, ...) chunks into (chain, draw, ...) arrays
        positions[:, done:done + kept] = np.asarray(draws)[:kept].swapaxes(0, 1)
        for k, v in infos.items():
            stats_out[k][:, done:done + kept] = np.asarray(v)[:kept].T
        done += kept
    bar.close()
    diverged_at = np.asarray(carry.diverged_at, np.int64)
    checkpoints = driver.CheckpointGather(np.asarray(carry.record).swapaxes(0, 1), positions, from_draws,
                                          (record_steps[from_draws] - loop_burn) // thin - 1)
    timings["sampling_s"] = time.perf_counter() - tic

    diverging, frozen = driver.divergence_flags(diverged_at, loop_burn, thin, num_samples, stats_out.get("diverging"))
    stats_out |= {"diverging": diverging, "frozen": frozen}
    run = Run(
        sampler=spec.name,
        positions=positions,
        sites=site_draws(target, positions),
        stats=stats_out,
        checkpoints=checkpoints,
        checkpoint_steps=record_steps,
        diverged_at=diverged_at,
        observed=target.memo("observed_data", target.observed_data),
        config=config,
        versions=dict(target.memo("versions", package_versions)),
        target=target,
    )
    run.timings = timings | {"total_s": time.perf_counter() - start_time}
    _report_divergence(run)
    return run



def _initial_positions(target: Target, init: Any, num_chains: int, key: jax.Array) -> jax.Array:
    if init is None or (isinstance(init, str) and init == "prior"):
        return jax.vmap(target.init_position)(jax.random.split(key, num_chains))
    if isinstance(init, str) and init == "uniform":
        return jax.random.uniform(key, (num_chains, target.dim), minval=-2.0, maxval=2.0)
    if isinstance(init, str):
        raise ModelError(f"init={init!r} is not 'prior' or 'uniform'; or pass sites or an array")
    flat = target.unconstrain(init) if isinstance(init, dict) else jnp.asarray(init, jnp.float32)
    if flat.shape == (target.dim,):
        return jnp.broadcast_to(flat, (num_chains, target.dim))
    if flat.shape == (num_chains, target.dim):
        return flat
    raise ModelError(
        f"init must be None/'prior', 'uniform', a dict of sites {list(target.latent_sites)}, or an "
        f"array of shape ({target.dim},) or ({num_chains}, {target.dim}); got shape {tuple(flat.shape)}"
    )


def _start_fns(kernel: Any, target: Target, num_records: int):
    """Two jitted functions (one dispatch each instead of a dozen eager ops per run):

    ``start(positions0, chain_key, hyper) -> (states, chain_keys)``: per-chain keys and initial
    states; ``carry(states, chain_keys, chain_key) -> Carry``: the loop's carry (with the shared
    minibatch key folded from ``chain_key``), with fresh copies of the states
    (the carry is donated) and the checkpoint buffer (K, chain, param) holding the positions at step 0.
    """

    def start(positions0, chain_key, hyper):
        chain_keys = jax.random.split(chain_key, positions0.shape[0])
        return jax.vmap(kernel.init, in_axes=(0, 0, None))(positions0, chain_keys, hyper), chain_keys

    def carry(states, chain_keys, chain_key):
        states = jax.tree.map(lambda x: jax.lax.optimization_barrier(x + jnp.zeros((), x.dtype)), states)
        positions = jax.vmap(kernel.position)(states)
        record = jnp.zeros((num_records,) + positions.shape, positions.dtype).at[0].set(positions)
        return Carry(states, chain_keys, jax.random.fold_in(chain_key, 1), jnp.int32(0), record,
                     jnp.int32(1), jnp.full(positions.shape[0], -1, jnp.int32))

    return target.memo(("start", kernel, num_records), lambda: (jax.jit(start), jax.jit(carry)))


def _constrain_fn(target: Target):
    """jit of the vmapped constraining map, once per target (not recompiled on every run)."""
    return target.memo("constrain", lambda: jax.jit(jax.vmap(target.constrain)))


def _is_identity(transform: Any) -> bool:
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, IdentityTransform)


def _identity_slices(target: Target) -> dict[str, tuple[int, int, tuple[int, ...]]] | None:
    """{site: (start, stop, shape)} when constraining is only cutting z into the latent sites (every
    transform the identity, no deterministic sites, each site a contiguous piece of z); else None."""

    def build():
        if target.deterministic_sites or not all(_is_identity(target._transforms[k]) for k in target.latent_sites):
            return None
        pieces = target._unravel(jnp.arange(target.dim, dtype=jnp.float32))
        slices = {}
        for name in target.latent_sites:
            index = np.rint(np.asarray(pieces[name])).astype(np.int64)
            start = int(index.min()) if index.size else 0
            if not np.array_equal(index.reshape(-1), np.arange(start, start + index.size)):
                return None
            slices[name] = (start, start + index.size, tuple(index.shape))
        return slices

    return target.memo("identity_slices", build)


class LazySites(Mapping):
    """Constrained sites computed from the draws the first time any of them is read.

    Reading ``run.sites`` costs one vmapped ``target.constrain`` over every draw; runs that never
    look at the named sites (the LLC estimator reads only the loss) never pay it. Pickles, copies
    and compares as the plain dict it computes.
    """

    def __init__(self, target: Target, positions: np.ndarray):
        self._target, self._positions, self._sites = target, positions, None

    def _value(self) -> dict[str, np.ndarray]:
        if self._sites is None:
            chains, draws, dim = self._positions.shape
            sites = _constrain_fn(self._target)(self._positions.reshape(-1, dim))
            self._sites = {k: np.asarray(v).reshape((chains, draws) + v.shape[1:]) for k, v in sites.items()}
            self._target = self._positions = None
        return self._sites

    def __getitem__(self, key: str) -> np.ndarray:
        return self._value()[key]

    def __iter__(self):
        return iter(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __eq__(self, other: object) -> bool:
        return dict(self) == other

    def __reduce__(self):
        return dict, (self._value(),)

    def __repr__(self) -> str:
        return f"LazySites({'computed' if self._sites is not None else 'not computed yet'})"


def site_draws(target: Target, positions: np.ndarray) -> Mapping[str, np.ndarray]:
    """The named NumPyro sites of (chain, draw, param) draws: views of ``positions`` when
    constraining is only cutting z into sites (e.g. every weight of an MLP with Normal priors),
    else :class:`LazySites` (constrained when first read)."""
    slices = _identity_slices(target)
    if slices is None:
        return LazySites(target, positions)
    lead = positions.shape[:2]
    return {name: positions[..., a:b].reshape(lead + shape) for name, (a, b, shape) in slices.items()}


def _stats_fields(stats: Any, available: tuple[str, ...]) -> tuple[str, ...]:
    """The kernel info fields kept per draw: ``stats`` None (all but ``OPT_IN_STATS``), "all", or
    names. The kernel's own ``diverging`` flag (NUTS) is always kept."""
    if stats is None:
        chosen = tuple(k for k in available if k not in OPT_IN_STATS)
    elif stats == "all":
        chosen = available
    else:
        names = (stats,) if isinstance(stats, str) else stats
        chosen = tuple(checks.check("stats", names, checks.sequence_of(checks.choice(*available))))
    return tuple(k for k in available if k in chosen or k == "diverging")


def _report_divergence(run: Run) -> None:
    diverged = run.diverged_at[run.diverged_at >= 0]
    if len(diverged) == run.num_chains:
        error = SamplerError(
            f"all {run.num_chains} chains diverged (non-finite position or loss; first at step "
            f"{diverged.min()}, last at step {diverged.max()}); try a smaller step size or learning "
            f"rate. The partial run is attached as .run"
        )
        error.run = run
        raise error
    if len(diverged):
        warnings.warn(
            f"{len(diverged)} of {run.num_chains} chains diverged (at steps {sorted(diverged.tolist())}) "
            f"and stopped updating; their draws after that repeat the last finite position",
            stacklevel=3,
        )
