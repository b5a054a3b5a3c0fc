"""The two suite analyses the end-to-end suite does not run: the tempering test (through the suite, as
the paper-moons-posterior suite runs it) and the exact learning coefficient against the estimator."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.suite import runner as suites

TEMPERING = """\
[suite]
reference = "sgld"
analyses = ["tempering"]

[model]
name = "mlp_classifier"
options = { widths = [4], num_classes = 2 }
batch_size = 32

[data]
name = "moons"
options = { n = 120, noise = 0.2 }

[arms.sgd]
sampler = "sgd"
num_chains = 12
num_samples = 5
burn_in = 300
thin = 10
options = { learning_rate = 0.05, objective = "map" }

[arms.sgld]
sampler = "sgld"
num_chains = 2
num_samples = 100
burn_in = 200
thin = 2
options = { step_size = 1e-3 }

[analyses.tempering]
sgd = "sgd"
k = 2
k_range = [2, 2]
d_s = 1.0
lambdas = [1.0, 1.5]  # short per-basin LLC estimates on a toy net can come out negative
num_splits = 3
max_permutations = 5
"""

LLC_TRUTH = """\
[suite]
analyses = ["llc_truth"]

[model]
name = "linear_regression"

[data]
name = "linear_teacher"
options = { n = 100, d = 2, noise = 1.0 }

[analyses.llc_truth]
num_chains = 2
num_draws = 200
burn_in = 100
train_options = { num_steps = 500 }
"""


def _run(tmp_path, text: str) -> tuple[dict, dict]:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    cells = suites.run_suite(suites.load_suite(path), tmp_path / "out", progress=False)
    (ident, entry), = cells.items()
    assert entry["status"] == "done", entry
    results = json.loads((tmp_path / "out" / "cells" / ident / "analyses.json").read_text())
    return entry, results


@pytest.mark.slow
def test_the_tempering_analysis_runs_through_a_suite(tmp_path):
    entry, results = _run(tmp_path, TEMPERING)
    assert entry["analyses"]["tempering"]["status"] == "done", results["tempering"].get("error")
    result = results["tempering"]["result"]
    row = result["metrics"]["sgd"]
    assert row["basins"] == 2  # k = 2 given
    details = result["details"]["sgd"]
    for masses in ("p_sgd", "p_b", "p_tempered"):
        assert len(details[masses]) == 2 and np.isclose(sum(details[masses]), 1.0)
    assert details["lambdas"] == [1.0, 1.5]
    assert all(row[f"kl_{m}"] >= 0 for m in ("untempered", "global", "llc"))
    assert (tmp_path / "out" / "cells" / "seed=0" / "figures" / "tempering_sgd.png").is_file()


@pytest.mark.slow
def test_the_llc_truth_analysis_compares_the_estimate_with_the_exact_coefficient(tmp_path):
    entry, results = _run(tmp_path, LLC_TRUTH)
    assert entry["analyses"]["llc_truth"]["status"] == "done", results["llc_truth"].get("error")
    result = results["llc_truth"]["result"]
    row = result["metrics"]["estimate"]
    assert row["llc_exact"] == float(fb.slt.regular_learning_coefficient(2)) == 1.0  # d / 2
    assert row["llc_error"] == pytest.approx(row["llc_estimate"] - row["llc_exact"])
    assert np.isfinite(row["llc_estimate"]) and row["llc_mcse"] > 0 and result["formula"] == "regular model, d = 2"
