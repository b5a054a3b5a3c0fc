"""Logs that fit a terminal and a file (fractalbayes.progress and the CLI's -q/-v).

A tiny suite runs through the CLI with stdout and stderr redirected to files, as `fractalbayes demo
> log 2>&1` would: the log must hold the phase lines (compiling, NUTS warm-up with its duration,
bars named after arm and phase) as plain lines, with no carriage return and no escape sequence.
"""

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fractalbayes import progress
from fractalbayes.suite.cli import format_table

SUITE = """\
[suite]
name = "logs"
reference = "nuts"
analyses = ["compare"]

[model]
name = "linear_regression"
batch_size = 10

[data]
name = "linear_teacher"
options = { n = 40, d = 2, noise = 1.0 }

[arms.sgld]
sampler = "sgld"
num_chains = 2
num_samples = 40
burn_in = 40
options = { step_size = 1e-3 }

[arms.nuts]
sampler = "nuts"
num_chains = 2
num_samples = 40
burn_in = 40
"""


def _run_cli(folder: Path, *flags: str, env: dict | None = None) -> tuple[int, str, str]:
    """Run the suite with both streams redirected to files; (exit code, stdout, stderr)."""
    suite = folder / "logs.toml"
    suite.write_text(SUITE)
    out_path, err_path = folder / "stdout.log", folder / "stderr.log"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        code = subprocess.run([sys.executable, "-m", "fractalbayes", *flags, "run", str(suite), "--out",
                               str(folder / "out")], stdout=out, stderr=err, timeout=300, check=False,
                              env=os.environ | {"FRACTALBAYES_PROGRESS_EVERY": "0"} | (env or {})).returncode
    return code, out_path.read_text(), err_path.read_text()


@pytest.fixture(scope="session")
def redirected(tmp_path_factory) -> tuple[int, str, str]:
    return _run_cli(tmp_path_factory.mktemp("logs"))


@pytest.mark.slow
def test_a_redirected_log_has_plain_lines_only(redirected):
    code, out, err = redirected
    assert code == 0, err[-3000:]
    for text in (out, err):
        assert "\r" not in text and "\x1b" not in text
    assert "1 of 1 cells done" in out
    text = err
    # the phases of each arm in order (compile, burn-in, sampling; NUTS's warm-up), timestamped
    for expected in ("sgld: compiling", "sgld: burn-in: started (80 steps)", "sgld: sampling: 80/80 steps",
                     "nuts: warm-up (40 steps x 2 chains", "nuts: warm-up done in", "nuts: sampling: started (40",
                     "suite logs: started (1 cells)", "cell seed=0: done in"):
        assert expected in text, (expected, text)
    assert re.search(r"^\d\d:\d\d:\d\d sgld: compiling", text, flags=re.MULTILINE), text
    assert text.index("sgld: compiling") < text.index("sgld: burn-in") < text.index("nuts: warm-up (")
    assert text.index("nuts: warm-up done") < text.index("nuts: sampling")


@pytest.mark.slow
def test_quiet_prints_no_progress_and_tqdm_disable_is_honoured(tmp_path):
    code, out, err = _run_cli(tmp_path, "--quiet")
    assert code == 0, err[-3000:]
    assert "compiling" not in err and "started" not in err and "1 of 1 cells done" in out
    logger = logging.getLogger("fractalbayes")
    level = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        os.environ["TQDM_DISABLE"] = "1"
        assert not progress.enabled(True)
        del os.environ["TQDM_DISABLE"]
        assert progress.enabled(True) and not progress.enabled(False)
        logger.setLevel(logging.WARNING)  # what --quiet sets
        assert not progress.enabled(True)
    finally:
        os.environ.pop("TQDM_DISABLE", None)
        logger.setLevel(level)


def test_bars_on_a_terminal_nest_and_are_named_after_the_task(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with progress.task("fractal"):
        assert progress.name("sgd") == "fractal/sgd" and progress.name("fractal") == "fractal"
    assert progress.name("sgd") == "sgd"
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    outer = progress.bar(3, "suite s", "cell")
    inner = progress.bar(10, "sgld: burn-in")
    assert outer.leave and not inner.leave and inner.pos != outer.pos  # nested below, removed when done
    inner.update(10)
    inner.close()
    outer.close()


def test_plain_progress_lines(caplog):
    caplog.set_level(logging.INFO, logger="fractalbayes")
    bar = progress.PlainProgress(100, "sgld: burn-in", "step", every=0.0)
    bar.update(50)
    bar.set_description("sgld: sampling")
    bar.update(50)
    bar.close()
    bar.close()  # once
    assert caplog.messages[0] == "sgld: burn-in: started (100 steps)"
    assert caplog.messages[1].startswith("sgld: burn-in: 50/100 steps (50%), ")
    assert caplog.messages[-1].startswith("sgld: sampling: 100/100 steps (100%), ")
    assert caplog.messages[-1].endswith(": done") and len(caplog.messages) == 3


def test_counts_print_as_integers():
    import pandas as pd

    table = pd.DataFrame({"num_draws": [1600.0, 800.0], "r_hat": [1.0123, 1.5], "ok": [True, False]},
                         index=["sgd", "nuts"])
    text = format_table(table).T.to_string()
    assert "1600" in text and "1600.0" not in text and "1.01" in text and "True" in text
