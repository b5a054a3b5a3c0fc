"""Preconditioned SGLD with an RMSprop preconditioner (Li, Chen, Carlson & Carin 2016, Algorithm 1).

    V_t = decay V_{t-1} + (1 - decay) g_t * g_t,          V_hat_t = V_t / (1 - decay^t)
    G_t = 1 / (epsilon + sqrt(V_hat_t))                    (diagonal)
    w_{t+1} = w_t + h G_t g_t + sqrt(2 T h G_t) xi,        xi ~ N(0, I)

with g the minibatch gradient of the tempered density of :mod:`fractalbayes.samplers.tempered`
(Li et al. write the step as eps/2 = h and accumulate the per-example mean gradient, which only
rescales h and epsilon). The correction term Gamma(w) = sum_j dG_ij / dw_j of Li et al.'s update is
**dropped**, as Li et al. recommend for decay close to 1 (their Sec. 3.1: G changes slowly, and the
bias it leaves is of order (1 - decay) / sqrt(1 - decay)); devinterp's RMSprop-SGLD drops it too.
V starts at 0 with Adam's bias correction 1 / (1 - decay^t), so that the first step already uses
G = 1 / (epsilon + |g_1|) instead of 1 / epsilon. Every coordinate then moves about h per step
whatever its gradient scale: h is a length in parameter space, not a squared one as for SGLD.

The update is BlackJAX's overdamped Langevin integrator with the per-coordinate step size h G_t.
With a constant preconditioner P, the Euler chain on a Gaussian target of precision A has the
stationary covariance S solving S = (I - h P A) S (I - h P A)^T + 2 h T P: the discretisation
bias is set by the preconditioned step h P A (h sqrt(A) for G ~ 1 / sqrt(A)), not by h A.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.sgmcmc import diffusions

from fractalbayes import checks
from fractalbayes.model.target import Target
from fractalbayes.samplers import schedules, tempered
from fractalbayes.samplers.base import Kernel, tree_norm
from fractalbayes.samplers.gradients import tempered_log_density_and_grad
from fractalbayes.samplers.registry import Option, SamplerSpec, register
from fractalbayes.samplers.sgld import STEP_OPTIONS, LangevinHyper, hyper
from fractalbayes.samplers.sgld_cv import local_center


class PSGLDHyper(NamedTuple):
    langevin: LangevinHyper
    decay: float
    epsilon: float


class PSGLDState(NamedTuple):
    position: jax.Array
    center: jax.Array | None
    """The localization centre; None when the kernel is not localized."""
    square_avg: jax.Array
    """V: the exponential moving average of g * g (without bias correction)."""


class PSGLDInfo(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array
    step_size: jax.Array
    preconditioner: jax.Array
    """Mean over coordinates of the diagonal preconditioner G of the step."""


def _decay(value) -> float:
    value = checks.real(minimum=0.0, allow_minimum=True, maximum=1.0)(value)
    if value == 1.0:
        raise checks.Invalid("must be < 1 (V would never move from 0); use e.g. 0.99")
    return value


_decay.want = "a number in [0, 1)"


def preconditioner(square_avg: jax.Array, step: jax.Array, decay, epsilon) -> jax.Array:
    """G = 1 / (epsilon + sqrt(V / (1 - decay^step))) after ``step`` >= 1 updates of V."""
    return 1.0 / (epsilon + jnp.sqrt(square_avg / (1.0 - decay ** step)))


def psgld_kernel(target: Target, schedule: str | Callable, localized: bool) -> Kernel:
    grad_fn = tempered_log_density_and_grad(target, localized)
    integrator = diffusions.overdamped_langevin()

    def init(position, key, hyper: PSGLDHyper) -> PSGLDState:
        return PSGLDState(position, local_center(position, hyper.langevin, localized), jnp.zeros_like(position))

    def step(key, state: PSGLDState, batch, i, hyper: PSGLDHyper):
        h = hyper.langevin
        (_, loss), grad = grad_fn(state.position, state.center, batch, h.nbeta, h.localization)
        rate = schedules.rate_at(schedule, h.schedule, i)
        square_avg = hyper.decay * state.square_avg + (1.0 - hyper.decay) * jnp.square(grad)
        gain = preconditioner(square_avg, i + 1, hyper.decay, hyper.epsilon)
        # w + (h G) g + sqrt(2 T (h G)) xi: the integrator with a per-coordinate step size.
        position = integrator(key, state.position, grad, rate * gain, h.temperature)
        info = PSGLDInfo(loss, tree_norm(grad), rate, jnp.mean(gain))
        return PSGLDState(position, state.center, square_avg), info

    return Kernel(init=init, step=step, position=lambda s: s.position)


def build(target: Target, opts: dict, total_steps: int) -> tuple[Kernel, PSGLDHyper]:
    kind, numbers = hyper("psgld", target, opts, total_steps)
    localized = numbers.localization > 0
    kernel = target.memo(("psgld", kind, localized), lambda: psgld_kernel(target, kind, localized))
    return kernel, PSGLDHyper(numbers, opts["decay"], opts["epsilon"])


SPEC = register(SamplerSpec(
    name="psgld",
    summary="preconditioned SGLD (Li et al. 2016): RMSprop diagonal preconditioner, Gamma term dropped",
    options=(
        Option("step_size", 1e-3, checks.positive(),
               "step size h of w + h G g + sqrt(2 T h G) xi (about the distance each coordinate moves)"),
    ) + STEP_OPTIONS[1:] + (
        Option("decay", 0.99, _decay, "RMSprop decay alpha of V"),
        Option("epsilon", 1e-5, checks.positive(), "lambda of G = 1 / (lambda + sqrt(V)): caps G at 1/lambda"),
    ) + tempered.OPTIONS,
    build=build,
))
