"""The persistent compilation cache: a second process reads the executables the first one wrote.

Each case runs in a fresh interpreter (the cache folder is read from the environment when
``fractalbayes`` is imported) and counts JAX's own cache events while it samples a small model.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fractalbayes.engine import cache

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import collections, json, warnings
import jax, jax.monitoring
events = collections.Counter()
jax.monitoring.register_event_listener(lambda name, **kw: events.update([name]))
jax.monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: events.update([name]))
import numpy as np
import fractalbayes as fb
from fractalbayes.engine import cache
x = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
y = (x[:, 0] > 0).astype(np.int32)
target = fb.from_numpyro(fb.models.logistic_regression, x, y, batch_size=10)
run = fb.sample(target, "sgld", num_chains=2, num_samples=20, burn_in=10, step_size=1e-3, seed=3)
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "hits": events["/jax/compilation_cache/cache_hits"],
                  "misses": events["/jax/compilation_cache/cache_misses"],
                  "compiles": events["/jax/core/compile/backend_compile_duration"],
                  "first": run.positions[:, -1].tolist(), "compile_s": run.timings["compile_s"]}))
"""


def child(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("FRACTALBAYES_NO_CACHE", "FRACTALBAYES_CACHE_DIR",
                                                               "JAX_COMPILATION_CACHE_DIR")}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT,
                          env=clean | env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_skips_compilation(tmp_path):
    first = child(XDG_CACHE_HOME=str(tmp_path))
    second = child(XDG_CACHE_HOME=str(tmp_path))
    folder = tmp_path / "fractalbayes" / "jax"
    assert first["dir"] == str(folder)
    assert first["misses"] > 0 and any(folder.iterdir()), first
    # every program the second process compiles (the driver's, the warm-up's, eager helpers) is read back
    assert second["misses"] == 0 and second["hits"] >= first["misses"], (first, second)
    assert second["first"] == first["first"]  # same seed, same draws from a cached executable


@pytest.mark.slow
def test_opt_out_leaves_jax_alone(tmp_path):
    out = child(FRACTALBAYES_NO_CACHE="1", XDG_CACHE_HOME=str(tmp_path))
    assert out["dir"] is None and out["hits"] == 0 and out["misses"] == 0
    assert not (tmp_path / "fractalbayes").exists()


def test_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FRACTALBAYES_CACHE_DIR", str(tmp_path / "here"))
    assert cache.default_folder() == tmp_path / "here"
    monkeypatch.delenv("FRACTALBAYES_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.default_folder() == tmp_path / "fractalbayes" / "jax"
    for value, off in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("FRACTALBAYES_NO_CACHE", value)
        assert cache.disabled() is off


def test_unwritable_folder_warns_and_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = ("import warnings, jax\nfrom fractalbayes.engine import cache\n"
            "with warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n"
            f"    got = cache.enable({str(blocker / 'sub')!r})\n"
            "print(got, [str(x.message) for x in w])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=os.environ | {"FRACTALBAYES_NO_CACHE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("None") and "FRACTALBAYES_CACHE_DIR" in done.stdout
