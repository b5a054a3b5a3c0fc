"""One driver for every sampler: vmapped chains, steps inside `lax.scan`, chunked for progress.

Each step, every chain splits its own key into a minibatch key (indices by `randint`, gathered on
device) and a kernel key. A chain whose position or loss turns non-finite keeps its last finite
state and is flagged; the others carry on. Positions are recorded on a geometric grid of steps
(memory O(K d), not O(steps d)) for the diffusion analysis, plus every step of an optional window.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .checks import count
from .errors import ModelError, SamplerError
from .run import Run
from .samplers import SAMPLERS, Kernel
from .target import Target

PACKAGES = ("fractalbayes", "jax", "jaxlib", "numpyro", "blackjax", "optax", "arviz-base", "arviz-stats")
_COMPILED: dict[tuple, Any] = {}


class Carry(NamedTuple):
    states: Any
    keys: jax.Array
    step: jax.Array
    record: jax.Array
    """Positions at the recorded steps (K, chain, param)."""
    record_next: jax.Array
    diverged_at: jax.Array


def geometric_steps(total_steps: int, num: int, start: int = 0) -> np.ndarray:
    """Step 0, then about `num` - 1 distinct steps start + t with t geometric in [1, total - start]."""
    if total_steps == start:
        return np.unique([0, start])
    lags = np.unique(np.round(np.geomspace(1, total_steps - start, max(num - 1, 1))).astype(np.int64))
    return np.unique(np.concatenate([[0, start], start + lags]))


def _where_chain(mask: jax.Array, new: Any, old: Any) -> Any:
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


def _one_step(kernel: Kernel, target: Target, carry: Carry, hyper: dict, record_steps: jax.Array):
    split = jax.vmap(lambda k: jax.random.split(k, 3))(carry.keys)
    keys, batch_keys, step_keys = split[:, 0], split[:, 1], split[:, 2]
    if kernel.full_batch or target.batch_size == target.n_data:
        batch, batch_axis = target.data, None
    else:
        batch, batch_axis = jax.vmap(target.sample_batch)(batch_keys), 0
    new, info = jax.vmap(kernel.step, in_axes=(0, 0, batch_axis, None, None))(
        step_keys, carry.states, batch, carry.step, hyper
    )
    position = jax.vmap(kernel.position)(new)
    # A chain's coordinate sum is non-finite iff a coordinate is (NaN and inf propagate through +),
    # or if they are so huge (~1e38 / dim) that it overflows: a diverged chain all the same. Unlike
    # all(isfinite(.)), which XLA:CPU does not fuse, the sum fuses into the update (~4 % at 100k params).
    finite = jnp.isfinite(jnp.sum(position, axis=-1)) & jnp.isfinite(info["loss"])
    alive = carry.diverged_at < 0
    states = _where_chain(finite & alive, new, carry.states)
    diverged_at = jnp.where(alive & ~finite, carry.step, carry.diverged_at)
    info = info | {"diverging": info.get("diverging", False) | (diverged_at >= 0)}
    step = carry.step + 1
    position = jax.vmap(kernel.position)(states)

    last = record_steps.shape[0] - 1
    due = (carry.record_next <= last) & (record_steps[jnp.minimum(carry.record_next, last)] == step)
    record = jax.lax.cond(due, lambda r: r.at[carry.record_next].set(position), lambda r: r, carry.record)
    return Carry(states, keys, step, record, carry.record_next + due, diverged_at), info


@functools.cache
def _advance_fn(kernel: Kernel, target: Target):
    """jit of: `num_steps` steps as len(blocks) blocks of at most `block_steps` steps each, returning
    the positions and step info at the end of every block (scan outputs, so draws cost no copies).

    Both counts are traced, so one executable serves burn-in (outputs ignored) and sampling
    (block_steps = thin: block b ends on a draw when it ran its steps).
    """

    def advance(carry, info, hyper, record_steps, num_steps, block_steps, blocks):
        def block(carry_info, b):
            n = jnp.clip(num_steps - b * block_steps, 0, block_steps)
            body = lambda _, ci: _one_step(kernel, target, ci[0], hyper, record_steps)  # noqa: E731
            carry, info = jax.lax.fori_loop(0, n, body, carry_info)
            return (carry, info), (jax.vmap(kernel.position)(carry.states), info)

        (carry, info), outputs = jax.lax.scan(block, (carry, info), blocks)
        return carry, info, outputs

    return jax.jit(advance, donate_argnums=(0, 1))


@functools.cache
def _warmup_fn(kernel: Kernel):
    """jit of the vmapped warm-up, once per kernel (the number of steps is static)."""
    return jax.jit(jax.vmap(kernel.warmup, in_axes=(0, 0, None, None)), static_argnums=2)


@functools.cache
def _step_output_fn(kernel: Kernel, target: Target):
    """jit of one vmapped step's (positions, info), only ever shape-evaluated. Cached so that
    eval_shape hits jit's trace cache instead of re-tracing the model on every run (~0.1 s)."""

    def one(states, hyper):
        keys = jax.random.split(jax.random.key(0), jax.tree.leaves(states)[0].shape[0])
        new, info = jax.vmap(kernel.step, in_axes=(0, 0, None, None, None))(keys, states, target.data, 0, hyper)
        return jax.vmap(kernel.position)(new), info | {"diverging": jnp.zeros(info["loss"].shape, bool)}

    return jax.jit(one)


