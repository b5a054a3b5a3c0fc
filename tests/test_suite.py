"""The suite runner: a tiny suite end to end through the CLI, resume after a kill, failing and
interrupted cells, and the validation of malformed suite files."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes.suite import analyses, cli
from fractalbayes.suite import runner as suites

TINY = """\
[suite]
name = "tiny"
reference = "nuts"
analyses = ["predictive", "summary", "compare", "llc", "diffusion", "lyapunov"]

[model]
name = "linear_regression"
batch_size = 10

[data]
name = "linear_teacher"
options = { n = 50, d = 3, noise = 1.0 }

[arms.sgd]
sampler = "sgd"
num_chains = 2
num_samples = 50
burn_in = 100
thin = 5
options = { learning_rate = 0.05 }

[arms.sgld]
sampler = "sgld"
num_chains = 2
num_samples = 50
burn_in = 100
thin = 5
options = { step_size = 1e-3 }

[arms.nuts]
sampler = "nuts"
num_chains = 2
num_samples = 50
burn_in = 50

[grid]
"arms.sgd.options.learning_rate" = [0.02, 0.05]

[analyses.llc]
num_draws = 50
burn_in = 20
max_chains = 2

[analyses.diffusion]
n_boot = 20

[analyses.lyapunov]
arm = "sgd"

[report]
group_by = ["arms.sgd.options.learning_rate"]

[[report.scatter]]
x = "learning_rate"
y = "cov_error_vs_lyapunov"
"""
CELLS = ("learning_rate=0.02_seed=0", "learning_rate=0.05_seed=0")


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fractalbayes", *args], capture_output=True, text=True,
                          timeout=timeout)


def _index(out: Path) -> dict:
    try:
        return json.loads((out / "index.json").read_text())["cells"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return {}


def _leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".partial-" in p.name or p.suffix == ".tmp")


@dataclass(frozen=True)
class Finished:
    out: Path
    suite_file: Path
    killed_cell_status: str
    """The second cell's index status just after the kill."""
    staged: list[str]
    """What the second cell had written into its staging folder when it was killed."""
    after_kill: list[str]
    """Every path under out/ after the kill."""
    first_cell_files: dict[str, tuple[int, int]]
    """(mtime_ns, inode) of the first cell's files after the kill."""
    rerun: subprocess.CompletedProcess
    report: subprocess.CompletedProcess


@functools.cache
def finished_suite(base: Path) -> Finished:
    """The tiny suite through the CLI: killed with SIGKILL once its first cell is done, rerun to the end,
    then reported. One output folder shared by the tests here and in test_report.py."""
    folder = base / "tiny-suite"
    folder.mkdir()
    suite_file = folder / "tiny.toml"
    suite_file.write_text(TINY)
    out = folder / "out"
    command = [sys.executable, "-m", "fractalbayes", "run", str(suite_file), "--out", str(out)]
    with open(folder / "first.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:  # kill once the 2nd cell wrote a run
            if _index(out).get(CELLS[0], {}).get("status") == "done" and any(out.glob(f"cells/.{CELLS[1]}.partial-*/*.nc")):
                break
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    killed_status = _index(out)[CELLS[1]]["status"]
    staged = sorted(p.name for p in out.glob(f"cells/.{CELLS[1]}.partial-*/*"))
    after_kill = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    first = {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.stat().st_ino)
             for p in (out / "cells" / CELLS[0]).rglob("*") if p.is_file()}
    rerun = _cli("run", str(suite_file), "--out", str(out))
    report = _cli("report", str(out))
    return Finished(out, suite_file, killed_status, staged, after_kill, first, rerun, report)


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> Finished:
    return finished_suite(tmp_path_factory.getbasetemp())


def test_tiny_suite_runs_end_to_end_through_the_cli(finished):
    assert finished.rerun.returncode == 0, finished.rerun.stderr[-3000:]
    cells = _index(finished.out)
    assert list(cells) == list(CELLS)
    for ident, entry in cells.items():
        assert entry["status"] == "done" and entry["seconds"] > 0 and len(entry["config_hash"]) == 16
        assert {a: o["status"] for a, o in entry["arms"].items()} == {"sgd": "done", "sgld": "done", "nuts": "done"}
        assert all(o["status"] == "done" for o in entry["analyses"].values()), entry["analyses"]
        folder = finished.out / "cells" / ident
        for arm in ("sgd", "sgld", "nuts"):
            run = fb.load_run(folder / f"{arm}.nc")
            assert run.positions.shape == (2, 50, 3) and run.sampler == arm
        results = json.loads((folder / "analyses.json").read_text())
        assert set(results) == {"predictive", "summary", "compare", "llc", "diffusion", "lyapunov"}
        assert np.isfinite(results["diffusion"]["result"]["metrics"]["sgd"]["lambda_bar"])  # llc fed diffusion
        assert results["lyapunov"]["result"]["metrics"]["sgd"]["learning_rate"] == entry["grid"][
            "arms.sgd.options.learning_rate"]
        assert {p.name for p in (folder / "figures").glob("*.png")} >= {"loss.png", "marginals_w.png",
                                                                        "displacement_sgd.png"}
        assert json.loads((folder / "cell.json").read_text())["config_hash"] == entry["config_hash"]


