"""LLC estimator speed (issue 3): one ``fb.llc.estimate`` of 4 chains x 2000 draws, batch 500.

    .venv/bin/python benchmarks/llc.py            # full run (about a minute on 2 CPU cores)
    .venv/bin/python benchmarks/llc.py --quick    # smoke run
    .venv/bin/python benchmarks/llc.py --levers   # shared batches and the rbg PRNG, side by side

Target: a deep linear network with widths (10, 10, 10, 10, 3) (330 parameters, prior N(0, 1/10) per
weight so the product's scale is O(1)) on ``fb.data.dln_teacher`` data of rank 2, n = 10^4; the
centre is trained once with ``fb.llc.train`` (Adam, cosine decay, 3000 steps). The estimate is SGLD
with step size 1e-5, nbeta = n / log n, localization 1, no burn-in (2000 steps per chain), minibatch
loss trace; its full cost is timed: sampling, L_n at the centre, the MALA check, R-hat and ESS.

Reported: compile time (first call minus the best repeat of the same call), the steady wall time
of the whole call after compilation (target: < 3 s on 2 cores) and of its sampling phase
(``run.timings["sampling_s"]``), and the steady time over a grid of chains x draws with the
exponent of a log-log fit of time against chains x draws (1 = linear; below 1 = fixed costs or
vectorisation over chains). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402

import fractalbayes as fb  # noqa: E402
from fractalbayes.slt import llc  # noqa: E402
from fractalbayes.slt import dln_learning_coefficient  # noqa: E402

WIDTHS = (10, 10, 10, 10, 3)
RANK = 2
N = 10_000
BATCH = 500
STEP_SIZE = 1e-5


def build_target() -> fb.Target:
    data = fb.data.dln_teacher(N, WIDTHS, rank=RANK, seed=0)
    model = functools.partial(fb.models.deep_linear_network, hidden=WIDTHS[1:-1], out_dim=WIDTHS[-1],
                              prior_scale=10**-0.5)
    return fb.from_numpyro(model, data.x_train, data.y_train, batch_size=BATCH)


def timed_estimate(target, center, chains: int, draws: int, seed: int = 0, **levers):
    tic = time.perf_counter()
    result = llc.estimate(target, center, step_size=STEP_SIZE, num_chains=chains, num_draws=draws,
                          burn_in=0, seed=seed, progress=False, **levers)
    return time.perf_counter() - tic, result


LEVERS = {
    "default": {},
    "shared_batches": {"shared_batches": True},
    "rbg": {"prng_impl": "rbg"},
    "shared_batches + rbg": {"shared_batches": True, "prng_impl": "rbg"},
}


def levers(target, center, repeats: int) -> dict:
    """The 4 x 2000 estimate under each lever, repeats alternating between them (after one compiling
    call each): median and range of the whole call, lambda_hat of each repeat, and microseconds per
    chain-step against the model's FLOPs per chain-step (forward and backward passes of the deep
    linear network on one minibatch: about 6 x batch x d)."""
    for options in LEVERS.values():
        timed_estimate(target, center, 4, 2000, **options)
    seconds = {name: [] for name in LEVERS}
    lambdas = {name: [] for name in LEVERS}
    for seed in range(1, repeats + 1):
        for name, options in LEVERS.items():
            took, result = timed_estimate(target, center, 4, 2000, seed, **options)
            seconds[name].append(took)
            lambdas[name].append(result.mean)
    flops = 6 * BATCH * target.dim
    out = {}
    for name in LEVERS:
        median = float(np.median(seconds[name]))
        out[name] = {"median_s": median, "min_s": min(seconds[name]), "max_s": max(seconds[name]),
                     "us_per_chain_step": 1e6 * median / 8000, "gflops": flops * 8000 / median / 1e9,
                     "lambda_hat": [float(v) for v in lambdas[name]]}
        print(f"  {name:>22}: {median:.3f} s median [{min(seconds[name]):.3f}-{max(seconds[name]):.3f}], "
              f"{out[name]['us_per_chain_step']:.1f} us per chain-step ({out[name]['gflops']:.1f} GFLOP/s), "
              f"lambda_hat {np.mean(lambdas[name]):.2f} +- {np.std(lambdas[name]):.2f} over repeats")
    return out


def steady(target, center, chains: int, draws: int, repeats: int) -> tuple[float, float, float, object]:
    """(first call, best repeat, best repeat's sampling phase, last result) for one shape."""
    first, result = timed_estimate(target, center, chains, draws)
    times, sampling = [], []
    for seed in range(1, repeats + 1):
        seconds, result = timed_estimate(target, center, chains, draws, seed)
        times.append(seconds)
        sampling.append(result.run.timings["sampling_s"])
    best = int(np.argmin(times))
    return first, times[best], sampling[best], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and grid points")
    parser.add_argument("--levers", action="store_true",
                        help="only the levers (shared batches, the rbg PRNG) on the 4 x 2000 estimate")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per lever (default 3, quick 2)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", llc.LLCHealthWarning)
    repeats = 2 if args.quick else 3

    target = build_target()
    tic = time.perf_counter()
    center, info = llc.train(target, num_steps=3000)
    train_s = time.perf_counter() - tic
    if args.levers:
        print(f"DLN {WIDTHS}, d = {target.dim}, n = {N}, batch {BATCH}, 4 chains x 2000 draws; levers:")
        out = levers(target, center, args.repeats or repeats)
        print(json.dumps({"benchmark": "llc levers", "load_average": os.getloadavg(), "jax": jax.__version__,
                          "levers": out}))
        return

    first, best, sampling, result = steady(target, center, 4, 2000, repeats)
    headline = {
        "compile_s": first - best,
        "estimate_s": best,
        "sampling_s": sampling,
        "target_s": 3.0,
        "meets_target": best < 3.0,
        "lambda_hat": result.mean,
        "lambda_hat_mcse": result.mcse,
        "lambda_exact": float(dln_learning_coefficient(list(WIDTHS), RANK)[0]),
        "mala_acceptance": result.mala_acceptance,
        "r_hat": result.r_hat,
    }
    print(f"DLN {WIDTHS}, d = {target.dim}, n = {N}, batch {BATCH}; train {train_s:.2f} s "
          f"(L_n {info.loss:.4f}, |grad| {info.grad_norm:.3g})")
    print(f"4 chains x 2000 draws: compile {headline['compile_s']:.2f} s, estimate {best:.3f} s "
          f"(sampling {sampling:.3f} s); lambda_hat {result.mean:.2f} +- {result.mcse:.2f} "
          f"(exact lambda {headline['lambda_exact']:.0f}), MALA {result.mala_acceptance:.3f}")

    grid = [(1, 2000), (2, 2000), (4, 2000), (8, 2000), (4, 500), (4, 1000), (4, 4000)]
    if not args.quick:
        grid += [(16, 2000), (4, 8000)]
    rows = []
    for chains, draws in grid:
        _, seconds, sampling_s, _ = steady(target, center, chains, draws, repeats)
        rows.append({"chains": chains, "draws": draws, "estimate_s": seconds, "sampling_s": sampling_s,
                     "us_per_chain_draw": 1e6 * seconds / (chains * draws)})
        print(f"  {chains:3d} chains x {draws:5d} draws: {seconds:.3f} s (sampling {sampling_s:.3f} s), "
              f"{rows[-1]['us_per_chain_draw']:.1f} us per chain-draw")
    work = np.log([r["chains"] * r["draws"] for r in rows])
    exponent = float(np.polyfit(work, np.log([r["estimate_s"] for r in rows]), 1)[0])
    by_chains = [r for r in rows if r["draws"] == 2000]
    by_draws = [r for r in rows if r["chains"] == 4]
    scaling = {
        "exponent_all": exponent,
        "exponent_chains": float(np.polyfit(np.log([r["chains"] for r in by_chains]),
                                            np.log([r["estimate_s"] for r in by_chains]), 1)[0]),
        "exponent_draws": float(np.polyfit(np.log([r["draws"] for r in by_draws]),
                                           np.log([r["estimate_s"] for r in by_draws]), 1)[0]),
    }
    print(f"time ~ (chains x draws)^{exponent:.2f}; chains alone ^{scaling['exponent_chains']:.2f}, "
          f"draws alone ^{scaling['exponent_draws']:.2f}")
    print(json.dumps({
        "benchmark": "llc", "quick": args.quick, "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "jax": jax.__version__, "dim": target.dim, "n": N, "batch": BATCH,
        "step_size": STEP_SIZE, "train_s": train_s, **headline, "scaling": scaling, "grid": rows,
    }))


if __name__ == "__main__":
    main()
