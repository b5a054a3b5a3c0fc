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
from fractalbayes.slt.walks import ar1_chains as ar1
from calibration_diffusion import study_dimensions  # benchmarks/ is the script's path
from calibration_tempering import study_tempering_bootstrap

DOC = Path(__file__).resolve().parents[1] / "docs" / "calibration.md"


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


def study_tempering_null(quick: bool) -> pd.DataFrame:
    """Permutation p-values of the tempering test under the null (masses unrelated to the lambdas)."""
    from fractalbayes.slt import evidence

    cases = 100 if quick else 1000
    rng = np.random.default_rng(3)
    rows = []
    for k in (2, 3, 4, 5, 6):
        p = np.array([evidence.permutation_test(rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k)),
                                                rng.uniform(0.5, 4.0, k), seed=i, max_permutations=120).p_value
                      for i in range(cases)])
        n = min(int(np.prod(range(1, k + 1))), 120)
        smallest = 1 / n
        rows.append({"K": k, "cases": cases, "assignments": n, "smallest p": smallest,
                     "P(p <= smallest)": float(np.mean(p <= smallest + 1e-12)), "expected": smallest,
                     "P(p <= 0.05)": float(np.mean(p <= 0.05)), "se": binomial_se(max(np.mean(p <= 0.05), smallest), cases),
                     "mean p": float(p.mean()), "expected mean": (n + 1) / (2 * n)})
    return pd.DataFrame(rows)


def study_tempering_power(quick: bool) -> pd.DataFrame:
    """Power of the tempering permutation test on planted LLC-form masses with multinomial noise.

    Planted: lambda_k evenly spaced in [1, 1 + 0.8 (K - 1)], p_b ~ Dirichlet(3), exponents
    e_k = exp(A + B lambda_k) with xi = 0.5, d_s = 1 (B = 2 log 2) and A centring them at the mean
    lambda; SGD masses from n_nets nets, posterior masses from 200 effective draws (Jeffreys 1/2)."""
    from fractalbayes.slt import evidence

    repeats = 20 if quick else 100
    rng = np.random.default_rng(4)
    rows = []
    for k in (3, 4, 5, 6):
        lambdas = 1.0 + 0.8 * np.arange(k)
        b = 2 * np.log(2.0)
        p_b = rng.dirichlet(np.full(k, 3.0))  # one posterior per K, so the rows differ only in the nets
        for n_nets in (50, 100, 500, 2000):
            power = evidence.power(lambdas, a=-b * lambdas.mean(), b=b, p_b=p_b, n_sgd=n_nets, n_posterior=200,
                                   repeats=repeats, seed=k * 10_000 + n_nets)
            rows.append({"K": k, "nets": n_nets, "posterior ESS": 200, "repeats": repeats, "power at 0.05": power,
                         "se": binomial_se(power, repeats),
                         "reading": "never evidence (K! < 20)" if k <= 3 else
                         ("informative" if power >= 0.5 else "uninformative (power < 0.5)")})
    return pd.DataFrame(rows)


def study_basin_llc(quick: bool) -> pd.DataFrame:
    """Bias of the fractal sampler's basin LLC (SGLD, h = 1e-4, n beta = n / log n at n = 200,
    i.e. t = 37.7) on population toys K(w) = prod_j w_j^(2 k_j) with a N(0, 1) prior, against
    exact values by quadrature (fb.slt.exact_tempered_loss).

    Per cell, independent chains started at the minimum 0 give per-chain estimates; their mean's
    bias is that of any estimate with these settings (lambda_hat is a mean of chains), with
    standard error sd / sqrt(chains). References: "exact localized", t E[K] under the localized
    tempered posterior (prior x localization = N(0, (1 + gamma)^-1), what the settings can reach),
    "exact t E_t[K]" without localization (the finite-t quantity) and lambda itself. "2-chain sd"
    is the spread of one basin estimate with the old default's 2 chains, "4-chain sd" with the new
    default's 4."""
    import functools

    from fractalbayes.slt import exact_tempered_loss, monomial_learning_coefficient

    chains = 16 if quick else 128
    n = 200
    t = n / np.log(n)
    x, y = np.full((n, 1), np.sqrt(2.0), np.float32), np.zeros(n, np.float32)
    settings = {"old default (gamma 100, 200 draws, burn-in 100)": (100.0, 200, 100),
                "gamma 10, 2000 draws, burn-in 500": (10.0, 2000, 500),
                "gamma 1, 200 draws, burn-in 100": (1.0, 200, 100),
                "new default (gamma 1, 2000 draws, burn-in 500)": (1.0, 2000, 500)}
    rows = []
    for k in ((1,), (2,), (1, 1), (1, 2)):
        target = fb.from_numpyro(functools.partial(fb.models.normal_crossing, k=k), x, y, batch_size=50)
        lam = float(monomial_learning_coefficient(k)[0])
        unlocalized = exact_tempered_loss(k, t)
        for label, (gamma, draws, burn_in) in settings.items():
            result = fb.llc.estimate(target, np.zeros(len(k)), nbeta=t, localization=gamma, step_size=1e-4,
                                     num_chains=chains, num_draws=draws, burn_in=burn_in, seed=7, progress=False)
            values = result.per_chain[np.isfinite(result.per_chain)]
            localized = exact_tempered_loss(k, t, prior_scale=(1.0 + gamma) ** -0.5)
            rows.append({"K": "w^" + "".join(str(2 * j) for j in k) if len(k) == 1 else
                         f"w1^{2 * k[0]} w2^{2 * k[1]}", "lambda": lam, "settings": label,
                         "lambda_hat": float(values.mean()), "se": float(values.std(ddof=1) / np.sqrt(len(values))),
                         "2-chain sd": float(values.std(ddof=1) / np.sqrt(2)),
                         "4-chain sd": float(values.std(ddof=1) / 2), "exact localized": localized,
                         "exact t E_t[K]": unlocalized, "bias vs localized": float(values.mean()) - localized,
                         "bias vs lambda": float(values.mean()) - lam})
    return pd.DataFrame(rows)


STUDIES = {"mmd": study_mmd, "kl_bias": study_kl_bias, "tempering_null": study_tempering_null,
           "tempering_power": study_tempering_power, "tempering_bootstrap": study_tempering_bootstrap,
           "basin_llc": study_basin_llc,
           "dimensions": study_dimensions}


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
