"""fractalbayes: how SGD, SG-Langevin dynamics and Bayesian posteriors distribute a model's weights.

    import fractalbayes as fb
    target = fb.from_numpyro(model, x, y, batch_size=32)
    run = fb.sample(target, "sgld", num_chains=4, num_samples=1000, step_size=1e-4)
    run.to_arviz(); run.save("sgld.nc"); fb.load_run("sgld.nc")
    fb.summary({"sgld": run, "nuts": fb.sample(target, "nuts")})
"""

from . import data, diffusion, llc, metrics, models, slt, tempering
from .compare import compare, compare_figures
from .diagnostics import summary
from .llc import train
from .errors import ModelError, SamplerError
from .run import Run, load_run
from .sampling import sample
from .samplers import SAMPLERS
from .target import Target, from_numpyro

__version__ = "0.1.0"

__all__ = [
    "ModelError",
    "compare",
    "compare_figures",
    "metrics",
    "slt",
    "tempering",
    "Run",
    "SAMPLERS",
    "SamplerError",
    "Target",
    "data",
    "diffusion",
    "llc",
    "train",
    "from_numpyro",
    "load_run",
    "models",
    "sample",
    "summary",
]
