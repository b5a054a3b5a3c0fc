"""What `Run.to_arviz` computes from the model at the draws: log-likelihood, predictive draws, ``lp``.

    log_likelihood[site](z)  = log p(y_site | x, z), elementwise over the site's batch shape, the
                               quantity ``numpyro.infer.util.log_likelihood`` returns
    posterior_predictive     y_site ~ p(y | x, z) for each draw z, on the training inputs
    lp(z)                    = log rho(z) - nbeta L_n(z) - (gamma/2)||z - c||^2, the density the
                               tempered SG kernels (SGLD, SGHMC, ...) follow (samplers/gradients.py),
                               on the full data

``run`` is a :class:`fractalbayes.engine.run.Run` with its target. Each is one jitted, vmapped function per target (memoised on it), run over the draws in chunks
of a fixed size (the last one padded), so it compiles once per run shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_CHUNK_ELEMENTS = 1 << 20
"""About this many model outputs per chunk of draws (bounds the device memory used)."""


def _over_draws(fn: Callable, args: tuple[np.ndarray, ...], per_draw: int) -> dict[str, np.ndarray]:
    """``fn`` (jitted, vmapped over a leading axis) on (chain, draw, ...) arrays, chunk by chunk."""
    lead = args[0].shape[:2]
    flat = [a.reshape((-1,) + a.shape[2:]) for a in args]
    total = flat[0].shape[0]
    chunk = 1 << max(0, min(math.ceil(math.log2(max(total, 1))), int(math.log2(max(1, _CHUNK_ELEMENTS // max(per_draw, 1))))))
    pieces: list[dict] = []
    for start in range(0, total, chunk):
        part = [a[start:start + chunk] for a in flat]
        short = chunk - part[0].shape[0]
        if short:
            part = [np.concatenate([p, np.repeat(p[-1:], short, axis=0)]) for p in part]
        out = fn(*part)
        pieces.append({k: np.asarray(v)[:chunk - short] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in pieces]).reshape(lead + pieces[0][k].shape[1:]) for k in pieces[0]}


def log_likelihood(run: Any) -> dict[str, np.ndarray]:
    """Per observed site, log p(y | x, z) elementwise at every draw (chain, draw, *site shape)."""
    target = run.target
    observed = {k: jnp.asarray(v) for k, v in run.observed.items()}

    def build():
        def one(z):
            fns = target.predictive(z, target.data)
            return {k: fn.log_prob(observed[k]) for k, fn in fns.items() if k in observed}

        return jax.jit(jax.vmap(one))

    fn = target.memo(("arviz", "log_likelihood"), build)
    per_draw = sum(int(np.size(v)) for v in run.observed.values())
    return _over_draws(fn, (run.positions,), per_draw)


def posterior_predictive(run: Any) -> dict[str, np.ndarray]:
    """One draw of every observed site per posterior draw, on the training inputs (the seed is
    the run's, so the group is reproducible)."""
    run._needs_target("the posterior_predictive group")
    target = run.target

    def build():
        def one(z, key):
            model_key, draw_key = jax.random.split(key)
            fns = target.predictive(z, target.data, model_key)
            return {k: fn.sample(jax.random.fold_in(draw_key, i)) for i, (k, fn) in enumerate(sorted(fns.items()))}

        return jax.jit(jax.vmap(one))

    fn = target.memo(("arviz", "posterior_predictive"), build)
    seed = run.config.seed if run.config is not None else 0
    keys = jax.random.key_data(jax.random.split(jax.random.key(seed), run.num_chains * run.num_draws))
    keys = np.asarray(keys).reshape((run.num_chains, run.num_draws) + keys.shape[1:])
    wrapped = lambda z, k: fn(z, jax.random.wrap_key_data(k))
    per_draw = sum(int(np.size(v)) for v in run.observed.values())
    return _over_draws(wrapped, (run.positions, keys), per_draw)


def tempered_lp(run: Any) -> np.ndarray | None:
    """``lp`` of a tempered kernel's draws (None for samplers without a target density, e.g. SGD,
    and for composite methods, whose draws mix several densities)."""
    from fractalbayes.samplers import tempered
    from fractalbayes.samplers.gradients import tempered_log_density

    options = run.config.options if run.config is not None else {}
    if run.config is None or run.config.method is not None or not {"nbeta", "localization", "center"} <= set(options):
        return None
    target = run.target
    nbeta = tempered.nbeta(target, options)
    center = tempered.center(run.sampler, target, options["center"])
    # center None: each chain localizes at its own start, the recorded step-0 position
    centers = np.broadcast_to(run.checkpoints[:, :1] if center is None else np.asarray(center), run.positions.shape)

    def build():
        density = tempered_log_density(target, localized=True, prior_power=True)
        one = lambda z, c, nbeta, gamma, power: density(z, c, target.data, nbeta, gamma, power)[0]
        return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))

    fn = target.memo(("arviz", "lp"), build)
    numbers = (jnp.float32(nbeta), jnp.float32(options["localization"]), jnp.float32(tempered.prior_power(options)))
    out = _over_draws(lambda z, c: {"lp": fn(z, c, *numbers)}, (run.positions, np.ascontiguousarray(centers)),
                      target.n_data)
    return out["lp"]
