"""The scan driver: vmapped chains, steps inside `lax.scan`, chunked for progress, one executable.

Each step, every chain splits its own key into a minibatch key (indices by `randint`, gathered on
device) and a kernel key. A chain whose position or loss turns non-finite keeps its last finite
state and is flagged; the others carry on. Positions are recorded on a geometric grid of steps
(memory O(K d), not O(steps d)) for the diffusion analysis, plus every step of an optional window.

`advance(carry, info, hyper, record_steps, num_steps, block_steps, blocks)` is one jitted
`lax.scan` over a fixed number of blocks (draws per chunk), each block a `fori_loop` of at most
`block_steps` steps with a traced trip count: sampling calls use `block_steps = thin`, so each
block's scan output is a draw; burn-in calls use the same executable and ignore the outputs.
Compiled functions are memoised on the target (they live as long as it does).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fractalbayes.model.target import Target
from fractalbayes.samplers.base import Kernel


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
    finite = jnp.isfinite(jnp.sum(position, axis=-1)) & jnp.isfinite(info.loss)
    alive = carry.diverged_at < 0
    states = _where_chain(finite & alive, new, carry.states)
    diverged_at = jnp.where(alive & ~finite, carry.step, carry.diverged_at)
    # `diverging`: the kernel's own flag (NUTS) or this step left the finite set; `frozen`: from then on.
    info = info._asdict() | {"diverging": getattr(info, "diverging", False) | (alive & ~finite),
                             "frozen": diverged_at >= 0}
    step = carry.step + 1
    position = jax.vmap(kernel.position)(states)

    last = record_steps.shape[0] - 1
    due = (carry.record_next <= last) & (record_steps[jnp.minimum(carry.record_next, last)] == step)
    record = jax.lax.cond(due, lambda r: r.at[carry.record_next].set(position), lambda r: r, carry.record)
    return Carry(states, keys, step, record, carry.record_next + due, diverged_at), info


def advance_fn(kernel: Kernel, target: Target):
    return target.memo(("advance", kernel), lambda: _advance_fn(kernel, target))


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
            start = carry_info[0].step
            carry, info = jax.lax.fori_loop(0, n, body, carry_info)
            # a draw is `diverging` if its chain left the finite set at any step of its block
            info = info | {"diverging": info["diverging"] | (carry.diverged_at >= start)}
            return (carry, info), (jax.vmap(kernel.position)(carry.states), info)

        (carry, info), outputs = jax.lax.scan(block, (carry, info), blocks)
        return carry, info, outputs

    return jax.jit(advance, donate_argnums=(0, 1))


def warmup_fn(kernel: Kernel, target: Target):
    """jit of the vmapped warm-up, once per kernel (the number of steps is static)."""
    return target.memo(("warmup", kernel), lambda: jax.jit(jax.vmap(kernel.warmup, in_axes=(0, 0, None, None)), static_argnums=2))


def _step_output_fn(kernel: Kernel, target: Target):
    return target.memo(("step_output", kernel), lambda: _step_output(kernel, target))


def _step_output(kernel: Kernel, target: Target):
    """jit of one vmapped step's (positions, info), only ever shape-evaluated. Cached so that
    eval_shape hits jit's trace cache instead of re-tracing the model on every run (~0.1 s)."""

    def one(states, hyper):
        keys = jax.random.split(jax.random.key(0), jax.tree.leaves(states)[0].shape[0])
        new, info = jax.vmap(kernel.step, in_axes=(0, 0, None, None, None))(keys, states, target.data, 0, hyper)
        return jax.vmap(kernel.position)(new), info._asdict() | {"diverging": jnp.zeros(info.loss.shape, bool),
                                                              "frozen": jnp.zeros(info.loss.shape, bool)}

    return jax.jit(one)


def initial_info(kernel: Kernel, target: Target, states, hyper) -> dict:
    """Zeros shaped like one vmapped step's info (the loop carries the latest step's info)."""
    shapes = jax.eval_shape(_step_output_fn(kernel, target), states, hyper)[1]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def compiled(target: Target, fn, *args) -> tuple[Any, float]:
    """AOT-compile `fn` for these argument shapes once per target; (executable, seconds spent)."""
    leaves, tree = jax.tree.flatten(args)
    key = ("compiled", fn, tree, tuple((np.shape(x), str(jnp.result_type(x))) for x in leaves))
    start, built = time.perf_counter(), []
    executable = target.memo(key, lambda: built.append(key) or fn.lower(*args).compile())
    return executable, time.perf_counter() - start if built else 0.0


