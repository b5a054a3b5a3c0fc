"""The local learning coefficient (Lau et al. 2023): estimate, train a centre, calibrate, trajectory.

lambda_hat(w*) = n beta ( E_pi[L_n(w)] - L_n(w*) ) under the localized tempered posterior
pi(w) ∝ exp(-n beta L_n(w) - (gamma / 2) ||w - w*||^2) rho(w). One job per module: ``settings``
(the typed options and :class:`LLCSettings`), ``training`` (:func:`train`, a minimiser to centre
on), ``chains`` (the localized chains and each one's lambda_hat), ``health`` (MALA acceptance,
R-hat and the warnings), ``estimator`` (:func:`estimate`, :class:`LLCResult`), ``calibration``
(:func:`calibrate`, a step size x localization grid) and ``trajectories`` (:func:`trajectory`, the
LLC at a run's checkpoints).
"""

from fractalbayes.slt.llc import settings
from fractalbayes.slt.llc.calibration import CalibrationResult, calibrate
from fractalbayes.slt.llc.estimator import LLCResult, estimate
from fractalbayes.slt.llc.health import MALA_LIMIT, LLCHealthWarning
from fractalbayes.slt.llc.settings import LLCSettings, resolve_nbeta
from fractalbayes.slt.llc.training import TrainInfo, train
from fractalbayes.slt.llc.trajectories import LLCTrajectory, trajectory

__all__ = [
    "MALA_LIMIT",
    "CalibrationResult",
    "LLCHealthWarning",
    "LLCResult",
    "LLCSettings",
    "LLCTrajectory",
    "TrainInfo",
    "calibrate",
    "estimate",
    "resolve_nbeta",
    "settings",
    "train",
    "trajectory",
]
