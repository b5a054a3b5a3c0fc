"""Noise floors: what a distance between two sample sets reads when nothing differs.

A plug-in distance between finite samples is biased upward even between two samples of one law
(Gaussian KL by about d(d + 3) / (2n) nats, SCIENCE.md §7). ``split_half_floor`` measures that floor
on the reference itself: the same statistic between its two halves, by whole chains when it has at
least two (so autocorrelation is respected), else by the first and second half of its draws. Each
half has half the draws of the comparison it calibrates, so for statistics whose bias falls like 1/n
the floor is about twice the bias at full size: a conservative bar (docs/calibration.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fractalbayes.errors import InputError


def split_halves(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of (chains, draws, dim) draws: by chains when there are >= 2, else by draws."""
    draws = np.asarray(draws)
    if draws.ndim != 3 or draws.shape[1] < 2:
        raise InputError(f"draws must be (chains, draws >= 2, dim), got shape {draws.shape}")
    chains = draws.shape[0]
    if chains >= 2:
        return draws[: chains // 2], draws[chains // 2:]
    half = draws.shape[1] // 2
    return draws[:, :half], draws[:, half:]


def split_half_floor(draws: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float]) -> float:
    """``statistic(first half, second half)`` of the reference's (chains, draws, dim) draws."""
    first, second = split_halves(draws)
    return float(statistic(first, second))
