"""Calibration study "dimensions" (run through benchmarks/calibration.py): bias and spread over seeds
of d_walk, d_s (slope-based, return, covering, the best independent one), d_f and the regime
classification on planted walks with known answers (fractalbayes.slt.walks).

The slope-based d_s is 2 d_f slope with the TRUE d_f (what the paper's d_s = 2 lambda slope is
when lambda equals d_f), so its bias is that of the slope alone. NaN estimates (the estimator
says it cannot work, with the reason in result.notes) are counted in "n_nan", not averaged.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from fractalbayes.slt import diffusion, walks


def _geometric(t_max: float, n: int) -> np.ndarray:
    return np.unique(np.r_[0, np.geomspace(1, t_max, n).astype(int)])


def _dense_run(x: np.ndarray, lag_width: int) -> SimpleNamespace:
    """Checkpoints on a geometric grid plus a lag window of the first lag_width + 1 steps."""
    steps = _geometric(x.shape[1] - 1, 60)
    return SimpleNamespace(checkpoints=x[:, steps], checkpoint_steps=steps,
                           lag_window=x[:, : lag_width + 1], lag_window_start=0)


def _cases(seed: int, chains: int) -> list[tuple[str, dict, object, dict]]:
    """(case, truth, analysed source, analyze kwargs) for one seed."""
    out = []
    steps = _geometric(1e4, 50)
    for d in (1, 2, 3, 5, 20):
        truth = {"d_walk": 2.0, "d_s": float(d), "d_f": float(d), "regime": "brownian"}
        out.append((f"brownian d={d}", truth, (walks.brownian(chains, steps, d, seed), steps), {"xi": 1.0}))
    sierpinski = walks.sierpinski(chains // 2, 4096, seed=seed)
    out.append(("sierpinski", {**walks.SIERPINSKI, "regime": "subdiffusive", "mechanism": "medium"},
                _dense_run(sierpinski, 2000), {"xi": 1.5, "window": (10, 4096)}))
    comb = walks.comb(chains // 2, 4096, seed=seed)
    out.append(("comb", {"d_walk": 2.0, "d_s": 1.5, "d_f": 2.0, "regime": "brownian"},
                (comb, np.arange(comb.shape[1])), {"xi": 1.5, "window": (10, 4096)}))
    ctrw = walks.ctrw(chains // 4, 10_000, alpha=0.5, seed=seed)
    out.append(("ctrw alpha=1/2", {"d_walk": 4.0, "d_s": 0.5, "d_f": 1.0, "regime": "subdiffusive",
                                   "mechanism": "trapping"},
                _dense_run(ctrw, 2000), {"xi": 0.5, "window": (10, 10_000)}))
    ou_steps = _geometric(20_000, 80)
    ou = walks.ou(chains // 2, ou_steps, 3, rate=0.02, seed=seed)
    for end in (200, 20_000):
        out.append((f"ou window 1-{end}", {"regime": "confined"}, (ou, ou_steps), {"window": (1, end)}))
    return out


def study_dimensions(quick: bool) -> pd.DataFrame:
    """Bias, spread over seeds and NaN counts of every dimension, and regime accuracy."""
    seeds, chains = (2, 1000) if quick else (6, 2000)
    values: dict[tuple[str, str], list[float]] = {}
    truths: dict[tuple[str, str], float | str] = {}
    for seed in range(seeds):
        for case, truth, source, kwargs in _cases(seed, chains):
            args = source if isinstance(source, tuple) else (source,)
            result = diffusion.analyze(*args, n_boot=200, seed=seed, **kwargs)
            measured = {
                "d_walk": result.d_walk,
                "d_s (slope, true d_f)": 2 * truth.get("d_f", np.nan) * result.slope,
                "d_s return": result.returns.d_s,
                "d_s covering": result.covering.d_s,
                "d_s_independent": result.d_s_independent,
                "d_f": result.d_f,
                "regime correct": float(result.regime == truth["regime"]),
            }
            if "mechanism" in truth:
                measured["mechanism correct"] = float(result.mechanism == truth["mechanism"])
            for quantity, value in measured.items():
                if quantity.startswith("d_s") and "d_s" not in truth:
                    continue
                if quantity.startswith(("d_walk", "d_f")) and quantity not in truth:
                    continue
                values.setdefault((case, quantity), []).append(float(value))
                key = "d_s" if quantity.startswith("d_s") else quantity
                truths[(case, quantity)] = truth.get(key, 1.0)
    rows = []
    for (case, quantity), vals in values.items():
        v = np.array(vals)
        finite = v[np.isfinite(v)]
        truth = truths[(case, quantity)]
        mean = float(finite.mean()) if finite.size else np.nan
        rows.append({"case": case, "quantity": quantity, "truth": truth, "mean": mean,
                     "sd over seeds": float(finite.std(ddof=1)) if finite.size > 1 else np.nan,
                     "bias": mean - truth, "n_nan": int(v.size - finite.size), "seeds": int(v.size)})
    return pd.DataFrame(rows)
