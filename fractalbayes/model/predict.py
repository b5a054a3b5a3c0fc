"""Predictive distributions of a run's draws on probe inputs (function space).

Weight space has permutation and scaling symmetries, so samplers are best compared through what
their draws predict (Izmailov et al. 2021): class probabilities for classifiers, predictive samples
for regression.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from fractalbayes import checks
from fractalbayes.errors import ModelError
from fractalbayes.model.target import Target


def _site(target: Target, site: str | None) -> str:
    if site is None:
        return target.observed_sites[0]
    if site not in target.observed_sites:
        raise ModelError(f"site {site!r} is not observed; choose one of {list(target.observed_sites)}")
    return site


def _probe_inputs(target: Target, inputs) -> dict:
    """Probe arrays keyed by the model's data-argument names (``target.data``'s keys, e.g. ``"x"``)."""
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(target.data))
        if unknown:
            raise ModelError(f"inputs {unknown} are not data arguments of model {target.name!r}; "
                             f"use its argument names {list(target.data)}")
        return {k: jnp.asarray(v) for k, v in inputs.items()}
    return {next(iter(target.data)): jnp.asarray(inputs)}


def class_probabilities(target: Target, positions, inputs, *, site: str | None = None) -> np.ndarray:
    """p(y = c | x, w) for every draw: shape (*positions.shape[:-1], n_probe, C).

    ``inputs``: the probe array for the model's first data argument, or a dict of data arguments
    keyed by the model's parameter names (``{"x": x}``).
    Works for Categorical and Bernoulli observation sites.
    """
    name, probe = _site(target, site), _probe_inputs(target, inputs)

    def probs(z):
        fn = target.predictive(z, probe)[name]
        while isinstance(fn, dist.Independent):
            fn = fn.base_dist
        if isinstance(fn, (dist.BernoulliProbs, dist.BernoulliLogits)):
            return jnp.stack([1 - fn.probs, fn.probs], axis=-1)
        if isinstance(fn, (dist.CategoricalProbs, dist.CategoricalLogits)):
            return fn.probs
        raise ValueError(f"site {name!r} is {type(fn).__name__}: class probabilities need a "
                         f"Categorical or Bernoulli likelihood; use predictive_samples")

    flat = np.asarray(positions).reshape(-1, np.shape(positions)[-1])
    out = jax.jit(jax.vmap(probs))(flat)
    return np.asarray(out).reshape(np.shape(positions)[:-1] + out.shape[1:])


def predictive_samples(
    target: Target, positions, inputs, *, site: str | None = None, seed: int | jax.Array = 0
) -> np.ndarray:
    """One draw y ~ p(y | x, w) per weight draw: shape (*positions.shape[:-1], n_probe, ...).

    ``seed``: an int or a JAX key (see :func:`fractalbayes.checks.seed`).
    """
    seed = checks.seed("seed", seed)
    name, probe = _site(target, site), _probe_inputs(target, inputs)

    def draw(z, key):
        return target.predictive(z, probe, key)[name].sample(key)

    flat = np.asarray(positions).reshape(-1, np.shape(positions)[-1])
    keys = jax.random.split(jax.random.key(seed), flat.shape[0])
    out = jax.jit(jax.vmap(draw))(flat, keys)
    return np.asarray(out).reshape(np.shape(positions)[:-1] + out.shape[1:])


def predictive_mean(target: Target, positions, inputs, *, site: str | None = None) -> np.ndarray:
    """E[y | x, w] for every draw: shape (*positions.shape[:-1], n_probe, ...)."""
    name, probe = _site(target, site), _probe_inputs(target, inputs)
    flat = np.asarray(positions).reshape(-1, np.shape(positions)[-1])
    out = jax.jit(jax.vmap(lambda z: target.predictive(z, probe)[name].mean))(flat)
    return np.asarray(out).reshape(np.shape(positions)[:-1] + out.shape[1:])
