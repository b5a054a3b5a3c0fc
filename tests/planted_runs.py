"""Runs planted at the four corners (+-2, +-2): basin labels in, a `fb.Run` out (no sampling), for
the tempering tests of tests/test_fractal.py and tests/test_tempering.py."""

import numpy as np

import fractalbayes as fb
from fractalbayes.engine.config import RunConfig, TargetInfo

CORNERS = np.array([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])


def corner_run(target, sampler: str, labels: np.ndarray, seed: int, jitter: float = 0.05) -> fb.Run:
    """A run whose draws sit at the corner of their basin label (chain, draw), jittered by ``jitter``."""
    positions = CORNERS[labels] + jitter * np.random.default_rng(seed).normal(size=labels.shape + (2,))
    chains, draws = labels.shape
    info = TargetInfo(target.name, target.n_data, target.dim, target.fingerprint)
    config = RunConfig(sampler, {}, chains, draws, 0, 1, seed, target.batch_size, info)
    return fb.Run(sampler=sampler, positions=positions, sites={"w": positions}, stats={"loss": np.zeros(labels.shape)},
                  checkpoints=positions[:, -1:], checkpoint_steps=np.array([0]), diverged_at=np.full(chains, -1),
                  config=config, target=target)
