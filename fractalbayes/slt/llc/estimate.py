"""Local learning coefficient (LLC) estimation by SG-MCMC or NUTS (Lau et al. 2023).

Lau, Furman, Wang, Murfet & Wei, "Quantifying degeneracy in singular models via the learning
coefficient" (2023) estimate the local learning coefficient lambda(w*) at a local minimum w* of the
empirical loss L_n by sampling the localized, tempered posterior

    pi(w) ∝ exp( -n beta L_n(w) - (gamma / 2) ||w - w*||^2 ) rho(w)

and reading off

    lambda_hat(w*) = n beta ( E_pi[L_n(w)] - L_n(w*) ),                              (1)

with beta = 1 / log n, the inverse temperature of Watanabe's WBIC (Watanabe 2013, "A widely
applicable Bayesian information criterion", JMLR 14). Here rho is the NumPyro model's prior, in its
unconstrained space, and gamma is ``localization``. The chains are the core's BlackJAX kernels
(``fb.sample``: ``"sgld"``, ``"sghmc"`` or full-batch ``"nuts"``), vmapped and started at w*;
E_pi[L_n] is the mean of the per-draw minibatch loss L_B, an unbiased estimate of L_n at each draw,
or of the full-data loss evaluated every k-th draw (``full_loss_every=k``).

``nbeta`` (the product n beta) is ``"n/log n"`` (the paper), ``"batch"`` (B / log B, devinterp's
default, to compare with it) or a number; the rule is recorded with the result. SGLD here is
BlackJAX's ``w + h grad log pi(w) + sqrt(2 h) xi``: devinterp's learning rate eps is 2 h.

Entry points: :func:`estimate` (one LLC with health checks), :func:`train` (a minimiser to centre
on), :func:`calibrate` (a step size x localization grid) and :func:`trajectory` (the LLC at the
recorded checkpoints of a run).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import xarray as xr
from arviz_stats.base import array_stats

from fractalbayes.checks import count
from fractalbayes.checks import finite as positive
from fractalbayes.errors import ModelError, SamplerError
from fractalbayes.engine.run import Run
from fractalbayes.samplers.gradients import tempered_log_density_and_grad
from fractalbayes.engine.sample import sample
from fractalbayes.model.target import Target

from fractalbayes.slt.llc.settings import LLC_SAMPLERS, NBETA_RULES  # noqa: E402
OPTIMIZERS = ("sgd", "adam")
TRAIN_SCHEDULES = ("cosine", "constant")
RHAT_LIMIT = 1.05
MALA_LIMIT = 0.9
MALA_POINTS_PER_CHAIN = 100
TRAIN_RECORDS = 100
MAX_CHAINS_PER_CALL = 64
_LOSS_MAP_BATCH = 64


class LLCHealthWarning(UserWarning):
    """An LLC estimate failed a health check; the message names the problem and the fix."""


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def resolve_nbeta(nbeta: str | float, target: Target) -> tuple[float, str]:
    """(n beta, rule): ``"n/log n"`` -> n / log n, ``"batch"`` -> B / log B, a number -> itself."""
    if isinstance(nbeta, str):
        if nbeta not in NBETA_RULES:
            raise ModelError(
                f"nbeta={nbeta!r} is not a known rule; use one of {list(NBETA_RULES)} or a positive "
                f"number"
            )
        size = target.n_data if nbeta == "n/log n" else target.batch_size
        if size < 2:
            raise ModelError(f"nbeta={nbeta!r} needs at least 2 examples (log 1 = 0); pass a number")
        return size / math.log(size), nbeta
    return positive("nbeta", nbeta), "given"


@dataclass(frozen=True)
class _Settings:
    sampler: str
    nbeta: float
    nbeta_rule: str
    localization: float
    step_size: float | None
    num_draws: int
    burn_in: int
    thin: int
    seed: int
    full_loss_every: int | None
    options: dict


def _settings(
    target: Target, sampler, nbeta, localization, step_size, num_draws, burn_in, thin, seed,
    full_loss_every, sampler_options,
) -> _Settings:
    """Every check on the numbers, before any work."""
    if sampler not in LLC_SAMPLERS:
        raise ModelError(f"sampler={sampler!r} is not an LLC sampler; use one of {list(LLC_SAMPLERS)}")
    value, rule = resolve_nbeta(nbeta, target)
    options = dict(sampler_options or {})
    clash = sorted({"nbeta", "localization", "center", "step_size"} & set(options))
    if clash:
        raise ModelError(f"sampler_options may not set {clash}: pass them as estimate's own arguments")
    return _Settings(
        sampler=sampler,
        nbeta=value,
        nbeta_rule=rule,
        localization=positive("localization", localization, allow_zero=True),
        step_size=None if sampler == "nuts" else positive("step_size", step_size),
        num_draws=count("num_draws", num_draws, 1),
        burn_in=count("burn_in", burn_in, 1 if sampler == "nuts" else 0),
        thin=count("thin", thin, 1),
        seed=count("seed", seed, 0),
        full_loss_every=None if full_loss_every is None else count("full_loss_every", full_loss_every, 1),
        options=options,
    )


# --------------------------------------------------------------------------------------------------
# Training to a minimiser
# --------------------------------------------------------------------------------------------------


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


@functools.cache
def _train_fn(target: Target, optimizer: str, schedule: str):
    """jit of ``num_steps`` optimizer steps on L_B (traced learning rate and step count)."""
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
    seed: int = 0,
    init: Any = None,
) -> tuple[np.ndarray, TrainInfo]:
    """Minimise the mean negative log-likelihood L_n with SGD or Adam (optax); the LLC's centre w*.

    Minibatches of ``target.batch_size`` (full batch when it equals n). The learning rate decays to
    0 on a cosine (``schedule="cosine"``, so the last iterate sits at the minimum rather than
    jittering around it) or stays constant. ``init`` is None (a prior draw), a flat unconstrained
    vector or a dict of sites. Returns (flat unconstrained minimiser, :class:`TrainInfo`).
    """
    if optimizer not in OPTIMIZERS:
        raise ModelError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if schedule not in TRAIN_SCHEDULES:
        raise ModelError(f"schedule must be one of {list(TRAIN_SCHEDULES)}, got {schedule!r}")
    rate = positive("learning_rate", learning_rate)
    num_steps = count("num_steps", num_steps, 1)
    seed = count("seed", seed, 0)
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


def _train_kwargs(options: dict | None, seed: int) -> dict:
    """:func:`train`'s keyword arguments from ``train_options`` (checked), seeded like the estimate."""
    allowed = {k for k, p in inspect.signature(train).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options or {}) - allowed)
    if unknown:
        raise ModelError(f"train_options {unknown} are not train's; allowed: {sorted(allowed)}")
    return {"seed": seed, **(options or {})}


