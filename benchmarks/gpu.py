"""One prepared GPU check (issue 13): a few minutes on one accelerator, one JSON line at the end.

    python benchmarks/gpu.py            # on a machine with a GPU (refuses to run on CPU)
    python benchmarks/gpu.py --quick    # smaller sizes; with --allow-cpu as a smoke test anywhere

Measured, on whatever ``jax.devices()[0]`` is (named in the output):

1. ``throughput``: SGLD ``fb.sample`` against the hand-written ``lax.scan`` + ``blackjax.sgld`` loop
   of ``benchmarks/throughput.py`` (same function, same settings: 4 chains, batch 32, thin 1) at
   ~400 and ~100k parameters: best-of and median paired ratios, sampling phase and whole call.
2. ``ensemble``: 512 SGD nets on Moons (2-18-16-2 ReLU) in one compiled program: first call
   (compilation included), second call, sampling phase.
3. ``llc``: the LLC workload of ``benchmarks/llc.py`` (deep linear network, d = 330, n = 10^4,
   4 chains x 2000 draws, batch 500): first call in the process and the best of 3 warm calls, with
   the time per chain-step and the FLOP rate it implies (2 x 3 x batch x d multiply-adds per step
   for the forward and backward passes: ~1e6 FLOP).

Nothing in the package depends on a GPU; this script only measures one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import jax  # noqa: E402

import fractalbayes as fb  # noqa: E402


def throughput(quick: bool) -> dict:
    import throughput as t

    cases = [("400", 500, 3), ("100k", 20, 3)] if quick else [("400", 3000, 9), ("100k", 300, 7)]
    out = {}
    for size, draws, repeats in cases:
        row = t.sgld_case(size, num_chains=4, batch_size=32, num_draws=draws, thin=1, step_size=1e-5,
                          repeats=repeats)
        out[size] = {k: row[k] for k in ("dim", "steps", "ratio", "ratio_whole_call", "paired",
                                        "blackjax_steps_per_s", "ours_steps_per_s", "compile_s")}
    return out


def ensemble(quick: bool) -> dict:
    ds = fb.data.moons(2000, seed=0)
    target = fb.from_numpyro(fb.models.mlp_classifier, ds.x_train, ds.y_train, batch_size=32, widths=(18, 16))
    chains, burn_in = (64, 500) if quick else (512, 2000)
    times, compile_s, run = [], [], None
    for seed in (0, 1):
        tic = time.perf_counter()
        run = fb.sample(target, "sgd", num_chains=chains, num_samples=50, burn_in=burn_in, thin=10,
                        learning_rate=0.05, seed=seed, progress=False)
        times.append(time.perf_counter() - tic)
        compile_s.append(run.timings["compile_s"])
    stats = jax.devices()[0].memory_stats() or {}
    return {"chains": chains, "steps": burn_in + 500, "dim": target.dim, "first_s": times[0], "second_s": times[1],
            "sampling_s": run.timings["sampling_s"], "compile_s": compile_s[0],
            "peak_device_bytes": stats.get("peak_bytes_in_use"), "diverged": int(run.diverged.sum())}


def llc_workload(quick: bool) -> dict:
    import llc as bench

    warnings.simplefilter("ignore", fb.llc.LLCHealthWarning)
    target = bench.build_target()
    center, _ = fb.llc.train(target, num_steps=300 if quick else 3000)
    draws = 500 if quick else 2000
    times = []
    for seed in range(4):
        tic = time.perf_counter()
        result = fb.llc.estimate(target, center, step_size=bench.STEP_SIZE, num_chains=4, num_draws=draws,
                                 burn_in=0, seed=seed, progress=False)
        times.append(time.perf_counter() - tic)
    best = min(times[1:])
    per_step = result.run.timings["sampling_s"] / (4 * draws)
    flop = 6 * bench.BATCH * target.dim
    return {"first_s": times[0], "warm_s": best, "sampling_s": result.run.timings["sampling_s"],
            "us_per_chain_step": 1e6 * per_step, "flop_per_chain_step": flop, "gflop_per_s": flop / per_step / 1e9,
            "lambda_hat": result.mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--allow-cpu", action="store_true", help="run even without a GPU (smoke test)")
    args = parser.parse_args()
    device = jax.devices()[0]
    if device.platform == "cpu" and not args.allow_cpu:
        sys.exit("no GPU: jax.devices() lists only CPUs (pass --allow-cpu for a smoke run)")
    start = time.perf_counter()
    result = {"device": str(device), "device_kind": device.device_kind, "platform": device.platform,
              "jax": jax.__version__, "quick": args.quick}
    for name, part in (("throughput", throughput), ("ensemble", ensemble), ("llc", llc_workload)):
        tic = time.perf_counter()
        result[name] = part(args.quick)
        print(f"{name}: {json.dumps(result[name], default=float)} ({time.perf_counter() - tic:.0f} s)", flush=True)
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
