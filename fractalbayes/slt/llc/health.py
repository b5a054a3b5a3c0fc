"""Health checks of an LLC estimate: MALA acceptance of the SGLD proposals, R-hat of the loss
trace, divergences and lambda_hat < 0, reported as :class:`LLCHealthWarning` messages that name the
problem and the fix.

The MALA check scores each SGLD proposal by the Metropolis-Hastings acceptance probability it
would have as a Metropolis-adjusted Langevin step (Roberts & Tweedie 1996, "Exponential
convergence of Langevin distributions"); healthy runs show 0.9 or more (devinterp's healthy range,
docs/science.md). R-hat is ArviZ's rank-normalized split R-hat (Vehtari et al. 2021), limit 1.05.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from fractalbayes.engine.run import Run
from fractalbayes.model.target import Target
from fractalbayes.samplers.gradients import tempered_log_density_and_grad
from fractalbayes.slt.llc.settings import LLCSettings

RHAT_LIMIT = 1.05
MALA_LIMIT = 0.9
MALA_POINTS_PER_CHAIN = 100


class LLCHealthWarning(UserWarning):
    """An LLC estimate failed a health check; the message names the problem and the fix."""



def _mala_fn(target: Target):
    """jit of the MALA acceptance probability of one SGLD proposal from each of P points, built once
    per target (:func:`_build_mala`)."""
    return target.memo("llc.mala", lambda: _build_mala(target))


def _build_mala(target: Target):
    """The MALA acceptance probability of one SGLD proposal from each of P points.

    From w the SGLD kernel proposes w' = w + h g(w) + sqrt(2 h T) xi with g = grad log pi; the
    Metropolis-Hastings probability of accepting it for the target pi^(1/T) is
    min(1, exp[(log pi(w') - log pi(w)) / T + log q(w | w') - log q(w' | w)]),
    log q(b | a) = -||b - a - h g(a)||^2 / (4 h T). log pi and g are the kernel's own estimates on
    one minibatch drawn per call and shared by every point (the full data when the batch is all of
    it); sharing it keeps one model pass per point vmapped only over positions, which halves the
    compile time.
    """
    # exact for any localization (0 included) and prior power (1 with the prior, 0 without)
    grad_fn = tempered_log_density_and_grad(target, localized=True, prior_power=True)
    full_batch = target.batch_size == target.n_data

    def one(z, center, h, noise, batch, hyper):
        nbeta, localization, temperature, power = hyper
        (log_p, _), g = grad_fn(z, center, batch, nbeta, localization, power)
        proposal = z + h * g + noise
        (log_p_new, _), g_new = grad_fn(proposal, center, batch, nbeta, localization, power)
        forward = jnp.sum(jnp.square(proposal - z - h * g)) / (4 * h * temperature)
        backward = jnp.sum(jnp.square(z - proposal - h * g_new)) / (4 * h * temperature)
        log_ratio = (log_p_new - log_p) / temperature + forward - backward
        return jnp.where(jnp.isfinite(log_ratio), jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0)

    def rates(key, z, center, h, hyper):
        batch_key, noise_key = jax.random.split(key)
        batch = target.data if full_batch else target.sample_batch(batch_key)
        noise = jnp.sqrt(2 * h * hyper[2])[:, None] * jax.random.normal(noise_key, z.shape)
        return jax.vmap(one, in_axes=(0, 0, 0, 0, None, None))(z, center, h, noise, batch, hyper)

    return jax.jit(rates)


def _mala_acceptance(
    target: Target, run: Run, centers: np.ndarray, s: LLCSettings, alive: np.ndarray
) -> float | None:
    """Mean MALA acceptance of SGLD proposals from up to 100 evenly spaced draws of each live chain."""
    if s.sampler != "sgld" or not alive.any() or float(run.config.options["temperature"]) == 0:
        return None
    temperature = float(run.config.options["temperature"])
    points = min(run.num_draws, MALA_POINTS_PER_CHAIN)
    index = np.unique(np.linspace(0, run.num_draws - 1, points).astype(int))
    z = run.positions[alive][:, index].reshape(-1, target.dim)
    h = run.stats["step_size"][alive][:, index].reshape(-1)
    center = np.repeat(centers[alive], len(index), axis=0)
    key = jax.random.fold_in(jax.random.key(s.seed), 1)
    hyper = (jnp.float32(s.nbeta), jnp.float32(s.localization), jnp.float32(temperature), jnp.float32(s.prior))
    return float(np.mean(_mala_fn(target)(key, z, center, h, hyper)))


def _health(mean: float, r_hat: float, mala: float | None, diverged: np.ndarray, s: LLCSettings) -> list[str]:
    """Messages for the failed checks, each naming the problem and what to try."""
    found = []
    step = "" if s.step_size is None else f" (now {s.step_size:g})"
    if diverged.any():
        found.append(
            f"{int(diverged.sum())} of {len(diverged)} chains diverged (non-finite loss or position) "
            f"and are left out of the estimate: reduce step_size{step} or raise localization "
            f"(now {s.localization:g})"
        )
    if mean < 0:
        found.append(
            f"lambda_hat = {mean:.4g} < 0: the chains found lower loss than the centre, so the centre "
            f"is not a local minimum (train longer, or pass center=None to train first) or the step "
            f"size{step} is too large"
        )
    if r_hat > RHAT_LIMIT:
        found.append(
            f"the loss trace is not stationary (R-hat {r_hat:.3f} > {RHAT_LIMIT} across chains): "
            f"raise burn_in (now {s.burn_in}) or num_draws (now {s.num_draws}), reduce step_size{step}, "
            f"or raise localization (now {s.localization:g}); check that the centre is a minimum"
        )
    if mala is not None and mala < MALA_LIMIT:
        found.append(
            f"MALA acceptance of the SGLD proposals is {mala:.3f} < {MALA_LIMIT}: the step size{step} "
            f"is too large for this posterior and lambda_hat is biased upwards; reduce it until the "
            f"acceptance is 0.9-0.99 (fb.llc.calibrate shows the grid)"
        )
    return found


def _emit(messages: list[str], stacklevel: int) -> None:
    """Warn once per message, attributed to the user's call (``stacklevel`` counts from here)."""
    for message in messages:
        warnings.warn(message, LLCHealthWarning, stacklevel=stacklevel + 1)

