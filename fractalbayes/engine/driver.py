"""The scan driver: vmapped chains, steps inside `lax.scan`, chunked for progress, one executable.

Each step, every chain splits its own key into a minibatch key (indices by `randint`, gathered on
device) and a kernel key. A chain whose position or loss turns non-finite keeps its last finite
state and its step is recorded in ``diverged_at``; the others carry on. Positions are recorded on a
geometric grid of steps (memory O(K d), not O(steps d)) for the diffusion analysis, plus every step
of an optional window.

`advance(carry, hyper, record_steps, num_steps, block_steps, blocks)` is one jitted `lax.scan` over
a fixed number of blocks (draws per chunk), each block a `fori_loop` of at most `block_steps` steps
with a traced trip count: sampling calls use `block_steps = thin`, so each block's scan outputs (the
positions and the chosen fields of the last step's info) are a draw; burn-in calls use the same
executable and ignore the outputs. Only the info fields asked for (``stats``) leave the step, so
XLA drops the work behind the others (e.g. the gradient norm); the per-draw ``diverging`` and
``frozen`` flags are derived from ``diverged_at`` after sampling (:func:`divergence_flags`).

With a 1-D device mesh the same function runs under `jax.shard_map` with the chain axis split over
the devices (every chain's arithmetic is unchanged, so the draws equal the single-device ones).
Compiled functions are memoised on the target, keyed by kernel, stats and mesh.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fractalbayes.engine.devices import CHAIN_AXIS
from fractalbayes.model.target import Target
from fractalbayes.samplers.base import Kernel


class Carry(NamedTuple):
    states: Any
    keys: jax.Array
    batch_key: jax.Array
    """One key for every chain's minibatch (used only with shared batches)."""
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


def _one_step(kernel: Kernel, target: Target, carry: Carry, hyper: Any, record_steps: jax.Array,
              shared_batches: bool):
    split = jax.vmap(lambda k: jax.random.split(k, 3))(carry.keys)
    keys, batch_keys, step_keys = split[:, 0], split[:, 1], split[:, 2]
    batch_key = carry.batch_key
    if kernel.full_batch or target.batch_size == target.n_data:
        batch, batch_axis = target.data, None
    elif shared_batches:
        batch_key, shared_key = jax.random.split(batch_key)
        batch, batch_axis = target.sample_batch(shared_key), None
    else:
        batch, batch_axis = jax.vmap(target.sample_batch)(batch_keys), 0
    new, info = jax.vmap(kernel.step, in_axes=(0, 0, batch_axis, None, None))(
        step_keys, carry.states, batch, carry.step, hyper
    )
    position = jax.vmap(kernel.position)(new)
    # A chain's coordinate sum is non-finite iff a coordinate is (NaN and inf propagate through +),
    # or if they are so huge (~1e38 / dim) that it overflows: a diverged chain all the same. Unlike
    # all(isfinite(.)), which XLA:CPU does not fuse, the sum fuses into the update (~4 % at 100k params).
    finite = jnp.isfinite(jnp.sum(position, axis=-1)) & jnp.isfinite(info.loss)
    alive = carry.diverged_at < 0
    states = _where_chain(finite & alive, new, carry.states)
    diverged_at = jnp.where(alive & ~finite, carry.step, carry.diverged_at)
    step = carry.step + 1
    position = jax.vmap(kernel.position)(states)

    last = record_steps.shape[0] - 1
    if last == 0:  # only step 0, written before the loop: no conditional in the step
        return Carry(states, keys, batch_key, step, carry.record, carry.record_next, diverged_at), info
    due = (carry.record_next <= last) & (record_steps[jnp.minimum(carry.record_next, last)] == step)
    record = jax.lax.cond(due, lambda r: r.at[carry.record_next].set(position), lambda r: r, carry.record)
    return Carry(states, keys, batch_key, step, record, carry.record_next + due, diverged_at), info


