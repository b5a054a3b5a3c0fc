"""The local learning coefficient (Lau et al. 2023): estimate, train a centre, calibrate, trajectory."""

from fractalbayes.slt.llc.estimate import (
    MALA_LIMIT,
    CalibrationResult,
    LLCHealthWarning,
    LLCResult,
    LLCTrajectory,
    TrainInfo,
    calibrate,
    estimate,
    resolve_nbeta,
    train,
    trajectory,
)

__all__ = [
    "MALA_LIMIT",
    "CalibrationResult",
    "LLCHealthWarning",
    "LLCResult",
    "LLCTrajectory",
    "TrainInfo",
    "calibrate",
    "estimate",
    "resolve_nbeta",
    "train",
    "trajectory",
]
