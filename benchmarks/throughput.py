"""Sampler throughput, measured side by side in one process (issue 2).

    .venv/bin/python benchmarks/throughput.py            # full run (about 2.5 min on 2 CPU cores)
    .venv/bin/python benchmarks/throughput.py --quick    # smoke run (< 1 min)

Three comparisons; the last line printed is one JSON object with the ratios.

1. ``sgld_vs_blackjax``: ``fb.sample(target, "sgld")`` against a minimal hand-written loop
   (``jax.lax.scan`` over steps, chains ``jax.vmap``-ped, minibatch indices drawn by
   ``jax.random.randint`` inside the scan, ``blackjax.sgld(grad_estimator)`` with the gradient of the
   same Target's minibatch log density), same model, init, step size, batch size, chain count, number
   of steps and thinning; both hand every kept draw back to the host as NumPy. Ratio = our steps/s
   over BlackJAX's steps/s, best of the repeats for each arm (the repeats alternate between the two
   arms so that load from other processes hits both alike). Our steps/s use
   ``run.timings["sampling_s"]`` (the chunked scan and the draw transfers; compilation excluded);
   the whole ``fb.sample`` call (initial positions, constraining the draws to named sites, the Run)
   is reported too. Our driver also records the loss and step size per draw (the gradient norm only
   when asked for: ``stats="all"``), masks non-finite chains and writes displacement checkpoints:
   all of that is inside the measured time. Each repeat runs both arms back to back; the median and
   quartiles of the per-repeat ratios are printed next to the best-of ratio.
1b. ``family_ratios`` (issue 15): the same comparison for ``sgnht``, ``sgld_cv`` and ``csgld`` against
   hand-written loops around ``blackjax.sgnht``, ``blackjax.sgld`` on
   ``blackjax.sgmcmc.gradients.control_variates``, and ``blackjax.csgld``; ``psgld`` (no BlackJAX
   kernel) against our ``sgld``; ``sgld`` first as a calibration arm under the same load. Also
   ``family_ratios_cpu_whole_call``: CPU seconds of the loop over CPU seconds of our whole call.
2. ``nuts_vs_numpyro_ess_per_s``: ``fb.sample(target, "nuts")`` against
   ``numpyro.infer.MCMC(NUTS(model), chain_method="vectorized")`` on a Bayesian logistic regression of
   scikit-learn's breast-cancer data (569 x 30, standardised; 31 parameters), same chains, warm-up
   and draws, both started from U(-2, 2) in unconstrained space. ESS is ArviZ's bulk ESS
   (``arviz_stats.base.array_stats.ess``) of every parameter, summarised by the mean (and the min,
   also reported); seconds are the sampling phase after warm-up, compilation excluded for both:
   ours is ``run.timings["sampling_s"]`` (AOT-compiled before the timer starts; the full run also
   makes one untimed call per arm first),
   NumPyro's is the wall time of ``mcmc.run`` after ``mcmc.warmup`` minus the time JAX reports
   spending on tracing, lowering and compiling inside it (NumPyro recompiles its sampling loop on
   every call, about 2-3 s here: see ``CompileClock``). Warm-up times are reported the same way.
   Ratio = median over seeds of the per-seed ratios.
3. ``rss_growth_doubling_steps``: peak RSS (VmHWM; see ``start_child``) of a fresh child process
   running SGLD on the ~100k-parameter MLP for N and for 2N steps with a fixed number of draws (thin
   grows with N) and of requested checkpoints, as (RSS(2N) - RSS(N)) / RSS(N). Memory should grow
   with what is kept, not with steps.

Other processes sharing the cores move single timings by +-10 %: the figures are bests of many short
repeats, with the median of paired per-repeat ratios printed next to them (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import blackjax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import fractalbayes as fb  # noqa: E402

SIZES = {
    # name: (data set loader, hidden widths, number of classes)
    "400": (lambda: fb.data.moons(2000, seed=0), (18, 16), 2),  # 392 parameters
    "100k": (lambda: fb.data.digits(seed=0), (384, 192), 10),  # 100,810 parameters
}


def log(*args) -> None:
    print(*args, flush=True)


# --------------------------------------------------------------------------------------------------
# 1. SGLD: our driver against a hand-written lax.scan + blackjax.sgld loop
# --------------------------------------------------------------------------------------------------


def mlp_target(size: str, batch_size: int) -> fb.Target:
    load, widths, classes = SIZES[size]
    ds = load()
    return fb.from_numpyro(
        fb.models.mlp_classifier, ds.x_train, ds.y_train, batch_size=batch_size, widths=widths,
        num_classes=classes,
    )


def blackjax_sgld_loop(target: fb.Target, num_chains: int, num_draws: int, thin: int, step_size: float):
    """The minimal loop a user would write by hand: returns draws (num_draws, chain, dim)."""
    n, batch_size = target.n_data, target.batch_size

    def grad_estimator(z, batch):
        return jax.grad(lambda z: target.log_posterior_estimate(z, batch, n)[0])(z)

    sgld = blackjax.sgld(grad_estimator)

    def chain_step(z, key):
        batch_key, step_key = jax.random.split(key)
        idx = jax.random.randint(batch_key, (batch_size,), 0, n)
        batch = {k: v[idx] for k, v in target.data.items()}
        return sgld.step(step_key, z, batch, step_size)

    def run(key, z0):
        def one_step(z, key):
            return jax.vmap(chain_step)(z, jax.random.split(key, num_chains)), None

        def one_draw(z, key):
            z, _ = jax.lax.scan(one_step, z, jax.random.split(key, thin))
            return z, z

        return jax.lax.scan(one_draw, z0, jax.random.split(key, num_draws))[1]

    return jax.jit(run)


def sgld_case(size: str, *, num_chains: int, batch_size: int, num_draws: int, thin: int,
              step_size: float, repeats: int) -> dict:
    target = mlp_target(size, batch_size)
    steps = num_draws * thin
    z0 = jax.vmap(target.init_position)(jax.random.split(jax.random.key(1), num_chains))
    options = dict(num_chains=num_chains, num_samples=num_draws, burn_in=0, thin=thin, init=z0,
                   step_size=step_size, progress=False)

    tic = time.perf_counter()
    loop = blackjax_sgld_loop(target, num_chains, num_draws, thin, step_size)
    key = jax.random.key(0)
    loop = loop.lower(key, z0).compile()
    bj_compile = time.perf_counter() - tic
    first = fb.sample(target, "sgld", **options)  # compiles ours
    fb_compile = first.timings["compile_s"]

    bj_s, fb_s, fb_wall = [], [], []
    for r in range(repeats):
        tic = time.perf_counter()
        draws = np.asarray(loop(jax.random.key(r), z0))
        bj_s.append(time.perf_counter() - tic)
        tic = time.perf_counter()
        run = fb.sample(target, "sgld", seed=r, **options)
        fb_wall.append(time.perf_counter() - tic)
        fb_s.append(run.timings["sampling_s"])
        assert run.timings["compile_s"] == 0.0, run.timings
    assert np.all(np.isfinite(draws)) and not run.diverged.any(), "a chain diverged: lower the step size"
    del draws, run, first
    out = {
        "dim": target.dim, "n_data": target.n_data, "batch_size": batch_size, "chains": num_chains,
        "steps": steps, "thin": thin, "draws": num_draws,
        "blackjax_steps_per_s": steps / min(bj_s),
        "ours_steps_per_s": steps / min(fb_s),
        "ours_whole_call_steps_per_s": steps / min(fb_wall),
        "compile_s": {"blackjax": bj_compile, "ours": fb_compile},
        "raw_s": {"blackjax": bj_s, "ours_sampling": fb_s, "ours_whole_call": fb_wall},
    }
    out["ratio"] = out["ours_steps_per_s"] / out["blackjax_steps_per_s"]
    out["ratio_median_of_pairs"] = statistics.median(b / f for b, f in zip(bj_s, fb_s))
    out["ratio_whole_call"] = out["ours_whole_call_steps_per_s"] / out["blackjax_steps_per_s"]
    out["paired"] = {"sampling": spread([b / f for b, f in zip(bj_s, fb_s)]),
                     "whole_call": spread([b / f for b, f in zip(bj_s, fb_wall)])}
    p, w = out["paired"]["sampling"], out["paired"]["whole_call"]
    log(f"  sgld {size:>4} (d={target.dim}, thin={thin}, {steps} steps): blackjax "
        f"{out['blackjax_steps_per_s']:.0f} steps/s, ours {out['ours_steps_per_s']:.0f} steps/s "
        f"(whole call {out['ours_whole_call_steps_per_s']:.0f}); best-of ratio {out['ratio']:.3f} "
        f"(whole call {out['ratio_whole_call']:.3f}); paired repeats: sampling median {p['median']:.3f} "
        f"[IQR {p['q25']:.3f}-{p['q75']:.3f}], whole call median {w['median']:.3f} [IQR {w['q25']:.3f}-{w['q75']:.3f}]")
    return out


def spread(values: list[float]) -> dict:
    """Median, quartiles and range of per-repeat ratios (each repeat runs both arms back to back)."""
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return {"median": float(q50), "q25": float(q25), "q75": float(q75), "min": min(values), "max": max(values),
            "n": len(values)}


# --------------------------------------------------------------------------------------------------
# 1b. The rest of the SG-MCMC family (issue 15): ours against hand-written lax.scan + BlackJAX loops
# --------------------------------------------------------------------------------------------------


def blackjax_family_loop(target: fb.Target, sampler: str, num_chains: int, num_draws: int, thin: int,
                         options: dict, center):
    """A user's minimal loop around BlackJAX's own kernel (same scan/vmap/randint shape as the SGLD
    loop above): sgld (``blackjax.sgld``, the calibration arm), sgnht (``blackjax.sgnht``), sgld_cv (``blackjax.sgld`` on
    ``blackjax.sgmcmc.gradients.control_variates`` centred at ``center``) or csgld (``blackjax.csgld``).
    Returns a jitted ``run(key, z0) -> draws (num_draws, chain, dim)``."""
    n, batch_size, h = target.n_data, target.batch_size, options["step_size"]

    def log_density(z, batch):
        return target.log_posterior_estimate(z, batch, n)[0]

    grad_estimator = jax.grad(log_density)
    if sampler == "sgnht":
        algorithm = blackjax.sgnht(grad_estimator)
        init = lambda z, key: algorithm.init(z, key)
        step = lambda key, state, batch: algorithm.step(key, state, batch, h)
    elif sampler == "sgld":  # the calibration arm: the same comparison as section 1, run alongside
        algorithm = blackjax.sgld(grad_estimator)
        init = lambda z, key: algorithm.init(z)
        step = lambda key, state, batch: algorithm.step(key, state, batch, h)
    elif sampler == "sgld_cv":
        algorithm = blackjax.sgld(blackjax.sgmcmc.gradients.control_variates(grad_estimator, center, target.data))
        init = lambda z, key: algorithm.init(z)
        step = lambda key, state, batch: algorithm.step(key, state, batch, h)
    elif sampler == "csgld":
        algorithm = blackjax.csgld(log_density, grad_estimator, zeta=options["zeta"],
                                   num_partitions=options["num_partitions"], energy_gap=options["energy_gap"],
                                   min_energy=options["min_energy"])
        init = lambda z, key: algorithm.init(z)
        step = lambda key, state, batch: algorithm.step(key, state, batch, h, options["sa_step_size"])
    else:
        raise ValueError(f"no BlackJAX loop for {sampler!r}")
    position = (lambda s: s) if sampler in ("sgld", "sgld_cv") else (lambda s: s.position)

    def chain_step(state, key):
        batch_key, step_key = jax.random.split(key)
        idx = jax.random.randint(batch_key, (batch_size,), 0, n)
        return step(step_key, state, {k: v[idx] for k, v in target.data.items()})

    def run(key, z0):
        init_key, key = jax.random.split(key)
        states = jax.vmap(init)(z0, jax.random.split(init_key, num_chains))

        def one_step(state, key):
            return jax.vmap(chain_step)(state, jax.random.split(key, num_chains)), None

        def one_draw(state, key):
            state, _ = jax.lax.scan(one_step, state, jax.random.split(key, thin))
            return state, position(state)

        return jax.lax.scan(one_draw, states, jax.random.split(key, num_draws))[1]

    return jax.jit(run)


FAMILY_OPTIONS = {
    "sgld": {"step_size": 1e-5},
    "sgnht": {"step_size": 1e-5},
    "sgld_cv": {"step_size": 1e-5},
    "psgld": {"step_size": 1e-4},
    "csgld": {"step_size": 1e-5, "zeta": 1.0, "num_partitions": 512, "energy_gap": 10.0, "min_energy": 0.0,
              "sa_step_size": 1e-3},
}


def family_case(sampler: str, size: str, *, num_chains: int, batch_size: int, num_draws: int, thin: int,
                repeats: int) -> dict:
    """As :func:`sgld_case` for another sampler of the family: ratio = our steps/s over the BlackJAX
    loop's (best of alternating repeats, compilation excluded). pSGLD has no BlackJAX kernel: its
    figure is our steps/s against our own SGLD's on the same settings (the preconditioner's cost)."""
    target = mlp_target(size, batch_size)
    steps = num_draws * thin
    z0 = jax.vmap(target.init_position)(jax.random.split(jax.random.key(1), num_chains))
    center = z0[0]  # any point does for timing; the control variates' centre in both arms
    extra = {"cv_center": np.asarray(center)} if sampler == "sgld_cv" else {}
    options = dict(num_chains=num_chains, num_samples=num_draws, burn_in=0, thin=thin, init=z0, progress=False,
                   **FAMILY_OPTIONS[sampler], **extra)
    key = jax.random.key(0)
    if sampler == "psgld":
        reference_name = "ours_sgld"
        sgld_options = dict(options, step_size=1e-5)
        fb.sample(target, "sgld", **sgld_options)

        def reference(r):
            cpu = time.process_time()
            seconds = fb.sample(target, "sgld", seed=r, **sgld_options).timings["sampling_s"]
            return seconds, time.process_time() - cpu
        ref_compile = 0.0
    else:
        reference_name = "blackjax"
        tic = time.perf_counter()
        loop = blackjax_family_loop(target, sampler, num_chains, num_draws, thin, FAMILY_OPTIONS[sampler], center)
        loop = loop.lower(key, z0).compile()
        ref_compile = time.perf_counter() - tic

        def reference(r):
            tic, cpu = time.perf_counter(), time.process_time()
            draws = np.asarray(loop(jax.random.key(r), z0))
            seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
            assert np.all(np.isfinite(draws)), f"the BlackJAX {sampler} loop diverged"
            return seconds, cpu
    first = fb.sample(target, sampler, **options)  # compiles ours
    ours_compile = first.timings["compile_s"]
    ref_s, fb_s, fb_wall, ref_cpu, fb_cpu = [], [], [], [], []
    for r in range(repeats):
        seconds, cpu = reference(r)
        ref_s.append(seconds)
        ref_cpu.append(cpu)
        tic, cpu = time.perf_counter(), time.process_time()
        run = fb.sample(target, sampler, seed=r, **options)
        fb_wall.append(time.perf_counter() - tic)
        fb_cpu.append(time.process_time() - cpu)
        fb_s.append(run.timings["sampling_s"])
    assert not run.diverged.any(), f"a {sampler} chain diverged: lower the step size"
    out = {
        "sampler": sampler, "reference": reference_name, "dim": target.dim, "batch_size": batch_size,
        "chains": num_chains, "steps": steps, "thin": thin, "draws": num_draws,
        "reference_steps_per_s": steps / min(ref_s), "ours_steps_per_s": steps / min(fb_s),
        "ours_whole_call_steps_per_s": steps / min(fb_wall),
        "compile_s": {"reference": ref_compile, "ours": ours_compile},
        "raw_s": {"reference": ref_s, "ours_sampling": fb_s, "ours_whole_call": fb_wall},
        "raw_cpu_s": {"reference": ref_cpu, "ours_whole_call": fb_cpu},
    }
    out["ratio"] = out["ours_steps_per_s"] / out["reference_steps_per_s"]
    # CPU seconds of this process (all its threads): the work each arm does, which other processes'
    # load moves far less than wall time. Ours is the whole call (sampling and everything around it).
    out["ratio_cpu_whole_call"] = min(ref_cpu) / min(fb_cpu)
    out["ratio_median_of_pairs"] = statistics.median(b / f for b, f in zip(ref_s, fb_s))
    log(f"  {sampler:>7} {size:>4} (d={target.dim}, thin={thin}, {steps} steps): {reference_name} "
        f"{out['reference_steps_per_s']:.0f} steps/s, ours {out['ours_steps_per_s']:.0f} steps/s "
        f"(whole call {out['ours_whole_call_steps_per_s']:.0f}); ratio {out['ratio']:.3f} "
        f"(median of paired repeats {out['ratio_median_of_pairs']:.3f}; CPU time, whole call "
        f"{out['ratio_cpu_whole_call']:.3f})")
    return out


# --------------------------------------------------------------------------------------------------
# 2. NUTS: ours against NumPyro's, ESS per second
# --------------------------------------------------------------------------------------------------


def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float64)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    return x, bunch.target.astype(np.int32)


class CompileClock:
    """Wall time of a block and the part of it JAX spent tracing, lowering and compiling.

    NumPyro's MCMC re-lowers and recompiles its loops on every ``warmup``/``run`` call (the jitted
    loop is rebuilt each time), so its compile time is measured from JAX's own monitoring events
    (``/jax/core/compile/*_duration``, reported synchronously by the calling thread) and subtracted.
    """

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")
    _active: list = []
    _registered = False

    def __enter__(self):
        if not CompileClock._registered:
            import jax.monitoring

            def listener(name, seconds, **kwargs):
                if name in CompileClock.EVENTS:
                    for clock in CompileClock._active:
                        clock.compile += seconds

            jax.monitoring.register_event_duration_secs_listener(listener)
            CompileClock._registered = True
        self.compile = 0.0
        CompileClock._active.append(self)
        self._tic = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._tic
        CompileClock._active.remove(self)
        self.excluding_compile = self.wall - self.compile
        return False


def bulk_ess(draws: np.ndarray) -> np.ndarray:
    """Bulk ESS of every parameter of (chain, draw, param) draws."""
    from arviz_stats.base import array_stats

    return np.asarray(array_stats.ess(draws, chain_axis=0, draw_axis=1, method="bulk"))


def nuts_case(*, num_chains: int, num_warmup: int, num_samples: int, seeds: int, quick: bool = False) -> dict:
    from numpyro.infer import MCMC, NUTS

    x, y = breast_cancer()
    model = fb.models.logistic_regression
    target = fb.from_numpyro(model, x, y)
    options = dict(num_chains=num_chains, num_samples=num_samples, burn_in=num_warmup, init="uniform",
                   progress=False)
    mcmc = MCMC(NUTS(model), num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)

    def numpyro_pass(seed: int):
        key_warm, key_run = jax.random.split(jax.random.key(1000 + seed))
        with CompileClock() as warm:
            mcmc.warmup(key_warm, x, y)
            jax.block_until_ready(mcmc.post_warmup_state)
        with CompileClock() as sampling:
            mcmc.run(key_run, x, y)
            samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        draws = np.concatenate([np.asarray(samples["w"]), np.asarray(samples["b"])[..., None]], axis=-1)
        return draws, warm, sampling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Untimed first calls: our sampling_s excludes the AOT compile but a first call still pays for
        # small helpers and first-touch memory; NumPyro recompiles on every call anyway (subtracted).
        if not quick:
            numpyro_pass(0)
        fb.sample(target, "nuts", seed=0, **options)
        rows = []
        for seed in range(1, seeds + 1):
            np_draws, np_warm, np_sampling = numpyro_pass(seed)
            with CompileClock() as ours_clock:
                run = fb.sample(target, "nuts", seed=seed, **options)
            sites = run.sites
            ours = np.concatenate([sites["w"], sites["b"][..., None]], axis=-1)
            ess_np, ess_fb = bulk_ess(np_draws), bulk_ess(ours)
            sd = np.concatenate([np_draws, ours], axis=1).std(axis=(0, 1))
            diff = np.abs(np_draws.mean((0, 1)) - ours.mean((0, 1)))
            z = diff / (sd * np.sqrt(1 / ess_np + 1 / ess_fb))
            rows.append({
                "numpyro": {"warmup_s": np_warm.excluding_compile, "sampling_s": np_sampling.excluding_compile,
                            "warmup_wall_s": np_warm.wall, "sampling_wall_s": np_sampling.wall,
                            "compile_s": np_warm.compile + np_sampling.compile,
                            "mean_ess": ess_np.mean(), "min_ess": ess_np.min()},
                "ours": {"warmup_s": run.timings["warmup_s"], "sampling_s": run.timings["sampling_s"],
                         "compile_s": run.timings["compile_s"], "compile_events_s": ours_clock.compile,
                         "whole_call_s": run.timings["total_s"],
                         "mean_ess": ess_fb.mean(), "min_ess": ess_fb.min(),
                         "mean_steps": float(run.stats["n_steps"].mean())},
                "max_mean_diff_in_sd": float(np.max(diff / sd)),
                "max_mean_diff_z": float(np.max(z)),
            })
    for row in rows:
        for arm in ("numpyro", "ours"):
            a = row[arm]
            a["mean_ess_per_s"] = a["mean_ess"] / a["sampling_s"]
            a["min_ess_per_s"] = a["min_ess"] / a["sampling_s"]
        row["ratio"] = row["ours"]["mean_ess_per_s"] / row["numpyro"]["mean_ess_per_s"]
        row["ratio_min_ess"] = row["ours"]["min_ess_per_s"] / row["numpyro"]["min_ess_per_s"]
        log(f"  nuts: numpyro mean ESS {row['numpyro']['mean_ess']:.0f} in {row['numpyro']['sampling_s']:.2f}s "
            f"(warm-up {row['numpyro']['warmup_s']:.2f}s; compile {row['numpyro']['compile_s']:.1f}s excluded), ours {row['ours']['mean_ess']:.0f} in "
            f"{row['ours']['sampling_s']:.2f}s (warm-up {row['ours']['warmup_s']:.2f}s); ratio "
            f"{row['ratio']:.3f} (min ESS {row['ratio_min_ess']:.3f}); means differ by <= "
            f"{row['max_mean_diff_in_sd']:.3f} sd (max |z| over {target.dim} parameters {row['max_mean_diff_z']:.2f})")
    return {
        "dim": target.dim, "n_data": target.n_data, "chains": num_chains, "warmup": num_warmup,
        "samples": num_samples, "seeds": rows,
        "ratio": statistics.median(r["ratio"] for r in rows),
        "ratio_min_ess": statistics.median(r["ratio_min_ess"] for r in rows),
    }


# --------------------------------------------------------------------------------------------------
# 3. Peak memory against the number of steps, in fresh processes
# --------------------------------------------------------------------------------------------------

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
sys.argv = ["child"]
import jax
import benchmarks.throughput as t
target = t.mlp_target("100k", 32)
tic = time.perf_counter()
run = t.fb.sample(target, "sgld", num_chains={chains}, num_samples={draws}, burn_in=0, thin={thin},
                  step_size=1e-5, num_checkpoints={checkpoints}, progress=False)
seconds = time.perf_counter() - tic
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({{"vmhwm_kb": hwm, "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "s": seconds, "checkpoints": int(run.checkpoints.shape[1]), "draws": int(run.num_draws)}}))
"""


def start_child(steps: int, *, chains: int, draws: int, checkpoints: int) -> subprocess.Popen:
    """A fresh interpreter running the SGLD run; its last stdout line is JSON with its peak RSS.

    Peak RSS is read as VmHWM from /proc/self/status: on Linux ``ru_maxrss`` survives fork + exec,
    so a child started from this (by then multi-GB) benchmark process would report the parent's peak
    instead. ``ru_maxrss`` is kept in the output for comparison.
    """
    code = CHILD.format(root=ROOT, chains=chains, draws=draws, thin=steps // draws, checkpoints=checkpoints)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)


def child_result(child: subprocess.Popen) -> dict:
    stdout, stderr = child.communicate()
    if child.returncode:
        raise RuntimeError(f"child failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def rss_case(*, steps: int, chains: int, draws: int, checkpoints: int, repeats: int) -> dict:
    # The children run concurrently: peak RSS does not depend on how fast they run.
    kw = dict(chains=chains, draws=draws, checkpoints=checkpoints)
    children = [(n, start_child(n, **kw)) for _ in range(repeats) for n in (steps, 2 * steps)]
    results = [(n, child_result(c)) for n, c in children]
    small = [r for n, r in results if n == steps]
    large = [r for n, r in results if n == 2 * steps]
    rss_n = min(r["vmhwm_kb"] for r in small) / 1024
    rss_2n = min(r["vmhwm_kb"] for r in large) / 1024
    out = {"steps": steps, "chains": chains, "draws": draws,
           "checkpoints": {"N": small[0]["checkpoints"], "2N": large[0]["checkpoints"]},
           "peak_rss_mib": {"N": rss_n, "2N": rss_2n}, "raw": {"N": small, "2N": large},
           "growth": rss_2n / rss_n - 1}
    log(f"  rss: {steps} steps {rss_n:.0f} MiB ({small[0]['checkpoints']} checkpoints), {2 * steps} steps "
        f"{rss_2n:.0f} MiB ({large[0]['checkpoints']} checkpoints); growth {out['growth']:+.2%}")
    return out


# --------------------------------------------------------------------------------------------------


def machine() -> dict:
    import importlib.metadata as md

    versions = {}
    for name in ("jax", "jaxlib", "numpyro", "blackjax", "arviz-stats"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "?"
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "device": str(jax.devices()[0]), "load_avg_at_start": os.getloadavg(), **versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (< 1 min)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sgld", "family", "nuts", "rss"])
    args = parser.parse_args()
    quick = args.quick
    start = time.perf_counter()
    info = machine()
    log(f"machine: {info}")
    result: dict = {"quick": quick, "machine": info}

    if "sgld" not in args.skip:
        log("SGLD: fb.sample vs hand-written lax.scan + blackjax.sgld")
        common = dict(num_chains=4, batch_size=32, step_size=1e-5)
        if quick:
            cases = [("400", 1, 500, 2), ("100k", 1, 20, 2)]
        else:
            # (size, thin, draws, repeats): many short repeats, so that the best of them is a moment
            # when other processes left the two cores alone
            cases = [("400", 1, 3000, 15), ("400", 10, 400, 11), ("100k", 1, 120, 11), ("100k", 10, 30, 7)]
        sgld = {}
        for size, thin, draws, repeats in cases:
            sgld[f"{size}_thin{thin}"] = sgld_case(size, thin=thin, num_draws=draws, repeats=repeats, **common)
        result["sgld"] = sgld
        result["sgld_vs_blackjax"] = {size: sgld[f"{size}_thin1"]["ratio"] for size in SIZES}
        result["sgld_vs_blackjax_whole_call"] = {size: sgld[f"{size}_thin1"]["ratio_whole_call"] for size in SIZES}
        result["sgld_vs_blackjax_paired_median"] = {
            size: {part: sgld[f"{size}_thin1"]["paired"][part]["median"] for part in ("sampling", "whole_call")}
            for size in SIZES}

    if "family" not in args.skip:
        log("SG-MCMC family: fb.sample vs hand-written lax.scan + BlackJAX loops (psgld: vs our sgld)")
        common = {"num_chains": 4, "batch_size": 32}
        if quick:
            cases = [("400", 1, 500, 2), ("100k", 1, 20, 2)]
        else:
            cases = [("400", 1, 3000, 9), ("100k", 1, 120, 15)]  # 100k: short calls, more repeats
        family = {}
        # sgld first: section 1's comparison repeated under the same load, to read the others against
        for sampler in ("sgld", "sgnht", "sgld_cv", "csgld", "psgld"):
            for size, thin, draws, repeats in cases:
                family[f"{sampler}_{size}"] = family_case(sampler, size, thin=thin, num_draws=draws,
                                                          repeats=repeats, **common)
        result["family"] = family
        result["family_ratios"] = {k: v["ratio"] for k, v in family.items()}
        result["family_ratios_cpu_whole_call"] = {k: v["ratio_cpu_whole_call"] for k, v in family.items()}

    if "nuts" not in args.skip:
        log("NUTS: fb.sample vs numpyro.infer.MCMC(NUTS, chain_method='vectorized')")
        if quick:
            nuts = nuts_case(num_chains=4, num_warmup=200, num_samples=200, seeds=1, quick=True)
        else:
            nuts = nuts_case(num_chains=4, num_warmup=500, num_samples=1000, seeds=3)
        result["nuts"] = nuts
        result["nuts_vs_numpyro_ess_per_s"] = nuts["ratio"]

    if "rss" not in args.skip:
        log("Peak RSS of a ~100k-parameter SGLD run, N vs 2N steps (fresh processes)")
        # quick: few checkpoints, so that the grids for N and 2N steps hold (nearly) as many points
        rss = rss_case(steps=100 if quick else 600, chains=4, draws=10, checkpoints=20 if quick else 100,
                       repeats=1)
        result["rss"] = rss
        result["rss_growth_doubling_steps"] = rss["growth"]

    result["benchmark_s"] = time.perf_counter() - start
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    log(f"done in {result['benchmark_s']:.0f} s")
    log("details: " + json.dumps(result, default=float))
    keys = ("sgld_vs_blackjax", "sgld_vs_blackjax_whole_call", "family_ratios", "family_ratios_cpu_whole_call", "nuts_vs_numpyro_ess_per_s",
            "rss_growth_doubling_steps", "quick", "benchmark_s")
    print(json.dumps({k: result[k] for k in keys if k in result}, default=float))


if __name__ == "__main__":
    main()
