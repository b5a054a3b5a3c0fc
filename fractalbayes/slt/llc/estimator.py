"""Local learning coefficient (LLC) estimation by SG-MCMC or NUTS (Lau et al. 2023).

Lau, Furman, Wang, Murfet & Wei, "Quantifying degeneracy in singular models via the learning
coefficient" (2023) estimate the local learning coefficient lambda(w*) at a local minimum w* of the
empirical loss L_n by sampling the localized, tempered posterior

    pi(w) ∝ exp( -n beta L_n(w) - (gamma / 2) ||w - w*||^2 ) rho(w)

(with ``prior=False`` without rho, as devinterp's estimator) and reading off

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
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from fractalbayes.engine.devices import chain_mesh
from fractalbayes.engine.run import Run
from fractalbayes.errors import ModelError
from fractalbayes.model.target import Target
from fractalbayes.slt.llc.chains import _chain_diagnostics, _Chains, _sample_chains
from fractalbayes.slt.llc.health import _emit, _health
from fractalbayes.slt.llc.settings import LLCSettings
from fractalbayes.slt.llc.training import TrainInfo, _train_kwargs, train


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
    prior: bool
    """Was the model's prior inside the localized posterior? (False: devinterp's estimator.)"""
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
        """True when every health check passed (no warnings)."""
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
                "sampler": self.sampler, "prior": int(self.prior), "loss_kind": self.loss_kind,
                "mala_acceptance": "n/a" if self.mala_acceptance is None else self.mala_acceptance,
                "r_hat": self.r_hat, "ess": self.ess, "num_diverged": int(self.diverged.sum()),
                "warnings": json.dumps(list(self.warnings)),
            }
        )
        return tree


def _centre(target: Target, center: Any, train_options: dict | None, seed: int) -> tuple[np.ndarray, TrainInfo | None]:
    """w*: the given centre, flat and checked, or a minimiser trained with ``train_options``."""
    if center is None:
        return train(target, **_train_kwargs(train_options, seed))
    if train_options:
        raise ModelError("train_options are used only with center=None; drop them or the centre")
    return np.asarray(target.flat_position(center, "center")), None


def _result(chains: _Chains, center: np.ndarray, s: LLCSettings, train_info: TrainInfo | None) -> LLCResult:
    """lambda_hat over the live chains with its ESS, R-hat and MCSE; the health checks warned."""
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
        localization=s.localization, step_size=s.step_size, sampler=s.sampler, prior=s.prior,
        loss_kind=s.loss_kind,
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
    prior: bool = True,
    seed: int = 0,
    full_loss_every: int | None = None,
    sampler_options: dict | None = None,
    shared_batches: bool = False,
    prng_impl: str = "threefry2x32",
    train_options: dict | None = None,
    progress: bool | None = None,
    devices: int | list | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient at ``center`` (Lau et al. 2023, equation (1) above).

    ``center``: a dict of NumPyro sites or a flat unconstrained vector; None trains a minimiser first
    with :func:`train` (``train_options`` go to it; its seed defaults to ``seed``).
    ``nbeta``: "n/log n" (beta = 1/log n, Watanabe's WBIC temperature), "batch" (B / log B,
    devinterp's default) or a number. ``localization`` is gamma. ``step_size`` is the SGLD/SGHMC h
    (ignored by NUTS, which adapts its own during ``burn_in``). Chains start at the centre; after
    ``burn_in`` steps every ``thin``-th of ``num_draws * thin`` steps is a draw. The loss trace is
    the minibatch loss of each draw's step, or with ``full_loss_every=k`` the full-data loss at every
    k-th draw. ``prior=False`` leaves the model's prior out of pi (devinterp's estimator).
    ``sampler_options`` go to the sampler (e.g. ``temperature``, ``schedule``,
    ``num_integration_steps``, ``target_acceptance_rate``); ``shared_batches`` (one minibatch per
    step for all chains), ``prng_impl`` (JAX's PRNG of the steps), ``progress`` and ``devices`` (the
    chains split over devices) to ``fb.sample``.

    Health checks warn (:class:`LLCHealthWarning`, also listed in ``.warnings``) when chains diverge,
    lambda_hat < 0, the loss trace's R-hat exceeds 1.05, or the MALA acceptance of the SGLD
    proposals is below 0.9 (healthy runs show 0.9 or more; on a Gaussian posterior an acceptance of
    0.9 already goes with a step-size bias of order 10 %). Bad arguments raise
    :class:`~fractalbayes.ModelError` before any work.
    """
    s = LLCSettings.build(
        target, nbeta=nbeta, localization=localization, step_size=step_size, num_chains=num_chains,
        num_draws=num_draws, burn_in=burn_in, thin=thin, sampler=sampler, prior=prior, full_loss_every=full_loss_every,
        sampler_options=sampler_options, shared_batches=shared_batches, prng_impl=prng_impl, seed=seed,
    )
    chain_mesh(devices, s.num_chains)  # bad devices fail here, before training a centre
    flat, train_info = _centre(target, center, train_options, s.seed)
    chains = _sample_chains(target, np.repeat(flat[None], s.num_chains, axis=0), s, progress, devices)
    return _result(chains, flat, s, train_info)