def test_a_killed_run_resumes_without_recomputing_or_partial_files(finished):
    assert finished.killed_cell_status == "running" and "sgd.nc" in finished.staged  # killed inside cell 2
    second = f"cells/{CELLS[1]}"
    assert not any(p == second or p.startswith(second + "/") for p in finished.after_kill)  # nothing in place
    now = {name: ((finished.out / "cells" / CELLS[0] / name).stat().st_mtime_ns,
                  (finished.out / "cells" / CELLS[0] / name).stat().st_ino) for name in
           [p.split("/", 2)[2] for p in finished.first_cell_files]}
    assert now == {p.split("/", 2)[2]: v for p, v in finished.first_cell_files.items()}  # not recomputed
    assert _leftovers(finished.out) == []
    assert "1 of 2" not in finished.rerun.stdout and "2 of 2 cells done" in finished.rerun.stdout


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
    """One cheap SGD arm over two learning rates, the second one diverging (in-process runs)."""
    path = tmp_path_factory.mktemp("small") / "small.toml"
    path.write_text(TINY.split("[arms.sgld]")[0].replace('reference = "nuts"\n', "").replace(
        '["predictive", "summary", "compare", "llc", "diffusion", "lyapunov"]', '["predictive"]')
        + '[grid]\n"arms.sgd.options.learning_rate" = [0.05, 1e6]\n')
    return suites.load_suite(path)


def test_a_failing_cell_is_recorded_and_the_suite_goes_on(small_suite, tmp_path):
    cells = suites.run_suite(small_suite, tmp_path / "out", progress=False)
    good, bad = cells["learning_rate=0.05_seed=0"], cells["learning_rate=1e+06_seed=0"]
    assert good["status"] == "done"
    assert bad["status"] == "failed" and "all 2 chains diverged" in bad["error"]
    assert bad["arms"]["sgd"]["status"] == "failed" and "SamplerError" in bad["arms"]["sgd"]["error"]
    assert cli.main(["run", str(small_suite.path), "--out", str(tmp_path / "out")]) == 1  # failed cells rerun


