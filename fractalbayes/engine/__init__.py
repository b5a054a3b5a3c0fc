"""Layer 3, the engine: one driver runs any registered sampler and returns a `Run`.

`sample` (dispatch through the sampler registry, the scan driver) and `run` (the Run container,
its ArviZ DataTree and netCDF I/O). Imports the model and samplers layers only. Importing the
engine turns on JAX's persistent compilation cache (:mod:`fractalbayes.engine.cache`; opt out with
``FRACTALBAYES_NO_CACHE=1``).
"""

from fractalbayes.engine import cache
from fractalbayes.engine.run import Run, load_run
from fractalbayes.engine.sample import sample

cache.enable()

__all__ = ["Run", "load_run", "sample"]
