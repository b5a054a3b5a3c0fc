"""Layer 1, the model: a NumPyro model and its data become a flat unconstrained `Target`.

`target` (NumPyro -> Target), `inputs` (the model's arguments named and checked at the door), `zoo` (the models the toolkit ships), `data` (offline data sets) and
`predict` (function-space outputs of a Target at given positions). Imports nothing above it.
"""

from fractalbayes.model import data, predict, zoo
from fractalbayes.model.target import Target, from_numpyro

__all__ = ["Target", "data", "from_numpyro", "predict", "zoo"]