def info_fields(kernel: Kernel, target: Target, states: Any, hyper: Any) -> tuple[str, ...]:
    """The names of the per-step info fields the kernel reports (traced once per kernel)."""
    return target.memo(("info_fields", kernel), lambda: tuple(_info_shapes(kernel, target, states, hyper)))


def _info_shapes(kernel: Kernel, target: Target, states: Any, hyper: Any) -> dict:
    """Shapes of one vmapped step's info (evaluated abstractly: nothing runs)."""
    chains = jax.tree.leaves(states)[0].shape[0]

    def one(states, hyper):
        keys = jax.random.split(jax.random.key(0), chains)
        return jax.vmap(kernel.step, in_axes=(0, 0, None, None, None))(keys, states, target.data, 0, hyper)[1]

    return jax.eval_shape(one, states, hyper)._asdict()


def advance_fn(kernel: Kernel, target: Target, stats: tuple[str, ...], mesh: Mesh | None = None,
               shared_batches: bool = False, single_step: bool = False):
    """The jitted advance for this kernel, the info fields kept per draw, the device mesh, the
    minibatch sharing and whether every block is one step (thin 1)."""
    return target.memo(("advance", kernel, stats, mesh, shared_batches, single_step),
                       lambda: _advance_fn(kernel, target, stats, mesh, shared_batches, single_step))


def _advance_fn(kernel: Kernel, target: Target, stats: tuple[str, ...], mesh: Mesh | None, shared_batches: bool,
                single_step: bool):
    """jit of: `num_steps` steps as len(blocks) blocks of at most `block_steps` steps each, returning
    the positions and the `stats` fields of the step info at the end of every block (scan outputs,
    so draws cost no copies).

    Both counts are traced, so one executable serves burn-in (outputs ignored) and sampling
    (block_steps = thin: block b ends on a draw when it ran its steps). With ``single_step`` (thin
    1, where every call has block_steps = 1, and a kernel that asks for it: ``Kernel.single_step_blocks``)
    a block is one step under a `lax.cond` instead of a `fori_loop` nested in the scan body.
    """

    def advance(carry, hyper, record_steps, num_steps, block_steps, blocks):
        shapes = _info_shapes(kernel, target, carry.states, hyper)
        info0 = {k: jnp.zeros(shapes[k].shape, shapes[k].dtype) for k in stats}

        def body(_, carry_info):
            carry, info = _one_step(kernel, target, carry_info[0], hyper, record_steps, shared_batches)
            return carry, {k: getattr(info, k) for k in stats}

        def block(carry, b):
            n = jnp.clip(num_steps - b * block_steps, 0, block_steps)
            if single_step:
                carry, info = jax.lax.cond(n > 0, functools.partial(body, 0), lambda ci: ci, (carry, info0))
            else:
                carry, info = jax.lax.fori_loop(0, n, body, (carry, info0))
            return carry, (jax.vmap(kernel.position)(carry.states), info)

        return jax.lax.scan(block, carry, blocks)

    if mesh is not None:
        chain, replicated = P(CHAIN_AXIS), P()
        carry_spec = Carry(chain, chain, replicated, replicated, P(None, CHAIN_AXIS), replicated, chain)
        advance = jax.shard_map(
            advance, mesh=mesh,
            in_specs=(carry_spec, replicated, replicated, replicated, replicated, replicated),
            out_specs=(carry_spec, (P(None, CHAIN_AXIS), P(None, CHAIN_AXIS))),
            # the step counter and record index are computed alike on every device; the per-chain
            # zeros that start the loop's info become per-device values inside it
            check_vma=False,
        )
    return jax.jit(advance, donate_argnums=0)


def shard_chains(tree: Any, mesh: Mesh | None) -> Any:
    """Place every leaf's leading (chain) axis over the mesh (a no-op without one)."""
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, P(CHAIN_AXIS)))


