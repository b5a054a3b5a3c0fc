"""Sampling the localized tempered posterior, chain by chain, and each chain's lambda_hat.

Lau, Furman, Wang, Murfet & Wei (2023) sample

    pi(w) ∝ exp( -n beta L_n(w) - (gamma / 2) ||w - w*||^2 ) rho(w)

with chains started at the centre w* and read off, per chain c,

    lambda_hat_c = n beta ( mean_t L(w_{c,t}) - L_n(w*) ),                                   (1)

L the minibatch loss L_B of each draw (an unbiased estimate of L_n there) or the full-data loss
L_n every k-th draw. The chains are the core's vmapped BlackJAX kernels (``fb.sample``); each
chain may have its own centre (the trajectory estimates one LLC per checkpoint in one call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from arviz_stats.base import array_stats

from fractalbayes.engine.run import Run
from fractalbayes.engine.sample import sample
from fractalbayes.model.target import Target
from fractalbayes.slt.llc.health import _mala_acceptance
from fractalbayes.slt.llc.settings import LLCSettings

_LOSS_MAP_BATCH = 64


def _full_loss_fn(target: Target):
    """jit of L_n at a batch of positions (P, d) -> (P,), in blocks to bound memory; built once per
    target."""
    return target.memo(
        "llc.full_loss", lambda: jax.jit(lambda zs: jax.lax.map(target.full_loss, zs, batch_size=_LOSS_MAP_BATCH))
    )


def _full_losses(target: Target, positions: np.ndarray) -> np.ndarray:
    """L_n at every position of an array (..., d), in float64."""
    flat = np.asarray(positions, np.float32).reshape(-1, positions.shape[-1])
    return np.asarray(_full_loss_fn(target)(flat), np.float64).reshape(positions.shape[:-1])


@dataclass(frozen=True, eq=False)
class _Chains:
    """Per-chain outcome of one sampling call (chains may have different centres)."""

    loss_trace: np.ndarray
    init_loss: np.ndarray
    llc_trace: np.ndarray
    per_chain: np.ndarray
    diverged: np.ndarray
    mala_acceptance: float | None
    run: Run


def _sample_chains(
    target: Target, centers: np.ndarray, s: LLCSettings, progress: bool | None = None, devices: Any = None
) -> _Chains:
    """Chains started and localized at ``centers`` (C, d); per-chain lambda_hat by equation (1)."""
    # center=None in the core: each chain is localized at its own initial position, the given centre.
    run = sample(
        target, s.sampler, num_chains=len(centers), num_samples=s.num_draws, burn_in=s.burn_in,
        thin=s.thin, seed=s.seed, init=centers, num_checkpoints=2, progress=progress, devices=devices,
        shared_batches=s.shared_batches, prng_impl=s.prng_impl, **s.sampler_kwargs(),
    )
    init_loss = _full_losses(target, centers)
    if s.full_loss_every is None:
        loss_trace = np.asarray(run.stats["loss"], np.float64)
    else:
        loss_trace = _full_losses(target, run.positions[:, :: s.full_loss_every])
    llc_trace = s.nbeta * (loss_trace - init_loss[:, None])
    diverged = run.diverged | ~np.all(np.isfinite(llc_trace), axis=1)
    per_chain = np.where(diverged, np.nan, llc_trace.mean(axis=1))
    return _Chains(
        loss_trace=loss_trace, init_loss=init_loss, llc_trace=llc_trace, per_chain=per_chain,
        diverged=diverged, mala_acceptance=_mala_acceptance(target, run, centers, s, ~diverged), run=run,
    )


def _chain_diagnostics(trace: np.ndarray) -> tuple[float, float, float]:
    """(bulk ESS, rank-normalized split R-hat, MCSE of the mean) of a (chain, draw) trace."""
    if trace.shape[1] < 4:
        return math.nan, math.nan, math.nan
    ess = float(array_stats.ess(trace, chain_axis=0, draw_axis=1))
    mcse = float(array_stats.mcse(trace, chain_axis=0, draw_axis=1))
    halves = trace if trace.shape[0] > 1 else trace[:, : trace.shape[1] // 2 * 2].reshape(2, -1)
    return ess, float(array_stats.rhat(halves, chain_axis=0, draw_axis=1)), mcse
