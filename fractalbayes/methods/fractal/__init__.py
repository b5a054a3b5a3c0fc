"""The fractal-constrained "almost Bayesian" sampler (registered as ``"fractal"``) and the paper's
tempering test."""

from fractalbayes.methods.fractal.sampler import (
    default_probe,
    measured_d_s,
    mixture_weights,
    run_fractal,
    steady_state,
    tempered_free_energy,
)
from fractalbayes.methods.fractal.tempering_test import TemperingResult, tempering_test

__all__ = [
    "TemperingResult",
    "default_probe",
    "measured_d_s",
    "mixture_weights",
    "run_fractal",
    "steady_state",
    "tempered_free_energy",
    "tempering_test",
]