def _initial_info(kernel: Kernel, target: Target, states, hyper) -> dict:
    """Zeros shaped like one vmapped step's info (the loop carries the latest step's info)."""
    shapes = jax.eval_shape(_step_output_fn(kernel, target), states, hyper)[1]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _compiled(fn, *args) -> tuple[Any, float]:
    """AOT-compile `fn` for these argument shapes once per process; (executable, seconds spent)."""
    leaves, tree = jax.tree.flatten(args)
    key = (fn, tree, tuple((np.shape(x), str(jnp.result_type(x))) for x in leaves))
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    start = time.perf_counter()
    _COMPILED[key] = fn.lower(*args).compile()
    return _COMPILED[key], time.perf_counter() - start


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


def jsonable(value: Any) -> Any:
    """Config values as JSON types (arrays to lists, callables to their repr)."""
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


@functools.cache
def _constrain_fn(target: Target):
    """jit of the vmapped constraining map, once per target (not recompiled on every run)."""
    return jax.jit(jax.vmap(target.constrain))


def _constrain_draws(target: Target, positions: np.ndarray) -> dict[str, np.ndarray]:
    # `positions` is a (chain, draw) view of the contiguous (draw, chain) array the chunks were
    # concatenated into: flattening in that order is free, flattening (chain, draw) copies every draw.
    by_draw = positions.swapaxes(0, 1)
    sites = _constrain_fn(target)(by_draw.reshape(-1, positions.shape[-1]))
    return {k: np.asarray(v).reshape(by_draw.shape[:2] + v.shape[1:]).swapaxes(0, 1) for k, v in sites.items()}


