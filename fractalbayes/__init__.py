"""fractalbayes: how SGD, SG-Langevin dynamics and Bayesian posteriors distribute a model's weights.

    import fractalbayes as fb
    target = fb.from_numpyro(model, x, y, batch_size=32)
    run = fb.sample(target, "sgld", num_chains=4, num_samples=1000, step_size=1e-4)
    run.to_arviz(); run.save("sgld.nc"); fb.load_run("sgld.nc")
    fb.summary({"sgld": run, "nuts": fb.sample(target, "nuts")})

The package is built in layers, each importing only the ones before it (docs/architecture.md):
model -> samplers -> engine -> stats -> slt -> methods -> suite.
"""

from fractalbayes import methods
from fractalbayes.engine import Run, load_run, sample
from fractalbayes.errors import FractalBayesError, InputError, ModelError, RunFileError, SamplerError, SuiteError
from fractalbayes.methods import fractal
from fractalbayes.model import Target, data, from_numpyro, predict
from fractalbayes.model import zoo as models
from fractalbayes.samplers import SAMPLERS
from fractalbayes.slt import diffusion, llc, tempering
from fractalbayes import slt
from fractalbayes.slt.llc import train
from fractalbayes import stats
from fractalbayes.stats import basins, compare, compare_figures, metrics, summary

__version__ = "0.1.0"

__all__ = [
    "SAMPLERS",
    "FractalBayesError",
    "InputError",
    "ModelError",
    "Run",
    "RunFileError",
    "SamplerError",
    "SuiteError",
    "Target",
    "basins",
    "compare",
    "compare_figures",
    "data",
    "diffusion",
    "fractal",
    "from_numpyro",
    "llc",
    "load_run",
    "methods",
    "metrics",
    "models",
    "predict",
    "sample",
    "slt",
    "stats",
    "summary",
    "tempering",
    "train",
]
