"""Scale figures (issue 13): chains over (simulated) devices, a 512-net ensemble, suites on Ray.

    .venv/bin/python benchmarks/scale.py                  # devices + ensemble (a few minutes on 2 cores)
    .venv/bin/python benchmarks/scale.py --suite          # also the quick suite, local vs ray (slow)
    .venv/bin/python benchmarks/scale.py --only-suite --suite quick llc-ground-truth
    .venv/bin/python benchmarks/scale.py --quick          # smoke run

Every measurement runs in a fresh ``python -c`` child, so that each sees its own device count and
its peak RSS is its own (VmHWM from /proc/self/status):

1. ``devices``: SGLD on the Moons MLP (2-18-16-2 ReLU, 392 parameters, batch 32) for a fixed number
   of steps, chains in {4, 8, ..., 64} x devices in {1, 2, 4}, with 4 CPU devices simulated by
   ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (they share the machine's cores, so on a
   2-core machine more than 2 devices cannot run faster: the figure shows the cost of sharding, and
   what the same code gives on real devices is for ``benchmarks/gpu.py``). Reported: the sampling
   phase (``run.timings["sampling_s"]``, best of the repeats) and chain-steps per second.
2. ``ensemble``: 512 independent SGD nets on Moons (the paper's posterior test uses 500), one
   ``fb.sample(target, "sgd", num_chains=512)`` call, i.e. one compiled program: wall time of the
   first call (compilation included) and of a second, and peak RSS of the process.
3. ``suite`` (``--suite``): ``fractalbayes run quick`` with ``--executor local`` and with
   ``--executor ray`` (a local Ray instance sized to the machine), each into a new folder.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DEVICES_CHILD = """
import json, sys, time
import jax, numpy as np
import fractalbayes as fb
ds = fb.data.moons(2000, seed=0)
target = fb.from_numpyro(fb.models.mlp_classifier, ds.x_train, ds.y_train, batch_size=32, widths=(18, 16))
rows = []
for chains in {chains}:
    for devices in {devices}:
        kw = dict(num_chains=chains, num_samples={steps}, burn_in=0, step_size=1e-5, progress=False,
                  devices=None if devices == 1 else devices)
        fb.sample(target, "sgld", seed=0, **kw)  # compile
        best = min(fb.sample(target, "sgld", seed=r, **kw).timings["sampling_s"] for r in range({repeats}))
        rows.append({{"chains": chains, "devices": devices, "sampling_s": best,
                      "chain_steps_per_s": chains * {steps} / best}})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
print(json.dumps({{"rows": rows, "dim": target.dim, "device_kind": str(jax.devices()[0])}}))
"""

ENSEMBLE_CHILD = """
import json, time
import numpy as np
import fractalbayes as fb
ds = fb.data.moons(2000, seed=0)
target = fb.from_numpyro(fb.models.mlp_classifier, ds.x_train, ds.y_train, batch_size=32, widths=(18, 16))
times, compile_s = [], []
for seed in (0, 1):
    tic = time.perf_counter()
    run = fb.sample(target, "sgd", num_chains={chains}, num_samples={draws}, burn_in={burn_in}, thin={thin},
                    learning_rate=0.05, seed=seed, progress=False)
    times.append(time.perf_counter() - tic)
    compile_s.append(run.timings["compile_s"])
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({{"first_s": times[0], "second_s": times[1], "compile_s": compile_s[0],
                  "sampling_s": run.timings["sampling_s"], "peak_rss_mib": hwm / 1024, "dim": target.dim,
                  "chains": {chains}, "steps": {burn_in} + {draws} * {thin}, "draws": {draws},
                  "diverged": int(run.diverged.sum())}}))
"""


def child(code: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=os.environ | (env or {}))
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def devices_case(quick: bool) -> dict:
    chains = [4, 16] if quick else [4, 8, 16, 32, 64]
    code = DEVICES_CHILD.format(chains=chains, devices=[1, 2, 4], steps=200 if quick else 1000,
                                repeats=1 if quick else 3)
    out = child(code, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    for row in out["rows"]:
        print(f"  {row['chains']:3d} chains on {row['devices']} device(s): {row['sampling_s']:.3f} s, "
              f"{row['chain_steps_per_s']:.0f} chain-steps/s", flush=True)
    return out


def ensemble_case(quick: bool) -> dict:
    settings = dict(chains=64 if quick else 512, draws=50, burn_in=500 if quick else 2000, thin=10)
    out = child(ENSEMBLE_CHILD.format(**settings))
    print(f"  {out['chains']} SGD nets x {out['steps']} steps (d = {out['dim']}): first call {out['first_s']:.2f} s "
          f"(compile {out['compile_s']:.2f} s), second {out['second_s']:.2f} s (sampling {out['sampling_s']:.2f} s); "
          f"peak RSS {out['peak_rss_mib']:.0f} MiB", flush=True)
    return out


def suite_case(names: list[str]) -> dict:
    """Wall time of ``fractalbayes run NAME`` with each executor, in fresh processes and folders."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="fb-scale-") as folder:
        for name in names:
            out[name] = {}
            for executor in ("local", "ray"):
                tic = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "fractalbayes", "run", name, "--out",
                                       os.path.join(folder, f"{name}-{executor}"), "--executor", executor],
                                      capture_output=True, text=True, cwd=ROOT)
                out[name][executor] = {"wall_s": time.perf_counter() - tic, "returncode": done.returncode}
                print(f"  {name} suite, --executor {executor}: {out[name][executor]['wall_s']:.1f} s "
                      f"(exit {done.returncode})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--suite", nargs="*", default=None, metavar="NAME",
                        help="also time suites (default: quick), local vs ray")
    parser.add_argument("--only-suite", action="store_true", help="skip the device and ensemble figures")
    args = parser.parse_args()
    result: dict = {"quick": args.quick, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    if not args.only_suite:
        print("chains over simulated CPU devices (SGLD, Moons MLP)", flush=True)
        result["devices"] = devices_case(args.quick)
        print("one compiled SGD ensemble (Moons MLP)", flush=True)
        result["ensemble"] = ensemble_case(args.quick)
    if args.suite is not None:
        print("suites: local vs ray", flush=True)
        result["suite"] = suite_case(args.suite or ["quick"])
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
