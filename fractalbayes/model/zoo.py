"""NumPyro models that ship with fractalbayes.

Every model takes the inputs ``x`` (one row per example) and the observations ``y`` (``None`` to
sample from the prior predictive), keeps its observations in a plate named ``"data"`` whose size
comes from ``x``, and takes its hyperparameters as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from fractalbayes import checks
from fractalbayes.errors import ModelError

NORMALIZATIONS = ("none", "weight")
"""``mlp_classifier``'s hidden-layer parametrisations."""


def _normal(name: str, shape: tuple[int, ...], scale: float):
    return numpyro.sample(name, dist.Normal(0.0, scale).expand(shape).to_event(len(shape)))


def linear_regression(x, y=None, *, prior_scale: float = 1.0, noise_scale: float = 1.0, bias: bool = False):
    """y_i ~ N(x_i w (+ b), noise_scale^2), w_j ~ N(0, prior_scale^2): conjugate when noise is known."""
    w = _normal("w", (x.shape[1],), prior_scale)
    mean = x @ w
    if bias:
        mean = mean + _normal("b", (), prior_scale)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(mean, noise_scale), obs=y)


def logistic_regression(x, y=None, *, prior_scale: float = 1.0):
    """y_i ~ Bernoulli(sigmoid(x_i w + b)), w_j, b ~ N(0, prior_scale^2)."""
    w = _normal("w", (x.shape[1],), prior_scale)
    b = _normal("b", (), prior_scale)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def mlp_classifier(
    x,
    y=None,
    *,
    widths: Sequence[int] = (16,),
    num_classes: int = 2,
    prior_scale: float = 1.0,
    normalization: str = "none",
):
    """Fully connected ReLU network with a softmax output: y_i ~ Categorical(softmax(f(x_i; w))).

    ``normalization="none"``: layer l has weights ``w{l}`` (fan_in x fan_out) and biases ``b{l}``,
    all N(0, prior_scale^2).

    ``normalization="weight"``: every hidden layer is weight-normalised (Salimans & Kingma 2016,
    eq. 2), unit j's weight vector w_j = g_j v_j / ||v_j||, with directions ``v{l}`` (fan_in x
    fan_out, column j = v_j), gains ``g{l}`` (fan_out) and biases ``b{l}``, all N(0, prior_scale^2);
    the output layer stays ``w{l}``, ``b{l}``. The likelihood is invariant to v_j -> c v_j for every
    c > 0, the scale invariance that batch norm gives the hidden layers of the paper's nets (batch
    norm itself normalises by batch statistics, which no per-example likelihood can express); only
    the prior sees ||v_j||. The gradient of the likelihood is orthogonal to v_j, so plain SGD grows
    ||v_j|| and with it shrinks the effective step on the direction (Salimans & Kingma, section 2.1).
    Under Adam the prior's gradient on ||v_j|| (``objective="map"``) is rescaled to a constant-speed
    shrink, so directions can collapse to 0 and the loss turns non-finite (docs/suites.md,
    paper-mlp-sgd-vs-adam variants).
    """
    checks.check("mlp_classifier: normalization", normalization, checks.choice(*NORMALIZATIONS), ModelError)
    h = x
    sizes = [x.shape[1], *widths, num_classes]
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        hidden = layer < len(sizes) - 2
        if hidden and normalization == "weight":
            v = _normal(f"v{layer}", (fan_in, fan_out), prior_scale)
            g = _normal(f"g{layer}", (fan_out,), prior_scale)
            w = v * (g / jnp.sqrt(jnp.sum(v**2, axis=0)))
        else:
            w = _normal(f"w{layer}", (fan_in, fan_out), prior_scale)
        b = _normal(f"b{layer}", (fan_out,), prior_scale)
        h = h @ w + b
        if hidden:
            h = jnp.maximum(h, 0.0)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Categorical(logits=h), obs=y)


def deep_linear_network(
    x,
    y=None,
    *,
    hidden: Sequence[int] = (4,),
    out_dim: int | None = None,
    prior_scale: float = 1.0,
    noise_scale: float = 1.0,
):
    """y_i ~ N(W_L ... W_1 x_i, noise_scale^2 I), every W_l entry N(0, prior_scale^2).

    One hidden layer is reduced-rank regression (Aoyagi & Watanabe 2005); more layers are the deep
    linear networks of Aoyagi (2024). ``out_dim`` defaults to ``y.shape[1]``.
    """
    if out_dim is None:
        out_dim = y.shape[1]
    h = x
    sizes = [x.shape[1], *hidden, out_dim]
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        h = h @ _normal(f"w{layer}", (fan_in, fan_out), prior_scale)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(h, noise_scale).to_event(1), obs=y)


def normal_crossing(
    x, y=None, *, k: Sequence[int] = (1, 2), prior_scale: float = 1.0, noise_scale: float = 1.0
):
    """y_i ~ N(x_i prod_j w_j^{k_j}, noise_scale^2): population loss K(w) ∝ prod_j w_j^{2 k_j}.

    At the true parameter w = 0 its learning coefficient is min_j 1/(2 k_j) (Watanabe 2009).
    """
    w = _normal("w", (len(k),), prior_scale)
    coefficient = jnp.prod(w ** jnp.asarray(k))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x.reshape(-1) * coefficient, noise_scale), obs=y)


MODELS = {
    "linear_regression": linear_regression,
    "logistic_regression": logistic_regression,
    "mlp_classifier": mlp_classifier,
    "deep_linear_network": deep_linear_network,
    "normal_crossing": normal_crossing,
}
