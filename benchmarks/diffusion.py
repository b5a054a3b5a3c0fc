"""Benchmark: fractalbayes.diffusion.analyze on 64 chains x 200 checkpoints x 1e5 parameters.

The checkpoints (float32, 5.1 GB at full size) are a random walk observed on a geometric
step grid, generated chain by chain into one preallocated array (or, with --memmap,
into a memory-mapped .npy file that is then reopened read-only). Prints the wall time of the
analysis (including the independent d_s and the correlation dimension over <= 2048 points), the peak RSS of the process (resource.getrusage), the RSS just before the analysis,
and the peak of new allocations during it (tracemalloc), which should be far below the size of
the checkpoints: the analysis never copies them.

    .venv/bin/python benchmarks/diffusion.py                 # full size, in memory (~20 s)
    .venv/bin/python benchmarks/diffusion.py --memmap /tmp   # full size, memory-mapped
    .venv/bin/python benchmarks/diffusion.py --params 10000  # smaller
"""

import argparse
import pathlib
import resource
import tempfile
import time
import tracemalloc

import numpy as np

from fractalbayes.slt import diffusion


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def fill_random_walk(out: np.ndarray, steps: np.ndarray, seed: int) -> None:
    """out[c] = random walk at `steps`, written in place chain by chain (no full-size temporary).

    Increments between recorded steps are uniform with mean 0 and variance equal to the step gap
    (uniform draws are ~4x faster than Gaussian ones; the displacement statistics in 1e5
    dimensions are the same).
    """
    rng = np.random.default_rng(seed)
    scale = (np.sqrt(12.0 * np.diff(steps, prepend=0))).astype(np.float32)[:, None]
    for c in range(out.shape[0]):
        chain = out[c]
        rng.random(out=chain, dtype=np.float32)
        chain -= np.float32(0.5)
        chain *= scale
        np.cumsum(chain, axis=0, out=chain)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--memmap", metavar="DIR", help="store the checkpoints as a .npy in DIR")
    args = parser.parse_args()

    shape = (args.chains, args.checkpoints, args.params)
    steps = np.r_[0, np.round(np.geomspace(100, 1e6, args.checkpoints - 1))].astype(np.int64)
    start = time.perf_counter()
    if args.memmap:
        tmp = tempfile.TemporaryDirectory(dir=args.memmap)
        path = pathlib.Path(tmp.name) / "checkpoints.npy"
        stored = np.lib.format.open_memmap(path, "w+", np.float32, shape)
        fill_random_walk(stored, steps, seed=0)
        stored.flush()
        del stored
        checkpoints = np.load(path, mmap_mode="r")
    else:
        checkpoints = np.empty(shape, dtype=np.float32)
        fill_random_walk(checkpoints, steps, seed=0)
    generated = time.perf_counter() - start

    rss_before = current_rss_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    result = diffusion.analyze(checkpoints, steps, llc=10.0)
    wall = time.perf_counter() - start
    alloc_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    gib = 2.0**30
    print(f"checkpoints      {shape} float32, {checkpoints.nbytes / gib:.2f} GiB"
          f" ({'memory-mapped' if args.memmap else 'in memory'}), generated in {generated:.1f} s")
    print(f"analysis wall    {wall:.2f} s")
    print(f"peak RSS         {peak_rss_bytes() / gib:.2f} GiB"
          f" (RSS before analysis {rss_before / gib:.2f} GiB)")
    print(f"new allocations  {alloc_peak / 2**20:.1f} MiB peak during the analysis"
          f" ({alloc_peak / checkpoints.nbytes:.2%} of the checkpoints)")
    print(f"result           slope {result.slope:.4f} (Brownian: 0.5),"
          f" MSD exponent {result.msd_exponent:.3f}, regime {result.regime}")
    print(f"independent      d_s {result.d_s_independent:.3g} ({result.d_s_independent_method}),"
          f" d_f {result.d_f:.3g} (a Brownian walk in {args.params} dimensions: both NaN, with why)")
    for note in result.notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    main()
