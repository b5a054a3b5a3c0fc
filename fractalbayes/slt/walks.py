"""Planted walks with known diffusion exponents: controls for :mod:`fractalbayes.slt.diffusion`.

Each returns positions of shape (chains, K, d) at the returned steps (K,), every chain started
at the origin at step 0 (the OU process: in its stationary law). Known answers (textbook
conventions: P0(t) ~ t^(-d_s/2), R(t) ~ t^(1/d_walk), d_f the visited set's dimension):

==============  ==========================  ====================  ===================
walk            d_walk                      d_f                   d_s
==============  ==========================  ====================  ===================
brownian (d)    2                           d                     d
sierpinski      log 5 / log 2 = 2.322       log 3 / log 2 = 1.585 2 log 3 / log 5 = 1.365
comb            (teeth: 2; backbone: 4)     2                     3/2 (Alexander-Orbach fails)
ctrw (alpha)    2 / alpha (ensemble)        1                     alpha (returns), trapping
ou              confined (plateau)          --                    --
==============  ==========================  ====================  ===================

Sources: Ben-Avraham & Havlin, *Diffusion and Reactions in Fractals and Disordered Systems*
(2000), ch. 5-6 (gasket, comb); Metzler & Klafter, Phys. Rep. 339 (2000) (CTRW); Gardiner,
*Stochastic Methods* (OU).
"""

from __future__ import annotations

import numpy as np

SIERPINSKI = {"d_walk": np.log(5) / np.log(2), "d_f": np.log(3) / np.log(2),
              "d_s": 2 * np.log(3) / np.log(5)}


