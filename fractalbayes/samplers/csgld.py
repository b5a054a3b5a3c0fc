"""Contour SGLD (Deng, Lin & Liang 2020, "A contour stochastic gradient Langevin dynamics algorithm
for simulations of multi-modal distributions", NeurIPS) with BlackJAX's kernel, and its reweighting.

The energy U(w) = -log pi(w) of the tempered density (:mod:`fractalbayes.samplers.tempered`) is
cut into ``num_partitions`` bins of width Delta u = ``energy_gap`` from ``min_energy``; theta(i),
the target mass of bin i, is learnt on the fly by stochastic approximation (step ``sa_step_size``)
while SGLD samples the flattened density pi(w) / theta(J(w))^zeta, J(w) the bin of w. Its gradient
is grad log pi(w) scaled by 1 + zeta T (log theta(J) - log theta(J - 1)) / Delta u, which pushes
uphill in energy where the density of states falls fast: energy barriers are flattened and chains
cross between modes. Expectations under pi come back by importance weights (Deng et al., Eq. 9):

    E_pi[f] ~ sum_k theta_k(J(w_k))^zeta f(w_k) / sum_k theta_k(J(w_k))^zeta

recorded per draw as ``run.stats["log_weight"]`` = zeta log theta_k(J(w_k)) (each chain learns its
own theta), with ``run.stats["energy_index"]`` = J(w_k). :func:`mode_masses` gives reweighted masses
of labelled modes. The energy of a draw is the minibatch estimate of -log pi, as in BlackJAX: its
noise blurs the bins (use large batches, or full batch, when the bins are narrow).

``min_energy`` must lie below the lowest energy visited and ``min_energy + (num_partitions - 1)
energy_gap`` above the highest one that matters (barrier tops): -target.log_density(w) at fb.train's
minimiser, less a few nats, is a good ``min_energy``. Energies outside the range fall into the
first or last bin; :func:`mode_masses` warns when most draws do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.sgmcmc import csgld

from fractalbayes import checks
from fractalbayes.errors import ModelError
from fractalbayes.model.target import Target
from fractalbayes.samplers import schedules, tempered
from fractalbayes.samplers.base import Kernel, tree_norm
from fractalbayes.samplers.gradients import (
    tempered_log_density,
    tempered_log_density_and_grad,
)
from fractalbayes.samplers.registry import Option, SamplerSpec, register
from fractalbayes.samplers.sgld import STEP_OPTIONS, LangevinHyper, hyper
from fractalbayes.samplers.sgld_cv import local_center


class CSGLDHyper(NamedTuple):
    langevin: LangevinHyper
    zeta: float
    energy_gap: float
    min_energy: float
    sa_step_size: float


class CSGLDChainState(NamedTuple):
    csgld: csgld.ContourSGLDState
    """BlackJAX's (position, energy_pdf theta, energy_idx J)."""
    center: jax.Array | None
    """The localization centre; None when the kernel is not localized."""


class CSGLDInfo(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array
    step_size: jax.Array
    energy_index: jax.Array
    """J(w), the energy bin of the position after the step."""
    log_weight: jax.Array
    """zeta log theta(J(w)): the draw's log importance weight (up to a per-chain constant)."""


def floor_bin(state: csgld.ContourSGLDState) -> csgld.ContourSGLDState:
    """log theta(0) := 2 log theta(1) - log theta(2), linear extrapolation, before each step.

    BlackJAX clips J to >= 1, so bin 0 is never visited and its mass only decays, yet the gradient
    multiplier in bin 1 reads log theta(1) - log theta(0): left alone it grows without bound and a
    chain in bin 1 is flung away, then diverges once theta(0) underflows to 0. Extrapolating gives
    bin 1 the slope of bin 2 (a slope of 0 instead makes bin 1 sticky: visits there raise theta(1),
    which steepens the push out of bin 2, which keeps the chain in bin 1).
    """
    pdf = state.energy_pdf  # logs of the two bins only (not of all num_partitions)
    return state._replace(energy_pdf=pdf.at[0].set(jnp.exp(2 * jnp.log(pdf[1]) - jnp.log(pdf[2]))))


def csgld_kernel(target: Target, schedule: str | Callable, localized: bool, num_partitions: int) -> Kernel:
    grad_fn = tempered_log_density_and_grad(target, localized)
    density = tempered_log_density(target, localized)

    def init(position, key, hyper: CSGLDHyper) -> CSGLDChainState:
        return CSGLDChainState(csgld.init(position, num_partitions), local_center(position, hyper.langevin, localized))

    def step(key, state: CSGLDChainState, batch, i, hyper: CSGLDHyper):
        h = hyper.langevin
        (_, loss), grad = grad_fn(state.csgld.position, state.center, batch, h.nbeta, h.localization)
        rate = schedules.rate_at(schedule, h.schedule, i)

        def log_density(position, minibatch):
            return density(position, state.center, minibatch, h.nbeta, h.localization)[0]

        # BlackJAX's kernel asks for the gradient once, at the pre-step position: hand it the one
        # computed above (which also gave the loss), and the energy of the new position to bin it.
        kernel = csgld.build_kernel(num_partitions, hyper.energy_gap, hyper.min_energy)
        new = kernel(key, floor_bin(state.csgld), log_density, lambda position, minibatch: grad, batch, rate,
                     hyper.sa_step_size, hyper.zeta, h.temperature)
        log_weight = hyper.zeta * jnp.log(new.energy_pdf[new.energy_idx])
        info = CSGLDInfo(loss, tree_norm(grad), rate, new.energy_idx, log_weight)
        return state._replace(csgld=new), info

    return Kernel(init=init, step=step, position=lambda s: s.csgld.position)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, CSGLDHyper]:
    kind, numbers = hyper("csgld", target, opts, total_steps)
    localized = numbers.localization > 0
    structure = (kind, localized, opts["num_partitions"])
    kernel = target.memo(("csgld", *structure), lambda: csgld_kernel(target, *structure))
    return kernel, CSGLDHyper(numbers, opts["zeta"], opts["energy_gap"], opts["min_energy"], opts["sa_step_size"])