# --------------------------------------------------------------------------------------------------
# Sampling the localized tempered posterior, chain by chain
# --------------------------------------------------------------------------------------------------


@functools.cache
def _full_loss_fn(target: Target):
    """jit of L_n at a batch of positions (P, d) -> (P,), in blocks to bound memory."""
    return jax.jit(lambda zs: jax.lax.map(target.full_loss, zs, batch_size=_LOSS_MAP_BATCH))


def _full_losses(target: Target, positions: np.ndarray) -> np.ndarray:
    flat = np.asarray(positions, np.float32).reshape(-1, positions.shape[-1])
    return np.asarray(_full_loss_fn(target)(flat), np.float64).reshape(positions.shape[:-1])


@functools.cache
def _mala_fn(target: Target):
    """jit of the MALA acceptance probability of one SGLD proposal from each of P points.

    From w the SGLD kernel proposes w' = w + h g(w) + sqrt(2 h T) xi with g = grad log pi; the
    Metropolis-Hastings probability of accepting it for the target pi^(1/T) is
    min(1, exp[(log pi(w') - log pi(w)) / T + log q(w | w') - log q(w' | w)]),
    log q(b | a) = -||b - a - h g(a)||^2 / (4 h T). log pi and g are the kernel's own estimates on
    one minibatch drawn per call and shared by every point (the full data when the batch is all of
    it); sharing it keeps one model pass per point vmapped only over positions, which halves the
    compile time.
    """
    grad_fn = tempered_log_density_and_grad(target, localized=True)  # exact for any localization, 0 included
    full_batch = target.batch_size == target.n_data

    def one(z, center, h, noise, batch, hyper):
        nbeta, localization, temperature = hyper
        (log_p, _), g = grad_fn(z, center, batch, nbeta, localization)
        proposal = z + h * g + noise
        (log_p_new, _), g_new = grad_fn(proposal, center, batch, nbeta, localization)
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
    target: Target, run: Run, centers: np.ndarray, s: _Settings, alive: np.ndarray
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
    hyper = (jnp.float32(s.nbeta), jnp.float32(s.localization), jnp.float32(temperature))
    return float(np.mean(_mala_fn(target)(key, z, center, h, hyper)))


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
    target: Target, centers: np.ndarray, s: _Settings, progress: bool | None = None
) -> _Chains:
    """Chains started and localized at ``centers`` (C, d); per-chain lambda_hat by equation (1)."""
    options = {"nbeta": s.nbeta, "localization": s.localization, **s.options}
    if s.step_size is not None:
        options["step_size"] = s.step_size
    # center=None in the core: each chain is localized at its own initial position, the given centre.
    run = sample(
        target, s.sampler, num_chains=len(centers), num_samples=s.num_draws, burn_in=s.burn_in,
        thin=s.thin, seed=s.seed, init=centers, num_checkpoints=2, progress=progress, **options,
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


# --------------------------------------------------------------------------------------------------
# Health checks
# --------------------------------------------------------------------------------------------------


def _health(mean: float, r_hat: float, mala: float | None, diverged: np.ndarray, s: _Settings) -> list[str]:
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


# --------------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LLCResult:
    """An LLC estimate lambda_hat = n beta (E_pi[L] - L(w*)), its chains and its health checks."""

    mean: float
    """lambda_hat over the chains that did not diverge."""
    std: float
    """Standard deviation of the per-chain estimates (ddof 1; NaN with one chain)."""
    mcse: float
    """Monte Carlo standard error of ``mean`` from the ESS of the loss trace (ArviZ)."""
    per_chain: np.ndarray
    """lambda_hat of each chain (NaN for diverged chains)."""
    loss_trace: np.ndarray = field(repr=False)
    """The loss at each draw (chain, draw): minibatch L_B, or full L_n every k-th draw."""
    init_loss: float
    """L_n(w*), the full-data loss at the centre."""
    center: np.ndarray = field(repr=False)
    """w*, flat and unconstrained."""
    nbeta: float
    nbeta_rule: str
    """"n/log n", "batch" or "given"."""
    localization: float
    step_size: float | None
    """SGLD/SGHMC step size h (BlackJAX's; devinterp's eps = 2 h); None for NUTS (adapted)."""
    sampler: str
    loss_kind: str
    """"minibatch" or "full every k draws"."""
    mala_acceptance: float | None
    """Mean MALA acceptance probability of the SGLD proposals (None for SGHMC and NUTS)."""
    r_hat: float
    """Rank-normalized split R-hat of the loss trace across chains."""
    ess: float
    """Bulk effective sample size of the loss trace."""
    diverged: np.ndarray
    """Per chain: did it turn non-finite?"""
    warnings: tuple[str, ...]
    train_info: TrainInfo | None = field(repr=False)
    """How the centre was trained (None when it was given)."""
    run: Run = field(repr=False)

    @property
    def llc_trace(self) -> np.ndarray:
        """n beta (L(w_t) - L(w*)) per chain and draw: its mean is ``mean``."""
        return self.nbeta * (self.loss_trace - self.init_loss)

    @property
    def healthy(self) -> bool:
        return not self.warnings

    def to_arviz(self) -> xr.DataTree:
        """ArviZ DataTree: ``posterior.llc`` and ``posterior.loss`` traces, the loss also in
        ``sample_stats``, and the numbers (estimate, nbeta and rule, diagnostics, warnings) in the
        root's attributes."""
        from arviz_base import from_dict

        tree = from_dict({"posterior": {"llc": self.llc_trace, "loss": self.loss_trace},
                          "sample_stats": {"loss": self.loss_trace}})
        tree.attrs.update(
            {
                "llc_mean": self.mean, "llc_std": self.std, "llc_mcse": self.mcse,
                "llc_per_chain": json.dumps([None if np.isnan(v) else float(v) for v in self.per_chain]),
                "init_loss": self.init_loss, "nbeta": self.nbeta, "nbeta_rule": self.nbeta_rule,
                "localization": self.localization,
                "step_size": "adapted" if self.step_size is None else self.step_size,
                "sampler": self.sampler, "loss_kind": self.loss_kind,
                "mala_acceptance": "n/a" if self.mala_acceptance is None else self.mala_acceptance,
                "r_hat": self.r_hat, "ess": self.ess, "num_diverged": int(self.diverged.sum()),
                "warnings": json.dumps(list(self.warnings)),
            }
        )
        return tree


def _result(chains: _Chains, center: np.ndarray, s: _Settings, train_info: TrainInfo | None) -> LLCResult:
    alive = ~chains.diverged
    ess, r_hat, mcse = _chain_diagnostics(chains.llc_trace[alive]) if alive.any() else (math.nan,) * 3
    values = chains.per_chain[alive]
    mean = float(values.mean()) if len(values) else math.nan
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    messages = _health(mean, r_hat, chains.mala_acceptance, chains.diverged, s)
    _emit(messages, stacklevel=3)
    return LLCResult(
        mean=mean, std=std, mcse=mcse, per_chain=chains.per_chain, loss_trace=chains.loss_trace,
        init_loss=float(chains.init_loss[0]), center=center, nbeta=s.nbeta, nbeta_rule=s.nbeta_rule,
        localization=s.localization, step_size=s.step_size, sampler=s.sampler,
        loss_kind="minibatch" if s.full_loss_every is None else f"full every {s.full_loss_every} draws",
        mala_acceptance=chains.mala_acceptance, r_hat=r_hat, ess=ess, diverged=chains.diverged,
        warnings=tuple(messages), train_info=train_info, run=chains.run,
    )


def estimate(
    target: Target,
    center: Any = None,
    *,
    nbeta: str | float = "n/log n",
    localization: float = 1.0,
    step_size: float = 1e-4,
    num_chains: int = 4,
    num_draws: int = 1000,
    burn_in: int = 500,
    thin: int = 1,
    sampler: str = "sgld",
    seed: int = 0,
    full_loss_every: int | None = None,
    sampler_options: dict | None = None,
    train_options: dict | None = None,
    progress: bool | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient at ``center`` (Lau et al. 2023, equation (1) above).

    ``center``: a dict of NumPyro sites or a flat unconstrained vector; None trains a minimiser first
    with :func:`train` (``train_options`` go to it; its seed defaults to ``seed``).
    ``nbeta``: "n/log n" (beta = 1/log n, Watanabe's WBIC temperature), "batch" (B / log B,
    devinterp's default) or a number. ``localization`` is gamma. ``step_size`` is the SGLD/SGHMC h
    (ignored by NUTS, which adapts its own during ``burn_in``). Chains start at the centre; after
    ``burn_in`` steps every ``thin``-th of ``num_draws * thin`` steps is a draw. The loss trace is
    the minibatch loss of each draw's step, or with ``full_loss_every=k`` the full-data loss at every
    k-th draw. ``sampler_options`` go to the sampler (e.g. ``temperature``, ``schedule``,
    ``num_integration_steps``, ``target_acceptance_rate``); ``progress`` to ``fb.sample``.

    Health checks warn (:class:`LLCHealthWarning`, also listed in ``.warnings``) when chains diverge,
    lambda_hat < 0, the loss trace's R-hat exceeds 1.05, or the MALA acceptance of the SGLD
    proposals is below 0.9 (healthy runs show 0.9 or more; on a Gaussian posterior an acceptance of
    0.9 already goes with a step-size bias of order 10 %). Bad arguments raise
    :class:`~fractalbayes.ModelError` before any work.
    """
    s = _settings(target, sampler, nbeta, localization, step_size, num_draws, burn_in, thin, seed,
                  full_loss_every, sampler_options)
    num_chains = count("num_chains", num_chains, 1)
    train_info = None
    if center is None:
        flat, train_info = train(target, **_train_kwargs(train_options, s.seed))
    else:
        if train_options:
            raise ModelError("train_options are used only with center=None; drop them or the centre")
        flat = np.asarray(target.flat_position(center, "center"))
    chains = _sample_chains(target, np.repeat(flat[None], num_chains, axis=0), s, progress)
    return _result(chains, flat, s, train_info)


# --------------------------------------------------------------------------------------------------
# Calibration grid
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """LLC estimates over a step size x localization grid, to pick where the traces plateau."""

    table: pd.DataFrame
    """One row per cell: step_size, localization, llc_mean, llc_std, llc_mcse, r_hat, ess,
    mala_acceptance, diverged (number of chains), warnings."""
    results: dict[tuple[float, float], LLCResult | None] = field(repr=False)
    """(step_size, localization) -> the estimate (None where every chain diverged)."""
    center: np.ndarray = field(repr=False)

    def figure(self):
        """Matplotlib figure: the chains' lambda_hat traces per cell (rows: localization, columns:
        step size), and lambda_hat against step size per localization (error bars: chain std)."""
        import matplotlib.pyplot as plt

        steps = sorted(self.table["step_size"].unique())
        locs = sorted(self.table["localization"].unique())
        fig = plt.figure(figsize=(2.4 * len(steps) + 1, 1.9 * len(locs) + 3.2), layout="constrained")
        grid = fig.add_gridspec(len(locs) + 1, len(steps), height_ratios=[1] * len(locs) + [1.6])
        for i, loc in enumerate(locs):
            for j, step in enumerate(steps):
                ax = fig.add_subplot(grid[i, j])
                result = self.results[(step, loc)]
                if result is None:
                    ax.text(0.5, 0.5, "all chains\ndiverged", ha="center", va="center",
                            transform=ax.transAxes)
                else:
                    ax.plot(result.llc_trace.T, lw=0.5, alpha=0.8)
                    ax.axhline(result.mean, color="k", lw=1)
                ax.set_title(f"h={step:g}, γ={loc:g}", fontsize=8)
                ax.tick_params(labelsize=7)
                if j == 0:
                    ax.set_ylabel("λ̂ trace", fontsize=8)
        ax = fig.add_subplot(grid[len(locs), :])
        for loc in locs:
            rows = self.table[self.table["localization"] == loc].sort_values("step_size")
            ax.errorbar(rows["step_size"], rows["llc_mean"], yerr=rows["llc_std"], marker="o", capsize=3,
                        label=f"γ = {loc:g}")
        ax.set_xscale("log")
        ax.set_xlabel("step size h")
        ax.set_ylabel("λ̂")
        ax.legend(fontsize=8)
        return fig


def calibrate(
    target: Target,
    step_sizes: Sequence[float],
    localizations: Sequence[float] = (1.0,),
    center: Any = None,
    **estimate_kwargs: Any,
) -> CalibrationResult:
    """:func:`estimate` on every (step size, localization) pair at one centre (trained once when
    None). The sampler's compiled kernel is shared by all cells (the numbers are traced). Health
    warnings are collected per cell in the table rather than emitted; a cell where every chain
    diverged has NaN estimates. ``estimate_kwargs`` go to :func:`estimate` for every cell."""
    defaults = {k: p.default for k, p in inspect.signature(estimate).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    grid = {"step_size", "localization"} & set(estimate_kwargs)
    unknown = sorted(grid | (set(estimate_kwargs) - set(defaults)))
    if unknown:
        raise ModelError(
            f"calibrate does not take {unknown}: the grid sets step_size and localization; other "
            f"options are estimate's {sorted(set(defaults) - {'step_size', 'localization'})}"
        )
    kw = {**defaults, **estimate_kwargs}
    if kw["sampler"] == "nuts":
        raise ModelError(
            "calibrate tunes SG-MCMC step sizes; NUTS adapts its own: use sampler 'sgld' or 'sghmc'"
        )
    if not len(step_sizes) or not len(localizations):
        raise ModelError("calibrate needs at least one step size and one localization")
    for h in step_sizes:
        positive("step_size", h)
    for loc in localizations:
        positive("localization", loc, allow_zero=True)
    _settings(target, kw["sampler"], kw["nbeta"], localizations[0], step_sizes[0], kw["num_draws"],
              kw["burn_in"], kw["thin"], kw["seed"], kw["full_loss_every"], kw["sampler_options"])
    count("num_chains", kw["num_chains"], 1)
    train_options = estimate_kwargs.pop("train_options", None)
    if center is None:
        flat, _ = train(target, **_train_kwargs(train_options, kw["seed"]))
    elif train_options:
        raise ModelError("train_options are used only with center=None; drop them or the centre")
    else:
        flat = np.asarray(target.flat_position(center, "center"))
    rows, results = [], {}
    for loc in localizations:
        for h in step_sizes:
            key = (float(h), float(loc))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    results[key] = estimate(target, flat, step_size=h, localization=loc, **estimate_kwargs)
                except SamplerError:
                    results[key] = None
            rows.append(_calibration_row(key, results[key], kw["num_chains"]))
    return CalibrationResult(table=pd.DataFrame(rows), results=results, center=flat)


def _calibration_row(key: tuple[float, float], result: LLCResult | None, num_chains: int) -> dict:
    row = {"step_size": key[0], "localization": key[1]}
    if result is None:
        return row | {"llc_mean": math.nan, "llc_std": math.nan, "llc_mcse": math.nan, "r_hat": math.nan,
                      "ess": math.nan, "mala_acceptance": math.nan, "diverged": num_chains,
                      "warnings": "every chain diverged"}
    return row | {
        "llc_mean": result.mean, "llc_std": result.std, "llc_mcse": result.mcse, "r_hat": result.r_hat,
        "ess": result.ess,
        "mala_acceptance": math.nan if result.mala_acceptance is None else result.mala_acceptance,
        "diverged": int(result.diverged.sum()), "warnings": "; ".join(result.warnings),
    }


# --------------------------------------------------------------------------------------------------
# Along a trajectory
# --------------------------------------------------------------------------------------------------


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
    seed: int = 0,
    full_loss_every: int | None = None,
    sampler_options: dict | None = None,
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
    s = _settings(target, sampler, nbeta, localization, step_size, num_draws, burn_in, thin, seed,
                  full_loss_every, sampler_options)
    every = count("every", every, 1)
    per_point = count("chains_per_point", chains_per_point, 1)
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


