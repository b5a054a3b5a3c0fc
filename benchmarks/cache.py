"""Persistent compilation cache (issue 13): the LLC workload's first call, cold vs warm cache.

    .venv/bin/python benchmarks/cache.py            # 3 fresh processes per arm (about 1 min)
    .venv/bin/python benchmarks/cache.py --repeats 1

The workload is benchmarks/llc.py's: ``fb.llc.estimate`` of 4 chains x 2000 draws, batch 500, SGLD
step 1e-5, on the 330-parameter deep linear network, n = 10^4, at a centre trained once here and
handed to the children as a file. Each arm runs the estimate twice in a fresh ``python -c`` child and
reports the first call (compilation included) and the second (warm in-process):

- ``no_cache``: ``FRACTALBAYES_NO_CACHE=1`` (every process compiles everything);
- ``cold``: an empty cache folder (compiles and writes the cache);
- ``warm``: the folder the cold child just filled (reads the executables back).

The last line printed is one JSON object; the target is a warm first call <= 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

CHILD = """
import sys, time, json, warnings
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
tic = time.perf_counter()
import numpy as np
import fractalbayes as fb
import llc as bench
import_s = time.perf_counter() - tic
warnings.simplefilter("ignore")
target = bench.build_target()
center = np.load({center!r})
times = []
for seed in (0, 1):
    tic = time.perf_counter()
    fb.llc.estimate(target, center, step_size=bench.STEP_SIZE, num_chains=4, num_draws=2000, burn_in=0,
                    seed=seed, progress=False)
    times.append(time.perf_counter() - tic)
print(json.dumps({{"import_s": import_s, "first_s": times[0], "second_s": times[1]}}))
"""


def child(center_path: str, env: dict) -> dict:
    code = CHILD.format(root=ROOT, here=HERE, center=center_path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per arm")
    args = parser.parse_args()
    os.environ["FRACTALBAYES_NO_CACHE"] = "1"  # the parent's training compiles stay out of the cache
    import llc as bench

    import fractalbayes as fb

    warnings.simplefilter("ignore")
    target = bench.build_target()
    center, _ = fb.llc.train(target, num_steps=3000)
    work = tempfile.mkdtemp(prefix="fb-cache-bench-")
    center_path = os.path.join(work, "center.npy")
    np.save(center_path, np.asarray(center))
    base = {k: v for k, v in os.environ.items() if k not in ("FRACTALBAYES_NO_CACHE", "FRACTALBAYES_CACHE_DIR")}
    arms: dict[str, list] = {"no_cache": [], "cold": [], "warm": []}
    try:
        for r in range(args.repeats):
            arms["no_cache"].append(child(center_path, base | {"FRACTALBAYES_NO_CACHE": "1"}))
            folder = os.path.join(work, f"cache{r}")
            arms["cold"].append(child(center_path, base | {"FRACTALBAYES_CACHE_DIR": folder}))
            arms["warm"].append(child(center_path, base | {"FRACTALBAYES_CACHE_DIR": folder}))
            sizes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
            entries = sum(len(fs) for _, _, fs in os.walk(folder))
            print(f"repeat {r}: " + ", ".join(f"{k} first {v[-1]['first_s']:.2f} s (second {v[-1]['second_s']:.2f} s)"
                                              for k, v in arms.items()) + f"; cache {entries} files, {sizes / 2**20:.1f} MiB",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {arm: {key: {"median": statistics.median(r[key] for r in rows), "min": min(r[key] for r in rows),
                           "max": max(r[key] for r in rows)} for key in ("import_s", "first_s", "second_s")}
               for arm, rows in arms.items()}
    warm_first = summary["warm"]["first_s"]["median"]
    print(json.dumps({"benchmark": "compile_cache", "repeats": args.repeats, "load_average": os.getloadavg(),
                      "cache_entries": entries, "cache_mib": sizes / 2**20, **summary,
                      "warm_first_call_s": warm_first, "target_s": 1.5, "meets_target": warm_first <= 1.5}))


if __name__ == "__main__":
    main()
