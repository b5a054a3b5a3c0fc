"""The LLC along a run: lambda_hat at recorded checkpoints, each centred at that checkpoint.

For a run's chain c and checkpoint k, :func:`trajectory` samples the posterior localized at
w_{c,k} and reads off lambda_hat = n beta (E_pi[L] - L_n(w_{c,k})) (Lau et al. 2023, equation
(1) of :mod:`~fractalbayes.slt.llc.estimator`). The diffusion analysis time-averages the chain
mean into lambda_bar (Hennick & De Baerdemacker, arXiv 2503.22478, SCIENCE.md section 3).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from fractalbayes import checks
from fractalbayes.engine.run import Run
from fractalbayes.errors import ModelError
from fractalbayes.model.target import Target
from fractalbayes.slt.llc.chains import _chain_diagnostics, _sample_chains
from fractalbayes.slt.llc.health import RHAT_LIMIT, _emit
from fractalbayes.slt.llc.settings import LLCSettings

MAX_CHAINS_PER_CALL = 64


@dataclass(frozen=True, eq=False)
class LLCTrajectory:
    """lambda_hat at recorded checkpoints of a run, each centred at that checkpoint's position."""

    steps: np.ndarray
    """Steps of the run at which the LLC was estimated (K',)."""
    values: np.ndarray
    """lambda_hat averaged over the run's chains (K',): what the diffusion analysis time-averages."""
    per_chain: np.ndarray
    """lambda_hat per run chain and checkpoint (chain, K')."""
    r_hat: np.ndarray
    """R-hat of each estimate's lambda_hat traces (chain, K'): split R-hat of its one chain, or
    across its ``chains_per_point`` chains."""
    nbeta: float
    nbeta_rule: str
    localization: float
    step_size: float | None
    sampler: str
    warnings: tuple[str, ...]


def trajectory(
    run: Run,
    target: Target | None = None,
    *,
    every: int = 1,
    chains_per_point: int = 1,
    nbeta: str | float = "n/log n",
    localization: float = 1.0,
    step_size: float = 1e-4,
    num_draws: int = 500,
    burn_in: int = 200,
    thin: int = 1,
    sampler: str = "sgld",
    prior: bool = True,
    seed: int = 0,
    full_loss_every: int | None = None,
    sampler_options: dict | None = None,
    shared_batches: bool = False,
    prng_impl: str = "threefry2x32",
    progress: bool | None = None,
) -> LLCTrajectory:
    """The LLC at every ``every``-th recorded checkpoint of ``run`` (``run.checkpoints``, steps
    ``run.checkpoint_steps``), for each of its chains: one localized chain per (run chain,
    checkpoint) pair, ``chains_per_point`` of them, all vmapped together (in calls of at most 64
    chains, padded so one compiled kernel serves every call). ``target`` defaults to ``run.target``.
    The other arguments are :func:`estimate`'s. Early checkpoints are usually not minima, so
    negative values are reported in one warning rather than per estimate.
    """
    target = run.target if target is None else target
    if target is None:
        raise ModelError("this run has no target attached (loaded from disk?): pass target=...")
    every = checks.count("every", every, 1)
    per_point = checks.count("chains_per_point", chains_per_point, 1)
    s = LLCSettings.build(
        target, nbeta=nbeta, localization=localization, step_size=step_size, num_chains=per_point,
        num_draws=num_draws, burn_in=burn_in, thin=thin, sampler=sampler, prior=prior, full_loss_every=full_loss_every,
        sampler_options=sampler_options, shared_batches=shared_batches, prng_impl=prng_impl, seed=seed,
    )
    if run.checkpoints.shape[-1] != target.dim:
        raise ModelError(
            f"run positions have {run.checkpoints.shape[-1]} parameters, the target {target.dim}: "
            f"pass the target the run was sampled from"
        )
    index = np.arange(0, len(run.checkpoint_steps), every)
    points = run.checkpoints[:, index]  # (chain, K', d)
    centers = np.repeat(points.reshape(-1, target.dim), per_point, axis=0)
    size = min(len(centers), MAX_CHAINS_PER_CALL)
    values, traces, alive = [], [], []
    for start in range(0, len(centers), size):
        block = centers[start : start + size]
        padded = np.concatenate([block, np.repeat(block[-1:], size - len(block), axis=0)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chains = _sample_chains(target, padded, dataclasses.replace(s, seed=s.seed + start), progress)
        values.append(chains.per_chain[: len(block)])
        traces.append(chains.llc_trace[: len(block)])
        alive.append(~chains.diverged[: len(block)])
    shape = (run.num_chains, len(index), per_point)
    per_chain = np.nanmean(np.concatenate(values).reshape(shape), axis=2)
    groups = np.concatenate(traces).reshape(shape + (-1,))
    r_hat = np.array([[_chain_diagnostics(group)[1] for group in row] for row in groups])
    steps = np.asarray(run.checkpoint_steps)[index]
    values = np.nanmean(per_chain, axis=0)
    messages = []
    lost = int((~np.concatenate(alive)).sum())
    if lost:
        messages.append(
            f"{lost} of {len(centers)} localized chains diverged: reduce step_size (now {s.step_size})"
        )
    if (values < 0).any():
        messages.append(
            f"lambda_hat < 0 at steps {steps[values < 0].tolist()}: those checkpoints are not local "
            f"minima (expected early in training), or the step size is too large"
        )
    unsettled = (r_hat > RHAT_LIMIT).any(axis=0) & (values >= 0)
    if unsettled.any():
        messages.append(
            f"loss traces not stationary (R-hat > {RHAT_LIMIT}) at steps {steps[unsettled].tolist()}: "
            f"raise burn_in (now {s.burn_in}) or num_draws (now {s.num_draws})"
        )
    _emit(messages, stacklevel=2)
    return LLCTrajectory(
        steps=steps, values=values, per_chain=per_chain,
        r_hat=r_hat, nbeta=s.nbeta, nbeta_rule=s.nbeta_rule, localization=s.localization,
        step_size=s.step_size, sampler=s.sampler, warnings=tuple(messages),
    )