def test_ctrl_c_marks_the_cell_interrupted_leaves_nothing_partial_and_resumes(small_suite, tmp_path, monkeypatch):
    original = suites._sample_arm

    def interrupt_second(target, arm, seed, progress):
        if arm["options"]["learning_rate"] > 1:
            raise KeyboardInterrupt
        return original(target, arm, seed, progress)

    monkeypatch.setattr(suites, "_sample_arm", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        suites.run_suite(small_suite, tmp_path, progress=False)
    cells = _index(tmp_path)
    assert cells["learning_rate=0.05_seed=0"]["status"] == "done"
    assert cells["learning_rate=1e+06_seed=0"]["status"] == "interrupted"
    assert _leftovers(tmp_path) == [] and not (tmp_path / "cells" / "learning_rate=1e+06_seed=0").exists()
    done = (tmp_path / "cells" / "learning_rate=0.05_seed=0" / "sgd.nc").stat().st_mtime_ns
    monkeypatch.setattr(suites, "_sample_arm", original)
    cells = suites.run_suite(small_suite, tmp_path, progress=False)
    assert cells["learning_rate=1e+06_seed=0"]["status"] == "failed"
    assert (tmp_path / "cells" / "learning_rate=0.05_seed=0" / "sgd.nc").stat().st_mtime_ns == done


MALFORMED = {
    "unknown model": (('name = "linear_regression"', 'name = "mlp"'), ":7: model.name: unknown model 'mlp'",
                      "allowed: linear_regression, logistic_regression, mlp_classifier"),
    "unknown option": (("learning_rate = 0.05 }", "learnin_rate = 0.05 }"),
                       ":20: arms.sgd.options.learnin_rate: unknown option 'learnin_rate' for sampler 'sgd'",
                       "allowed: learning_rate, momentum, weight_decay, schedule, optimizer, objective"),
    "wrong type": (("num_chains = 2\nnum_samples = 50\nburn_in = 100", 'num_chains = "two"\nnum_samples = 50\nburn_in = 100'),
                   ":16: arms.sgd.num_chains: must be an integer >= 1", "got 'two'"),
    "wrong option type": (("step_size = 1e-3", 'step_size = "small"'), ":28: arms.sgld.options.step_size",
                          "must be finite and > 0, got 'small'"),
    "bad choice": (("learning_rate = 0.05 }", 'learning_rate = 0.05, optimizer = "rmsprop" }'),
                   "arms.sgd.options.optimizer", "must be one of 'sgd', 'adam'; got 'rmsprop'"),
    "bad TOML": (("[data]", "[data"), ":10: invalid TOML", "at line 10"),
    "unknown analysis": (('"lyapunov"]', '"lyapunov", "entropy"]'), "suite.analyses: unknown analysis 'entropy'",
                         "allowed: predictive, summary, compare, llc, diffusion, tempering, lyapunov, llc_truth"),
    "bad grid key": (('"arms.sgd.options.learning_rate" = [0.02, 0.05]', '"arms.adam.options.learning_rate" = [0.02]'),
                     "grid.'arms.adam.options.learning_rate': no arm named 'adam'", "arms: sgd, sgld, nuts"),
    "bad grid value": (("[0.02, 0.05]", '[0.02, "fast"]'), "grid.'arms.sgd.options.learning_rate': value 'fast'",
                       "must be finite and > 0, got 'fast'"),
    "unknown data set": (('name = "linear_teacher"', 'name = "cifar"'), "data.name: unknown data set 'cifar'",
                         "allowed: moons, digits, mnist1d, mnist"),
}


@pytest.mark.parametrize("problem", list(MALFORMED))
def test_malformed_suite_files_exit_2_naming_file_line_key_and_allowed_values(problem, tmp_path, capsys):
    (old, new), where, allowed = MALFORMED[problem]
    assert old in TINY
    path = tmp_path / "broken.toml"
    path.write_text(TINY.replace(old, new, 1))
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and where in error and allowed in error, error
    assert not out.exists()


def test_an_unknown_executor_exits_2_naming_the_known_ones(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", str(path), "--out", str(tmp_path / "out"), "--executor", "dask"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--executor: invalid choice: 'dask'" in error and "local" in error
    assert not (tmp_path / "out").exists()


def test_dry_run_and_only_select_cells_and_write_nothing(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--dry-run", "--only", "0.05"]) == 0
    printed = capsys.readouterr().out
    assert "1 cell(s) selected" in printed and CELLS[1] in printed and CELLS[0] not in printed
    assert not out.exists()
    suite = suites.load_suite(path)
    assert [c.id for c in suite.cells("*0.02*")] == [CELLS[0]]
    assert cli.main(["run", str(path), "--out", str(out), "--only", "nothing-like-this"]) == 2
    assert "matches no cell" in capsys.readouterr().err and not out.exists()
    assert cli.main(["run", "quick", "--dry-run"]) == 0  # no --out needed to validate a shipped suite
    printed = capsys.readouterr().out
    assert "(no --out given)" in printed and "user code: none named" in printed
    assert cli.main(["run", "quick"]) == 2 and "--out DIR is required" in capsys.readouterr().err


def test_cells_expand_cases_grid_and_seeds_with_stable_hashes(tmp_path):
    path = tmp_path / "cases.toml"
    path.write_text(TINY.replace("[suite]\n", "[suite]\nseeds = [0, 1]\n") + """
[[cases]]
name = "small"
"data.options.n" = 40

[[cases]]
name = "wide"
"data.options" = { n = 60, d = 4 }
""")
    cells = suites.load_suite(path).cells()
    assert [c.id for c in cells][:3] == ["small_learning_rate=0.02_seed=0", "small_learning_rate=0.02_seed=1",
                                         "small_learning_rate=0.05_seed=0"]
    assert len(cells) == 8 and len({c.config_hash for c in cells}) == 8
    assert cells[-1].config["data"]["options"] == {"n": 60, "d": 4, "noise": 1.0}
    assert cells[0].config_hash == suites.load_suite(path).cells()[0].config_hash


def test_exact_learning_coefficients_of_the_ground_truth_cases():
    rrr = fb.data.rrr_teacher(50, M=3, H=2, N=3, rank=1)
    config = {"model": {"name": "deep_linear_network", "options": {"hidden": [2]}}}
    lam, multiplicity, _ = analyses.exact_learning_coefficient(config, rrr)
    assert lam == fb.slt.rrr_learning_coefficient(3, 2, 3, 1) and multiplicity >= 1
    linear = fb.data.linear_teacher(50, 4)
    assert analyses.exact_learning_coefficient({"model": {"name": "linear_regression"}}, linear)[0] == 2
    with pytest.raises(ValueError, match="knows the learning coefficient"):
        analyses.exact_learning_coefficient({"model": {"name": "mlp_classifier"}}, linear)


def test_shipped_suites_are_valid_and_found_by_name(tmp_path, monkeypatch):
    names = suites.shipped_suites()
    assert {"quick", "paper-moons-diffusion", "paper-moons-posterior", "paper-mlp-sgd-vs-adam",
            "llc-ground-truth", "sgd-as-sampler"} <= set(names)
    for name in names:
        assert suites.load_suite(name).cells()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick").mkdir()  # an output folder named like the suite does not hide it
    assert suites.resolve_suite_path("quick") == suites.SUITES_DIR / "quick.toml"