def sample(
    target: Target,
    sampler: str = "sgld",
    *,
    num_chains: int = 4,
    num_samples: int = 1000,
    burn_in: int = 1000,
    thin: int = 1,
    seed: int = 0,
    init: Any = None,
    num_checkpoints: int = 100,
    checkpoint_start: int = 0,
    record_window: tuple[int, int] | None = None,
    progress: bool | None = None,
    **options: Any,
) -> Run:
    """Run `sampler` on `target` with vmapped chains and return a :class:`Run`.

    ``burn_in`` steps are taken first (for NUTS: window adaptation), then ``num_samples * thin``
    steps of which every ``thin``-th is kept. ``init`` is None/'prior' (prior draws), 'uniform'
    (U(-2, 2) in unconstrained space, NumPyro's default), a dict of sites or a flat array.
    Positions are recorded at step 0 and on a geometric grid of about ``num_checkpoints`` lags
    after ``checkpoint_start`` (e.g. ``burn_in``, to study late-time diffusion from there);
    ``record_window=(start, length)`` also records every step in [start, start + length).
    ``options`` go to the sampler (see ``fractalbayes.samplers``); unknown ones are an error.
    """
    if sampler == "fractal":
        from .fractal import sample_fractal

        if init is not None or record_window is not None:
            raise ModelError("the fractal sampler starts each basin at its SGD medoid: drop init / record_window")
        return sample_fractal(target, num_chains=num_chains, num_samples=num_samples, burn_in=burn_in, thin=thin,
                              seed=seed, progress=progress, **options)
    if sampler not in SAMPLERS:
        raise ModelError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS) + ['fractal']}")
    num_chains = count("num_chains", num_chains, 1)
    num_samples = count("num_samples", num_samples, 1)
    burn_in = count("burn_in", burn_in, 0)
    thin = count("thin", thin, 1)
    seed = count("seed", seed, 0)
    num_checkpoints = count("num_checkpoints", num_checkpoints, 2)
    kernel, hyper, resolved = SAMPLERS[sampler](target, dict(options))
    if kernel.warmup is not None and burn_in == 0:
        raise ModelError(f"{sampler} adapts its step size during burn-in: use burn_in >= 1 (e.g. 500)")

    main_steps = num_samples * thin
    loop_burn = 0 if kernel.warmup is not None else burn_in
    total_steps = loop_burn + main_steps
    checkpoint_start = count("checkpoint_start", checkpoint_start, 0)
    if checkpoint_start >= max(total_steps, 1):
        raise ModelError(f"checkpoint_start={checkpoint_start} is not before the last step {total_steps}")
    record_steps = geometric_steps(total_steps, num_checkpoints, checkpoint_start)
    if record_window is not None:
        start, length = (count("record_window start", record_window[0], 0), count("record_window length", record_window[1], 1))
        if start + length > total_steps + 1:
            raise ModelError(f"record_window {record_window} ends after the last step {total_steps}")
        record_steps = np.union1d(record_steps, np.arange(start, start + length))
    hyper = jax.tree.map(jnp.asarray, hyper | {"total_steps": total_steps})
    timings: dict[str, float] = {"compile_s": 0.0}
    start_time = time.perf_counter()

    init_key, warm_key, chain_key = jax.random.split(jax.random.key(seed), 3)
    positions0 = _initial_positions(target, init, num_chains, init_key)
    chain_keys = jax.random.split(chain_key, num_chains)
    states = jax.vmap(kernel.init, in_axes=(0, 0, None))(positions0, chain_keys, hyper)
    if kernel.warmup is not None:
        warm = _warmup_fn(kernel)
        tic = time.perf_counter()
        states = warm(jax.random.split(warm_key, num_chains), states, burn_in, hyper)
        jax.block_until_ready(states)
        timings["warmup_s"] = time.perf_counter() - tic
        positions0 = jax.vmap(kernel.position)(states)

    states = jax.tree.map(jnp.copy, states)  # distinct buffers: the carry is donated
    # about 20 progress updates; a power of two so that runs of similar length share executables
    draws_per_chunk = 1 << max(0, math.ceil(math.log2(max(1, min(num_samples, main_steps // 20 // thin)))))
    info = _initial_info(kernel, target, states, hyper)
    record = jnp.zeros((len(record_steps), num_chains, target.dim), positions0.dtype).at[0].set(positions0)
    carry = Carry(states, chain_keys, jnp.int32(0), record, jnp.int32(1), jnp.full(num_chains, -1, jnp.int32))
    record_dev = jnp.asarray(record_steps, jnp.int32)
    blocks = jnp.arange(draws_per_chunk, dtype=jnp.int32)
    show = progress if progress is not None else total_steps * num_chains >= 200_000
    bar = tqdm(total=total_steps, disable=not show, desc=f"{sampler} ({num_chains} chains)", unit="step")

    chunk = draws_per_chunk * thin
    # (steps, steps per block): burn-in in blocks of ceil(steps / blocks), then draws every `thin`
    calls = [(n, -(-n // draws_per_chunk)) for n in (min(chunk, loop_burn - s) for s in range(0, loop_burn, chunk))]
    calls += [(min(chunk, main_steps - s), thin) for s in range(0, main_steps, chunk)]
    # Every call has the same shapes: look the executable up once.
    advance, timings["compile_s"] = _compiled(_advance_fn(kernel, target), carry, info, hyper, record_dev,
                                              jnp.int32(0), jnp.int32(1), blocks)
    draw_chunks, info_chunks = [], []
    tic = time.perf_counter()
    for index, (num_steps, block_steps) in enumerate(calls):
        carry, info, (positions, infos) = advance(carry, info, hyper, record_dev, jnp.int32(num_steps),
                                                  jnp.int32(block_steps), blocks)
        if index >= len(calls) - math.ceil(main_steps / chunk):
            kept = num_steps // thin
            draw_chunks.append(np.asarray(positions)[:kept])
            info_chunks.append({k: np.asarray(v)[:kept] for k, v in infos.items()})
        bar.update(num_steps)
    bar.close()
    jax.block_until_ready(carry)
    timings["sampling_s"] = time.perf_counter() - tic

    positions = np.concatenate(draw_chunks).swapaxes(0, 1)
    stats = {k: np.concatenate([c[k] for c in info_chunks]).swapaxes(0, 1) for k in info_chunks[0]}
    run = Run(
        sampler=sampler,
        positions=positions,
        sites=_constrain_draws(target, positions),
        stats=stats,
        checkpoints=np.asarray(carry.record).swapaxes(0, 1),
        checkpoint_steps=record_steps,
        diverged_at=np.asarray(carry.diverged_at, np.int64),
        observed=target.observed_data(),
        config=jsonable(
            {
                "sampler": sampler,
                "options": resolved,
                "num_chains": num_chains,
                "num_samples": num_samples,
                "burn_in": burn_in,
                "thin": thin,
                "seed": seed,
                "init": init if init is None or isinstance(init, str) else "given",
                "record_window": record_window,
                "checkpoint_start": checkpoint_start,
                "batch_size": target.batch_size,
                "target": {"name": target.name, "n_data": target.n_data, "dim": target.dim,
                           "fingerprint": target.fingerprint},
            }
        ),
        versions=package_versions(),
        target=target,
    )
    run.timings = timings | {"total_s": time.perf_counter() - start_time}
    _report_divergence(run)
    return run


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