def shard_carry(carry: Carry, mesh: Mesh | None) -> Carry:
    """Place the carry's chain axis over the mesh (a no-op without one)."""
    if mesh is None:
        return carry
    chain, replicated = NamedSharding(mesh, P(CHAIN_AXIS)), NamedSharding(mesh, P())
    record = NamedSharding(mesh, P(None, CHAIN_AXIS))
    return Carry(jax.device_put(carry.states, chain), jax.device_put(carry.keys, chain),
                 jax.device_put(carry.batch_key, replicated), jax.device_put(carry.step, replicated),
                 jax.device_put(carry.record, record), jax.device_put(carry.record_next, replicated),
                 jax.device_put(carry.diverged_at, chain))


class CheckpointGather(NamedTuple):
    """The checkpoints (chain, K, param) of a run, assembled when first read (``Run.checkpoints``):
    those at draw steps are copies of draws, the others were written by the loop (``buffer``)."""

    buffer: np.ndarray
    """(chain, K_loop, param): the checkpoints that are not draws, in step order."""
    positions: np.ndarray
    """(chain, draw, param): the run's draws."""
    from_draws: np.ndarray
    """(K,) bool: which checkpoints are draws."""
    draw_index: np.ndarray
    """(K_draws,): the draw each of those is."""

    def __call__(self) -> np.ndarray:
        chains, _, dim = self.positions.shape
        checkpoints = np.empty((chains, len(self.from_draws), dim), self.positions.dtype)
        checkpoints[:, ~self.from_draws] = self.buffer
        checkpoints[:, self.from_draws] = self.positions[:, self.draw_index]
        return checkpoints


def divergence_flags(diverged_at: np.ndarray, first_step: int, thin: int, num_draws: int,
                     own: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-draw (diverging, frozen), (chain, draw), from the step each chain left the finite set.

    Draw d holds the state after the steps [first_step + d thin, first_step + (d + 1) thin): it is
    ``diverging`` when its chain left the finite set at one of them (or the kernel flagged the step
    itself, ``own``: NUTS's divergent transitions), ``frozen`` from that draw on (the chain repeats its
    last finite state). A chain that diverged before ``first_step`` is frozen at every draw.
    """
    start = first_step + thin * np.arange(num_draws)
    at = np.asarray(diverged_at)[:, None]
    frozen = (at >= 0) & (at < start + thin)
    diverging = frozen & (at >= start)
    if own is not None:
        diverging = diverging | np.asarray(own, bool)
    return diverging, frozen


def warmup_fn(kernel: Kernel, target: Target, mesh: Mesh | None = None):
    """jit of the vmapped warm-up (e.g. NUTS's window adaptation, one per chain), once per kernel and
    mesh (the number of steps is static); with a mesh each device adapts its own chains."""
    return target.memo(("warmup", kernel, mesh), lambda: _warmup_fn(kernel, mesh))


def _warmup_fn(kernel: Kernel, mesh: Mesh | None):
    warmup = jax.vmap(kernel.warmup, in_axes=(0, 0, None, None))
    if mesh is None:
        return jax.jit(warmup, static_argnums=2)
    chain = P(CHAIN_AXIS)

    def sharded(keys, states, num_steps, hyper):
        per_device = jax.shard_map(lambda k, s, h: warmup(k, s, num_steps, h), mesh=mesh,
                                   in_specs=(chain, chain, P()), out_specs=chain, check_vma=False)
        return per_device(keys, states, hyper)

    return jax.jit(sharded, static_argnums=2)


def compiled(target: Target, fn, *args) -> tuple[Any, float]:
    """AOT-compile `fn` for these argument shapes and shardings once per target; (executable, seconds)."""
    leaves, tree = jax.tree.flatten(args)
    key = ("compiled", fn, tree, tuple((np.shape(x), str(jnp.result_type(x)), str(getattr(x, "sharding", None)))
                                        for x in leaves))
    start, built = time.perf_counter(), []
    executable = target.memo(key, lambda: built.append(key) or fn.lower(*args).compile())
    return executable, time.perf_counter() - start if built else 0.0
