"""Suites on Ray: the same outputs as the local executor, retries when a worker dies, a clear error
without Ray. The Ray tests start one local instance on 2 CPUs for the module (slow: ~1 min)."""

import json
import os
import sys

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.suite import runner
from fractalbayes.suite.ray_executor import ray_executor

SUITE = """
[suite]
name = "ray-tiny"
seeds = [0]
analyses = ["predictive", "summary"]

[model]
name = "linear_regression"

batch_size = 20

[data]
name = "linear_teacher"
options = { n = 60, d = 3, noise = 1.0, seed = 1 }

[arms.sgd]
sampler = "sgd"
num_chains = 2
num_samples = 30
burn_in = 50
options = { learning_rate = 0.05 }

[arms.sgld]
sampler = "sgld"
num_chains = 2
num_samples = 30
burn_in = 50
devices = 1
options = { step_size = 1e-3 }

[grid]
"arms.sgd.options.learning_rate" = [0.05, 0.1]
"""


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _results(out):
    index = json.loads((out / "index.json").read_text())["cells"]
    runs, analyses = {}, {}
    for cell, entry in index.items():
        for arm in ("sgd", "sgld"):
            runs[cell, arm] = fb.load_run(out / "cells" / cell / f"{arm}.nc")
        analyses[cell] = {name: value["result"] for name, value in
                          json.loads((out / "cells" / cell / "analyses.json").read_text()).items()}
    return index, runs, analyses


@pytest.mark.slow
def test_ray_outputs_equal_local_and_resume(ray_local, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE)
    suite = runner.load_suite(path)
    local = runner.run_suite(suite, tmp_path / "local", progress=False)
    remote = runner.run_suite(suite, tmp_path / "ray", executor="ray", progress=False)
    assert set(local) == set(remote) and len(remote) == 2
    assert all(entry["status"] == "done" for entry in remote.values()), remote
    (_, local_runs, local_analyses), (index, ray_runs, ray_analyses) = _results(tmp_path / "local"), _results(tmp_path / "ray")
    for key, run in local_runs.items():
        np.testing.assert_array_equal(run.positions, ray_runs[key].positions)
        np.testing.assert_array_equal(run.checkpoints, ray_runs[key].checkpoints)
    assert local_analyses == ray_analyses
    assert not list((tmp_path / "ray" / "cells").glob(".*"))  # no staging folder left behind
    # resume: nothing left to run, so nothing is re-run (and no Ray task is submitted)
    again = runner.run_suite(suite, tmp_path / "ray", executor="ray", progress=False)
    assert {c: e["finished"] for c, e in again.items()} == {c: e["finished"] for c, e in index.items()}


def _die_once(marker):
    """Cell work that kills its own worker process the first time (a worker lost mid-cell)."""

    def work(cell):
        attempts = marker / f"{cell}.attempts"
        count = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(count))
        if count == 1 or cell == "always":
            os._exit(1)
        return {"status": "done", "attempts": count}

    return work


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_exhausted_retries_are_recorded(ray_local, tmp_path):
    started = []
    outcomes = dict(ray_executor(["cell-a", "always"], _die_once(tmp_path), started.append, max_retries=2))
    assert sorted(started) == ["always", "cell-a"]
    assert outcomes["cell-a"] == {"status": "done", "attempts": 2}
    failed = outcomes["always"]
    assert failed["status"] == "failed" and "after 2 retries" in failed["error"]
    assert "Traceback" in failed["traceback"] and (tmp_path / "always.attempts").read_text() == "3"


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(fb.SuiteError, match=r"pip install fractalbayes\[ray\]"):
        list(ray_executor(["a"], lambda c: {}, lambda c: None))


def test_staging_names_carry_the_host():
    assert runner.STAGING.match(".cell_seed=0.partial-node-17.cluster-4242")
    assert runner.STAGING.match(".cell_seed=0.partial-4242")  # folders of older runs are still cleaned up
