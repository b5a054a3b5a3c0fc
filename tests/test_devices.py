"""Chains split over devices: the same draws as on one device, in a subprocess with 4 simulated CPUs.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` only takes effect if it is set before JAX is
imported, so the sharded runs happen in a fresh interpreter; the checks of bad arguments run here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import fractalbayes as fb
from fractalbayes.engine.devices import chain_mesh

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, warnings
import jax, numpy as np
import fractalbayes as fb
from fractalbayes.engine.driver import advance_fn
assert len(jax.devices()) == 4, jax.devices()
rng = np.random.default_rng(0)
x = rng.normal(size=(200, 2)).astype(np.float32)
y = (x[:, 0] * x[:, 1] > 0).astype(np.int32)
mlp = fb.from_numpyro(fb.models.mlp_classifier, x, y, batch_size=16, widths=(8,), num_classes=2)
logistic = fb.from_numpyro(fb.models.logistic_regression, x, y)
out = {}
for name, kw in (("sgld", dict(step_size=1e-3)), ("sgd", dict(learning_rate=1e-2)), ("nuts", {})):
    target = logistic if name == "nuts" else mlp
    one = fb.sample(target, name, num_chains=8, num_samples=30, burn_in=10, seed=1, **kw)
    for devices in (2, 4, jax.devices()[1:3]):
        split = fb.sample(target, name, num_chains=8, num_samples=30, burn_in=10, seed=1, devices=devices, **kw)
        label = f"{name}-{devices if isinstance(devices, int) else 'list'}"
        out[label] = {
            "bitwise": bool(np.array_equal(one.positions, split.positions)
                            and np.array_equal(one.checkpoints, split.checkpoints)
                            and all(np.array_equal(one.stats[k], split.stats[k]) for k in one.stats)),
            "max_abs": float(np.abs(one.positions - split.positions).max()),
            "same_sites": bool(all(np.allclose(one.sites[k], split.sites[k], atol=1e-3) for k in one.sites)),
            "recorded": split.config.devices == [str(d) for d in (jax.devices()[:devices] if isinstance(devices, int)
                                                                  else devices)] and one.config.devices is None,
        }
        if name == "nuts":  # the window adaptation ran per chain on each device: same step sizes
            out[label]["step_size"] = float(np.abs(one.stats["step_size"] - split.stats["step_size"]).max()
                                            / one.stats["step_size"].max())
# shared minibatches come from one replicated key, so a sharded run draws the same batches
one = fb.sample(mlp, "sgld", num_chains=8, num_samples=30, seed=3, step_size=1e-3, shared_batches=True)
split = fb.sample(mlp, "sgld", num_chains=8, num_samples=30, seed=3, step_size=1e-3, shared_batches=True, devices=4)
out["shared_batches"] = bool(np.array_equal(one.positions, split.positions))
# a diverging chain on a sharded run is frozen and flagged exactly as on one device
init = np.zeros((4, mlp.dim), np.float32); init[2] = 1e20
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    a = fb.sample(mlp, "sgd", num_chains=4, num_samples=5, burn_in=2, init=init, learning_rate=1e-2, seed=2)
    b = fb.sample(mlp, "sgd", num_chains=4, num_samples=5, burn_in=2, init=init, learning_rate=1e-2, seed=2,
                  devices=4)
out["diverged"] = {"same": a.diverged_at.tolist() == b.diverged_at.tolist() == [-1, -1, 0, -1]
                   and bool(np.array_equal(a.stats["frozen"], b.stats["frozen"]))}
try:
    fb.sample(mlp, "sgld", num_chains=6, devices=4)
except fb.InputError as error:
    out["uneven"] = str(error)
# one compiled advance per (kernel, stats, mesh): sharded and unsharded runs do not share executables
keys = [k for k in mlp._memo if isinstance(k, tuple) and k[0] == "advance"]
out["advance_entries"] = len(keys)
out["meshes"] = sorted({str(None if k[3] is None else k[3].devices.shape) for k in keys})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def sharded():
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sgld", "sgd"])
def test_sharded_sg_draws_are_bitwise_equal(sharded, name):
    for devices in ("2", "4", "list"):
        row = sharded[f"{name}-{devices}"]
        assert row["bitwise"] and row["max_abs"] == 0.0 and row["recorded"], (devices, row)


@pytest.mark.slow
def test_sharded_nuts_draws_agree(sharded):
    # Full-batch NUTS: the chains' arithmetic is the same, but XLA may order the data-axis sums of a
    # 2-chain batch differently from an 8-chain one (float32 rounding, ~1e-7 relative per step). On
    # a log-concave posterior (logistic regression) the trajectories stay together over 30 draws; on
    # a multimodal MLP posterior one flipped U-turn decision sends a chain elsewhere (seen: 5.3).
    for devices in ("2", "4", "list"):
        row = sharded[f"nuts-{devices}"]
        assert row["max_abs"] < 1e-3 and row["same_sites"] and row["recorded"], (devices, row)
        # The warm-up runs sharded too, one window adaptation per chain. Its adapted step sizes differ
        # from the single-device ones only through the same float32 reductions (seen: 4e-5 relative
        # after 10 adaptation steps); a warm-up that mixed chains or skipped some would differ by O(1).
        assert row["step_size"] < 1e-3, (devices, row)


@pytest.mark.slow
def test_sharded_divergence_and_cache_keys(sharded):
    assert sharded["diverged"]["same"] and sharded["shared_batches"]
    assert "None" in sharded["meshes"] and "(2,)" in sharded["meshes"] and "(4,)" in sharded["meshes"]


def test_bad_devices_fail_before_work(logistic):
    available = len(jax.devices())
    with pytest.raises(fb.InputError, match="JAX sees"):
        fb.sample(logistic, "sgld", num_chains=4, devices=available + 1)
    with pytest.raises(fb.InputError, match="positive int or a non-empty list"):
        fb.sample(logistic, "sgld", num_chains=4, devices="gpu")
    with pytest.raises(fb.InputError, match="must be an integer >= 1"):
        fb.sample(logistic, "sgld", num_chains=4, devices=0)
    assert chain_mesh(None, 3) is None and chain_mesh(1, 3) is None


@pytest.mark.slow
def test_uneven_split_and_repeated_devices_are_refused(sharded):
    assert "num_chains=6 cannot be split evenly over 4 devices" in sharded["uneven"]
    with pytest.raises(fb.InputError, match="lists a device twice"):
        chain_mesh(jax.devices() * 2, 4)


def test_llc_estimate_checks_devices_before_training(logistic):
    with pytest.raises(fb.InputError, match="JAX sees"):
        fb.llc.estimate(logistic, None, devices=len(jax.devices()) + 1)
