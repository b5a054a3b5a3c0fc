"""Training to a minimiser of the empirical loss: the centre w* of an LLC estimate.

:func:`train` minimises the mean negative log-likelihood L_n(w) = -(1/n) sum_i log p(y_i | x_i, w)
with optax's SGD or Adam on minibatch losses L_B, the learning rate decaying to 0 on a cosine
(Loshchilov & Hutter 2017, "SGDR") or kept constant. Lau et al. (2023) estimate the local
learning coefficient at such a local minimum.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fractalbayes import checks
from fractalbayes.errors import ModelError, SamplerError
from fractalbayes.model.target import Target

OPTIMIZERS = ("sgd", "adam")
TRAIN_SCHEDULES = ("cosine", "constant")
TRAIN_RECORDS = 100


@dataclass(frozen=True, eq=False)
class TrainInfo:
    """How :func:`train` reached its minimiser."""

    loss: float
    """Full-data L_n at the returned position."""
    grad_norm: float
    """||grad L_n|| there (near 0 at a minimum)."""
    steps: np.ndarray = field(repr=False)
    losses: np.ndarray = field(repr=False)
    """Minibatch loss at ``steps`` (about 100 evenly spaced steps)."""
    optimizer: str
    learning_rate: float
    num_steps: int
    schedule: str
    seed: int


def _train_fn(target: Target, optimizer: str, schedule: str):
    """jit of ``num_steps`` optimizer steps on L_B (traced learning rate and step count), built once
    per (target, optimizer, schedule)."""
    return target.memo(("llc.train", optimizer, schedule), lambda: _build_train(target, optimizer, schedule))


def _build_train(target: Target, optimizer: str, schedule: str):
    """The optimizer loop z_{k+1} = z_k + u_k, u_k optax's SGD (-rate(k) grad L_B(z_k)) or Adam
    (Kingma & Ba 2015) update, with rate(k) = r (1 + cos(pi k / K)) / 2 for the cosine schedule (or
    r), as a ``lax.fori_loop`` recording L_B at 100 evenly spaced steps."""
    full_batch = target.batch_size == target.n_data

    def run(z0, key, learning_rate, num_steps):
        def rate(count):
            if schedule == "constant":
                return learning_rate
            return learning_rate * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(count, num_steps) / num_steps))

        opt = optax.adam(rate) if optimizer == "adam" else optax.sgd(rate)

        def body(i, carry):
            z, state, key, losses = carry
            key, batch_key = jax.random.split(key)
            batch = target.data if full_batch else target.sample_batch(batch_key)
            loss, grad = jax.value_and_grad(target.loss)(z, batch)
            updates, state = opt.update(grad, state, z)
            losses = losses.at[(i * TRAIN_RECORDS) // num_steps].set(loss)
            return optax.apply_updates(z, updates), state, key, losses

        init = (z0, opt.init(z0), key, jnp.full(TRAIN_RECORDS, jnp.nan, z0.dtype))
        z, _, _, losses = jax.lax.fori_loop(0, num_steps, body, init)
        loss, grad = jax.value_and_grad(target.full_loss)(z)
        return z, losses, loss, jnp.linalg.norm(grad)

    return jax.jit(run)


def train(
    target: Target,
    *,
    optimizer: str = "adam",
    learning_rate: float = 1e-2,
    num_steps: int = 2000,
    schedule: str = "cosine",
    seed: int | jax.Array = 0,
    init: Any = None,
) -> tuple[np.ndarray, TrainInfo]:
    """Minimise the mean negative log-likelihood L_n with SGD or Adam (optax); the LLC's centre w*.

    Minibatches of ``target.batch_size`` (full batch when it equals n). The learning rate decays to
    0 on a cosine (``schedule="cosine"``, so the last iterate sits at the minimum rather than
    jittering around it) or stays constant. ``init`` is None (a prior draw), a flat unconstrained
    vector or a dict of sites. Returns (flat unconstrained minimiser, :class:`TrainInfo`).
    """
    optimizer = checks.check("optimizer", optimizer, checks.choice(*OPTIMIZERS), ModelError)
    schedule = checks.check("schedule", schedule, checks.choice(*TRAIN_SCHEDULES), ModelError)
    rate = checks.check("learning_rate", learning_rate, checks.positive(), ModelError)
    num_steps = checks.count("num_steps", num_steps, 1)
    seed = checks.seed("seed", seed)
    init_key, key = jax.random.split(jax.random.key(seed))
    z0 = target.init_position(init_key) if init is None else target.flat_position(init, "init")
    z, losses, loss, grad_norm = _train_fn(target, optimizer, schedule)(
        z0, key, jnp.float32(rate), jnp.int32(num_steps)
    )
    steps = (np.arange(TRAIN_RECORDS) + 1) * num_steps // TRAIN_RECORDS - 1
    losses = np.asarray(losses, np.float64)
    kept = np.isfinite(losses) & (steps >= 0)
    info = TrainInfo(
        loss=float(loss), grad_norm=float(grad_norm), steps=steps[kept], losses=losses[kept],
        optimizer=optimizer, learning_rate=rate, num_steps=num_steps, schedule=schedule, seed=seed,
    )
    if not math.isfinite(info.loss):
        raise SamplerError(
            f"training diverged (L_n = {info.loss}); lower learning_rate (now {rate}) or pass a centre"
        )
    return np.asarray(z, np.float32), info


def _train_kwargs(options: dict | None, seed: int) -> dict[str, Any]:
    """:func:`train`'s keyword arguments from ``train_options`` (checked), seeded like the estimate."""
    allowed = {k for k, p in inspect.signature(train).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options or {}) - allowed)
    if unknown:
        raise ModelError(f"train_options {unknown} are not train's; allowed: {sorted(allowed)}")
    return {"seed": seed, **(options or {})}
