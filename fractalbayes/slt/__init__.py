"""Layer 5, singular learning theory: exact learning coefficients, the LLC estimator, weight
diffusion and the tempering fit.

The exact values (`regular_learning_coefficient`, ..., `exact_tempered_loss`) are re-exported here
from `slt.exact`; `slt.llc`, `slt.diffusion` and `slt.tempering` are the estimators.
"""

from fractalbayes.slt import diffusion, llc, tempering, walks
from fractalbayes.slt.exact import (
    dln_learning_coefficient,
    exact_tempered_loss,
    monomial_learning_coefficient,
    regular_learning_coefficient,
    rrr_learning_coefficient,
)

__all__ = [
    "diffusion",
    "dln_learning_coefficient",
    "exact_tempered_loss",
    "llc",
    "monomial_learning_coefficient",
    "regular_learning_coefficient",
    "rrr_learning_coefficient",
    "tempering",
    "walks",
]
