"""SGLD with control-variate gradients (Baker, Fearnhead, Fox & Nemeth 2019, "Control variates for
stochastic gradient MCMC", Statistics and Computing 29).

The minibatch estimate of the likelihood gradient is centred at a fixed point w_hat (ideally the
posterior mode) whose full-data gradient is computed once:

    g(w) = grad log rho(w) - nbeta [ grad L_n(w_hat) + grad L_B(w) - grad L_B(w_hat) ]
           - localization (w - center)

which is unbiased for the full-data gradient like plain SGLD's, with a variance that vanishes as w
approaches w_hat: nbeta^2 Var_B[grad L_B(w) - grad L_B(w_hat)] = O(||w - w_hat||^2) instead of
nbeta^2 Var_B[grad L_B(w)] = O(1) (Baker et al., Lemma 1). It is the gradient estimator of
``blackjax.sgmcmc.gradients.control_variates`` (tests check the two agree); that builder
evaluates the full-data gradient when it is called, so calling it inside the step would recompute
it every step, and calling it once would bake the centre into the compiled kernel. Here the centre
and its full-data gradient live in each chain's state, computed once by ``init``. The step is
BlackJAX's overdamped Langevin integrator, as for :mod:`fractalbayes.samplers.sgld`.

The centre (``cv_center``): a flat vector or dict of sites (e.g. ``fb.train(target)[0]``, the
minimiser of L_n), recorded in ``run.config.options``; None uses the localization ``center`` when
given, else each chain's initial position, so that chains started at a minimiser (as
``fb.llc.estimate`` starts them at w*) are centred there. Each step costs two minibatch gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from blackjax.sgmcmc import diffusions

from fractalbayes.model.target import Target
from fractalbayes.samplers import schedules, tempered
from fractalbayes.samplers.base import Kernel, StepInfo, tree_norm
from fractalbayes.samplers.gradients import tempered_log_density_and_grad
from fractalbayes.samplers.registry import Option, SamplerSpec, register
from fractalbayes.samplers.sgld import STEP_OPTIONS, LangevinHyper, hyper


class CVHyper(NamedTuple):
    langevin: LangevinHyper
    cv_center: Any = None
    """A centre shared by every chain (given, or the localization centre), else None."""
    cv_grad: Any = None
    """grad L_n at the shared centre, computed once per run."""


class CVState(NamedTuple):
    position: jax.Array
    center: jax.Array | None
    """The localization centre (see :mod:`fractalbayes.samplers.tempered`); None when not localized."""
    cv_center: jax.Array | None
    """w_hat, this chain's control-variate centre (its start); None when the centre is shared."""
    cv_grad: jax.Array | None
    """grad L_n(w_hat), the full-data gradient of the mean NLL at the centre; None when shared."""


def local_center(position: jax.Array, numbers: LangevinHyper, localized: bool) -> jax.Array | None:
    """The chain's localization centre (the given one, else its start), or None when the kernel is
    not localized: the tempered density then never reads it, and a carried copy per chain would
    cost a select per step in the driver (~O(d) memory traffic)."""
    if not localized:
        return None
    return position if numbers.center is None else numbers.center


def cv_gradient(target: Target, localized: bool) -> Callable:
    """``(z, center, cv_center, cv_grad, batch, nbeta, localization) -> ((log pi_B(z), L_B(z)), g(z))``

    with g the control-variate gradient of the module docstring (two minibatch gradients).
    """
    grad_fn = tempered_log_density_and_grad(target, localized)
    loss_grad = jax.grad(target.loss)

    def estimate(z, center, cv_center, cv_grad, batch, nbeta, localization):
        value, grad = grad_fn(z, center, batch, nbeta, localization)
        correction = nbeta * (loss_grad(cv_center, batch) - cv_grad)
        return value, grad + correction

    return estimate


def cv_kernel(target: Target, schedule: str | Callable, localized: bool) -> Kernel:
    estimate = cv_gradient(target, localized)
    full_loss_grad = jax.grad(target.full_loss)
    integrator = diffusions.overdamped_langevin()

    def init(position, key, hyper: CVHyper) -> CVState:
        center = local_center(position, hyper.langevin, localized)
        if hyper.cv_center is not None:
            return CVState(position, center, None, None)
        return CVState(position, center, position, full_loss_grad(position))

    def step(key, state: CVState, batch, i, hyper: CVHyper):
        h = hyper.langevin
        # A shared centre stays unbatched under the chains' vmap: its minibatch gradients then run
        # with one set of weights for every chain's batch (one larger matmul instead of C small ones).
        shared = hyper.cv_center is not None
        cv_center, cv_grad = (hyper.cv_center, hyper.cv_grad) if shared else (state.cv_center, state.cv_grad)
        (_, loss), grad = estimate(state.position, state.center, cv_center, cv_grad, batch, h.nbeta, h.localization)
        rate = schedules.rate_at(schedule, h.schedule, i)
        position = integrator(key, state.position, grad, rate, h.temperature)
        return state._replace(position=position), StepInfo(loss, tree_norm(grad), rate)

    return Kernel(init=init, step=step, position=lambda s: s.position, single_step_blocks=True)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, CVHyper]:
    kind, numbers = hyper("sgld_cv", target, opts, total_steps)
    given = opts["cv_center"]
    cv_center = numbers.center if given is None else target.flat_position(given, "sgld_cv: cv_center")
    localized = numbers.localization > 0
    kernel = target.memo(("sgld_cv", kind, localized), lambda: cv_kernel(target, kind, localized))
    if cv_center is None:
        return kernel, CVHyper(numbers)
    full_loss_grad = target.memo("full_loss_grad", lambda: jax.jit(jax.grad(target.full_loss)))
    return kernel, CVHyper(numbers, cv_center, full_loss_grad(cv_center))


SPEC = register(SamplerSpec(
    name="sgld_cv",
    summary="SGLD with control-variate gradients centred at a minimiser (Baker et al. 2019)",
    options=STEP_OPTIONS + (
        Option("cv_center", None, tempered.CENTER.validate,
               "control-variate centre w_hat (flat vector or sites, e.g. fb.train's minimiser); "
               "None: the localization center, else each chain's start"),
    ) + tempered.OPTIONS,
    build=build,
))