SPEC = register(SamplerSpec(
    name="csgld",
    summary="contour SGLD (Deng et al. 2020, BlackJAX csgld): flattened energy barriers, importance weights",
    options=STEP_OPTIONS + (
        Option("zeta", 1.0, checks.positive(allow_zero=True),
               "flattening exponent: samples pi / theta(J)^zeta; 0 is plain SGLD"),
        Option("num_partitions", 512, checks.integer(2), "number m of energy bins"),
        Option("energy_gap", 10.0, checks.positive(), "bin width Delta u in nats of -log pi"),
        Option("min_energy", 0.0, checks.real(minimum=None),
               "lower edge of the first bin: below the lowest -log pi visited"),
        Option("sa_step_size", 1e-3, checks.real(minimum=0.0, maximum=1.0),
               "stochastic-approximation step omega of the bin masses theta"),
    ) + tempered.OPTIONS,
    build=build,
))


def reweighted_masses(log_weight: np.ndarray, labels: np.ndarray, num_modes: int) -> np.ndarray:
    """Per-chain importance-weighted mode masses (chain, mode) of (chain, draw) log weights and labels.

    Mass of mode k in chain c: sum_t w_ct 1[label_ct = k] / sum_t w_ct, w_ct = exp(log_weight_ct).
    """
    log_weight = np.asarray(log_weight, np.float64)
    labels = np.asarray(labels)
    if log_weight.shape != labels.shape or log_weight.ndim != 2:
        raise ModelError(f"log weights {log_weight.shape} and labels {labels.shape} must both be (chain, draw)")
    if labels.min() < 0 or labels.max() >= num_modes:
        raise ModelError(f"labels must be integers in [0, {num_modes}), got [{labels.min()}, {labels.max()}]")
    weights = np.exp(log_weight - log_weight.max(axis=1, keepdims=True))
    one_hot = labels[..., None] == np.arange(num_modes)
    return np.einsum("cd,cdk->ck", weights, one_hot) / weights.sum(axis=1)[:, None]


def mode_masses(run: Any, labels: np.ndarray, num_modes: int | None = None, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reweighted masses of labelled modes from a csgld run: (mean over chains, standard error).

    ``labels`` is a (chain, draw) array of mode indices (e.g. ``(run.positions[..., 0] > 0)``); the
    first ``skip`` draws of each chain (while theta is still being learnt) are left out. Each chain
    gives its own estimate (its own theta); the standard error is their spread / sqrt(chains).
    """
    if run.sampler != "csgld":
        raise ModelError(f"mode_masses reweights csgld runs; this run is {run.sampler!r}")
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != run.stats["log_weight"].shape:
        raise ModelError(f"labels must be (chain, draw) = {run.stats['log_weight'].shape}, got {labels.shape}")
    skip = checks.count("skip", skip, 0)
    if skip >= labels.shape[1]:
        raise ModelError(f"skip={skip} leaves no draws of {labels.shape[1]}")
    num_modes = int(labels.max()) + 1 if num_modes is None else checks.count("num_modes", num_modes, 1)
    index = run.stats["energy_index"][:, skip:]
    edge = np.mean((index <= 1) | (index >= run.config.options["num_partitions"] - 1))
    if edge > 0.5:
        warnings.warn(
            f"{edge:.0%} of the draws sit in the first or last energy bin: the energies fall outside "
            f"[min_energy, min_energy + (num_partitions - 1) energy_gap]; set min_energy just below "
            f"-log pi at the mode and energy_gap so that the range spans the barriers", stacklevel=2)
    per_chain = reweighted_masses(run.stats["log_weight"][:, skip:], labels[:, skip:], num_modes)
    spread = per_chain.std(axis=0, ddof=1) if len(per_chain) > 1 else np.full(num_modes, np.nan)
    return per_chain.mean(axis=0), spread / np.sqrt(len(per_chain))
