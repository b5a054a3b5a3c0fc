"""Calibration studies: false-positive rates, power and bias of every verdict statistic, measured on
planted cases whose answer is known (issue 10). Each study prints its table and writes it into
docs/calibration.md between the study's markers, so the doc always shows the last measured numbers.

    .venv/bin/python benchmarks/calibration.py                 # every study (minutes)
    .venv/bin/python benchmarks/calibration.py mmd kl_bias     # some of them
    .venv/bin/python benchmarks/calibration.py --quick         # small sizes, no doc update

The tests keep small versions of each study (tests/test_mmd.py, ...).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import fractalbayes as fb

DOC = Path(__file__).resolve().parents[1] / "docs" / "calibration.md"


def ar1(rng: np.random.Generator, chains: int, draws: int, dim: int, rho: float, shift: float = 0.0) -> np.ndarray:
    """Stationary AR(1) chains with N(0, 1) marginals: x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t."""
    x = np.empty((chains, draws, dim))
    x[:, 0] = rng.normal(size=(chains, dim))
    noise = rng.normal(size=(chains, draws, dim)) * np.sqrt(1 - rho**2)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x + shift


def binomial_se(p: float, n: int) -> float:
    return float(np.sqrt(max(p * (1 - p), 1e-12) / n))


def study_mmd(quick: bool) -> pd.DataFrame:
    """Level and power of the MMD tests on AR(1) chain sets (4 + 4 chains, 1000 draws, 2-D)."""
    pairs = 40 if quick else 400
    rng = np.random.default_rng(0)
    rows = []
    for rho in (0.5, 0.9, 0.99):
        for shift in (0.0, 0.25, 0.5, 1.0):
            counts = {"chains": 0, "thin": 0, "naive": 0}
            n = pairs if shift == 0.0 else pairs // 4
            for i in range(n):
                x, y = ar1(rng, 4, 1000, 2, rho), ar1(rng, 4, 1000, 2, rho, shift)
                counts["chains"] += fb.metrics.mmd_test(x, y, method="chains", seed=i).p_value <= 0.05
                counts["thin"] += fb.metrics.mmd_test(x, y, method="thin", seed=i).p_value <= 0.05
                counts["naive"] += fb.metrics.mmd_rbf(x.reshape(-1, 2)[::10], y.reshape(-1, 2)[::10],
                                                      seed=i).p_value <= 0.05
            for method, hits in counts.items():
                rate = hits / n
                rows.append({"rho": rho, "shift (sd)": shift, "test": method, "pairs": n,
                             "rejection rate": rate, "se": binomial_se(rate, n),
                             "reading": "false-positive rate" if shift == 0 else "power"})
    return pd.DataFrame(rows)


def study_kl_bias(quick: bool) -> pd.DataFrame:
    """Distances between two samples of one N(0, I_d): their bias against d and n, and the
    split-half noise floor that fb.compare reports beside them."""
    reps = 5 if quick else 20
    rng = np.random.default_rng(1)
    rows = []
    for d in (2, 5, 20, 100):
        for n in (200, 1000, 5000):
            if d >= n / 2:
                continue
            values = {"gaussian_kl": [], "nn_kl": [], "sliced_wasserstein": [], "gaussian_kl_floor": []}
            for r in range(reps):
                x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
                values["gaussian_kl"].append(fb.metrics.gaussian_kl(x, y))
                values["nn_kl"].append(fb.metrics.nn_kl(x, y, seed=r))
                values["sliced_wasserstein"].append(fb.metrics.sliced_wasserstein(x, y, seed=r))
                values["gaussian_kl_floor"].append(fb.stats.noise.split_half_floor(
                    x.reshape(4, n // 4, d), lambda a, b: fb.metrics.gaussian_kl(a.reshape(-1, d), b.reshape(-1, d))))
            row = {"d": d, "n": n, "d(d+3)/(2n)": d * (d + 3) / (2 * n)}
            for name, v in values.items():
                row[f"{name} mean"], row[f"{name} sd"] = float(np.mean(v)), float(np.std(v, ddof=1))
            rows.append(row)
    return pd.DataFrame(rows)


STUDIES = {"mmd": study_mmd, "kl_bias": study_kl_bias}


def write_section(name: str, frame: pd.DataFrame, seconds: float) -> None:
    """Replace the study's block in docs/calibration.md (between its markers) with the new table."""
    begin, end = f"<!-- calibration:{name}:begin -->", f"<!-- calibration:{name}:end -->"
    table = frame.to_markdown(index=False, floatfmt=".4g")
    block = f"{begin}\n{table}\n\n(measured {time.strftime('%Y-%m-%d')}, {seconds:.0f} s)\n{end}"
    text = DOC.read_text() if DOC.exists() else "# Calibration\n"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("studies", nargs="*", help=f"studies to run, of {', '.join(STUDIES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes; docs/calibration.md is not updated")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.studies) - set(STUDIES))
    if unknown:
        parser.error(f"unknown studies {unknown}; choose from {', '.join(STUDIES)}")
    for name in args.studies or list(STUDIES):
        tic = time.perf_counter()
        frame = STUDIES[name](args.quick)
        seconds = time.perf_counter() - tic
        print(f"## {name} ({seconds:.0f} s)\n{frame.to_string(index=False)}\n", flush=True)
        if not args.quick:
            write_section(name, frame, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
