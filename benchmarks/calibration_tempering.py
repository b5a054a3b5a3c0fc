"""Calibration of the tempering test's bootstrap (methods/fractal/tempering_uncertainty.py): is the
bootstrap SE of each model's in-sample KL the spread of that KL over independent datasets, and does
the 90 % percentile interval cover the population value? Run through benchmarks/calibration.py
(study ``tempering_bootstrap``); tests/test_tempering.py keeps a small version.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fractalbayes.methods.fractal import tempering_uncertainty as u
from fractalbayes.slt.tempering import basin_diffusion_coefficient

LAMBDAS, LAMBDA_SE = np.array([0.8, 1.4, 2.0, 2.6]), np.full(4, 0.1)
P_B = np.array([0.1, 0.2, 0.3, 0.4])
FIT = {"d_s": 3.0, "m": 200}
NAMES = ("untempered", "global", "llc", "free_energy")


def planted(distortion: np.ndarray) -> np.ndarray:
    """SGD masses: the LLC form's prediction (xi = 0.8, s = 1, d_s = 3) times ``distortion``."""
    q = P_B ** (1 / basin_diffusion_coefficient(LAMBDAS, 0.8, 3.0)) * distortion
    return q / q.sum()


def dataset(rng: np.random.Generator, q: np.ndarray, nets: int, chains: int, draws: int):
    return (rng.choice(4, nets, p=q), rng.choice(4, (chains, draws), p=P_B),
            LAMBDAS + LAMBDA_SE * rng.standard_normal(4))


def in_sample(labels_sgd, labels_post, lambdas, starts=None):
    p_sgd, p_b = u.masses(labels_sgd, 4), u.masses(labels_post, 4)
    fits = u.fit_models(p_sgd, p_b, lambdas, FIT, starts=starts)
    return fits, u.scores(p_b, u.predictions(fits, p_sgd, lambdas))


def study_tempering_bootstrap(quick: bool) -> pd.DataFrame:
    """Per planted design and model: SD of the in-sample KL over independent datasets (the truth the
    bootstrap SE estimates), mean bootstrap SE over datasets (their ratio), and the coverage of the
    90 % percentile interval for the population KL (the model fitted to the exact masses and lambdas).
    Designs: the LLC form with a distortion (misfit, KL well above its noise) or without (exact fit,
    KL at its boundary 0), at 200 nets / 10 x 40 posterior draws and 1000 nets / 10 x 100."""
    replicates, datasets, resamples = (60, 4, 30) if quick else (300, 20, 100)
    rows = []
    for label, distortion in (("misfit", np.array([1.1, 0.6, 1.5, 1.0])), ("exact fit", np.ones(4))):
        q = planted(distortion)
        population_fits = u.fit_models(q, P_B, LAMBDAS, FIT)
        population = u.scores(P_B, u.predictions(population_fits, q, LAMBDAS))
        for nets, chains, draws in ((200, 10, 40), (1000, 10, 100)):
            rng = np.random.default_rng(nets + len(label))
            truth = {name: [] for name in NAMES}
            for _ in range(replicates):
                scores = in_sample(*dataset(rng, q, nets, chains, draws), population_fits)[1]
                for name, values in truth.items():
                    values.append(scores[name]["kl"])
            ses, covered = {name: [] for name in NAMES}, {name: [] for name in NAMES}
            for d in range(datasets):
                labels_sgd, labels_post, lambdas = dataset(rng, q, nets, chains, draws)
                fits = in_sample(labels_sgd, labels_post, lambdas)[0]
                boot = u.bootstrap(labels_sgd, labels_post, 4, lambdas, LAMBDA_SE, FIT, fits, [], resamples,
                                   np.random.default_rng([nets, d]))
                for name in NAMES:
                    summary = u.summarise(boot["replicates"][name]["kl"])
                    ses[name].append(summary["se"])
                    covered[name].append(summary["lo"] <= population[name]["kl"] <= summary["hi"])
            for name in NAMES:
                sd = float(np.nanstd(truth[name], ddof=1))
                mean_se = float(np.nanmean(ses[name]))
                coverage = float(np.mean(covered[name]))
                rows.append({"design": label, "nets": nets, "posterior draws": f"{chains} x {draws}", "model": name,
                             "population KL": population[name]["kl"], "SD over datasets": sd,
                             "mean bootstrap SE": mean_se, "ratio": mean_se / sd if sd > 0 else float("nan"),
                             "90 % coverage": coverage,
                             "coverage se": float(np.sqrt(max(coverage * (1 - coverage), 1e-12) / datasets))})
    return pd.DataFrame(rows)