def brownian(chains: int, steps: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """Gaussian walk with unit-variance steps observed exactly at ``steps`` (increments between
    recorded steps s < s' are N(0, (s' - s) I)); ``steps[0]`` must be 0."""
    rng = np.random.default_rng(seed)
    inc = rng.standard_normal((chains, steps.size - 1, dim)) * np.sqrt(np.diff(steps))[:, None]
    return np.concatenate([np.zeros((chains, 1, dim)), np.cumsum(inc, axis=1)], axis=1)


def _walk_graph(neighbours: np.ndarray, start: int, chains: int, n_steps: int,
                rng: np.random.Generator) -> np.ndarray:
    """Site indices (chains, n_steps + 1) of simple random walks on a graph given as a padded
    neighbour table (sites, 4) (a degree-2 site lists its neighbours twice: uniform choice)."""
    sites = np.empty((chains, n_steps + 1), dtype=np.int64)
    sites[:, 0] = start
    choices = rng.integers(0, neighbours.shape[1], size=(n_steps, chains))
    for t in range(n_steps):
        sites[:, t + 1] = neighbours[sites[:, t], choices[t]]
    return sites


def sierpinski_graph(generation: int) -> tuple[np.ndarray, np.ndarray]:
    """Sierpinski gasket graph of side 2^generation: site coordinates (sites, 2) in the plane and
    the padded neighbour table (sites, 4).

    Unit up-triangles sit at lattice points (a, b), a + b < 2^g, with a & b == 0 (Pascal's
    triangle mod 2, Lucas' theorem); their sides are the graph's edges. Every site has degree 4
    but the three corners (degree 2).
    """
    side = 2**generation
    a, b = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    keep = ((a & b) == 0) & (a + b < side)
    a, b = a[keep], b[keep]
    corners = [(a, b), (a + 1, b), (a, b + 1)]
    edges = np.concatenate([np.stack([p[0] * (side + 1) + p[1], q[0] * (side + 1) + q[1]], 1)
                            for i, p in enumerate(corners) for q in corners[i + 1:]])
    codes, inverse = np.unique(edges, return_inverse=True)
    edges = inverse.reshape(-1, 2)
    both = np.concatenate([edges, edges[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    degree = np.bincount(both[:, 0], minlength=codes.size)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]])
    slot = np.arange(4)[None, :] % degree[:, None]
    neighbours = both[start[:, None] + slot, 1]
    ca, cb = codes // (side + 1), codes % (side + 1)
    xy = np.stack([ca + cb / 2.0, cb * np.sqrt(3) / 2.0], axis=1)
    return xy, neighbours


def sierpinski(chains: int, n_steps: int, generation: int = 9, seed: int = 0) -> np.ndarray:
    """Random walks on the gasket graph from its corner (0, 0), every step recorded:
    (chains, n_steps + 1, 2). Keep n_steps^(1/d_walk) well below 2^generation (the walk must not
    feel the far boundary): n_steps = 4096 moves about 36 lattice units against a side of 512."""
    xy, neighbours = sierpinski_graph(generation)
    origin = int(np.flatnonzero((xy[:, 0] == 0) & (xy[:, 1] == 0))[0])
    sites = _walk_graph(neighbours, origin, chains, n_steps, np.random.default_rng(seed))
    return xy[sites]


def comb(chains: int, n_steps: int, seed: int = 0) -> np.ndarray:
    """Random walks on the 2-D comb (backbone y = 0, a tooth at every integer x), from the origin,
    every step recorded: (chains, n_steps + 1, 2). On the backbone each of the 4 directions has
    probability 1/4; on a tooth up and down have 1/2."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((chains, n_steps + 1, 2))
    moves = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    for t in range(n_steps):
        pick = rng.integers(0, 4, size=chains)
        on_tooth = pos[:, t, 1] != 0
        pick = np.where(on_tooth, 2 + pick % 2, pick)
        pos[:, t + 1] = pos[:, t] + moves[pick]
    return pos


def ctrw(chains: int, n_steps: int, alpha: float = 0.5, seed: int = 0) -> np.ndarray:
    """Discrete-time CTRW in 1-D with unit Gaussian jumps after Pareto waiting times
    P(tau > s) = s^(-alpha) (s >= 1): ensemble MSD ~ t^alpha, time-averaged MSD ~ lag (weak
    ergodicity breaking). Every step recorded: (chains, n_steps + 1, 1)."""
    rng = np.random.default_rng(seed)
    n_jumps = 64
    while True:
        waits = np.ceil(rng.random((chains, n_jumps)) ** (-1.0 / alpha))
        renewals = np.cumsum(waits, axis=1)
        if np.all(renewals[:, -1] > n_steps):
            break
        n_jumps *= 4
    times = np.arange(n_steps + 1)
    counts = np.stack([np.searchsorted(row, times, side="right") for row in renewals])
    walk = np.concatenate([np.zeros((chains, 1)), np.cumsum(rng.standard_normal((chains, n_jumps)),
                                                            axis=1)], axis=1)
    return np.take_along_axis(walk, counts, axis=1)[:, :, None]


def ou(chains: int, steps: np.ndarray, dim: int = 3, rate: float = 0.02, seed: int = 0) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck process dx = -rate x dt + sqrt(2 rate) dW (unit stationary
    variance per coordinate), sampled exactly at ``steps``: x(s') = e^(-rate (s'-s)) x(s) +
    sqrt(1 - e^(-2 rate (s'-s))) N(0, I). Relaxation time 1 / rate."""
    rng = np.random.default_rng(seed)
    out = np.empty((chains, steps.size, dim))
    out[:, 0] = rng.standard_normal((chains, dim))
    for k, gap in enumerate(np.diff(steps), start=1):
        decay = np.exp(-rate * gap)
        out[:, k] = decay * out[:, k - 1] + np.sqrt(1 - decay**2) * rng.standard_normal((chains, dim))
    return out


def ar1_chains(rng: np.random.Generator, chains: int, draws: int, dim: int, rho: float,
               shift: float = 0.0) -> np.ndarray:
    """Stationary AR(1) chains, (chains, draws, dim): x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t with
    N(shift, 1) marginals and integrated autocorrelation time (1 + rho) / (1 - rho): the planted
    MCMC output of the two-sample-test calibration (SCIENCE.md §7)."""
    x = np.empty((chains, draws, dim))
    x[:, 0] = rng.normal(size=(chains, dim))
    noise = rng.normal(size=(chains, draws, dim)) * np.sqrt(1 - rho**2)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x + shift
