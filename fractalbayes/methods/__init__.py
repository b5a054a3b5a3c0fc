"""Layer 6, composite methods: samplers built from the layers below and registered like kernels.

`fractal`: the paper's fractal-constrained sampler (``fb.sample(target, "fractal")``) and its
tempering test.
"""

from fractalbayes.methods import fractal

__all__ = ["fractal"]
