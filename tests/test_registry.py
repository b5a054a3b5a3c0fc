"""The one sampler registry: ``fb.sample`` accepts exactly what is registered, validates every
argument before any work, and the options tables of docs/guide.md are generated from the same specs.

Run this file to regenerate the guide's tables after adding or changing a sampler:

    .venv/bin/python tests/test_registry.py
"""

import dataclasses
import inspect
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import fractalbayes as fb
from fractalbayes import checks
from fractalbayes.engine.config import RunConfig
from fractalbayes.samplers import registry
from fractalbayes.samplers.registry import REGISTRY, RUN_SETTINGS, SamplerSpec, markdown_table

GUIDE = Path(__file__).parents[1] / "docs" / "guide.md"
BEGIN = "<!-- BEGIN sampler tables: generated from the registry by `.venv/bin/python tests/test_registry.py`; do not edit -->"
END = "<!-- END sampler tables -->"


# --------------------------------------------------------------------------------------------------
# The guide's tables
# --------------------------------------------------------------------------------------------------


def _specs() -> list[SamplerSpec]:
    """Kernels, then methods, each by name."""
    return sorted(REGISTRY.values(), key=lambda s: (s.kind != "kernel", s.name))


def generated_tables() -> str:
    """The markdown between the guide's markers: one summary table, then every sampler's options
    (``registry.markdown_table``), with a nested option's own table after its sampler's."""
    lines = [BEGIN, "", "| sampler | kind | what |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {s.kind} | {s.summary} |" for s in _specs()]
    for spec in _specs():
        lines += ["", f"**`{spec.name}`** options:", "", markdown_table(spec)]
        for option in spec.options:
            if option.table is not None:
                nested = SamplerSpec(f"{spec.name}.{option.name}", option.doc, option.table, run=lambda *a: None)
                lines += ["", f"`{spec.name}`'s `{option.name}` table ({option.doc}):", "", markdown_table(nested)]
    return "\n".join(lines + ["", END])


def guide_tables(text: str) -> str:
    start, stop = text.find(BEGIN), text.find(END)
    assert start >= 0 and stop > start, f"docs/guide.md lacks the markers {BEGIN!r} ... {END!r}"
    return text[start:stop + len(END)]


def write_guide() -> None:
    text = GUIDE.read_text()
    GUIDE.write_text(text.replace(guide_tables(text), generated_tables()))


def test_the_guide_has_exactly_the_generated_tables():
    assert guide_tables(GUIDE.read_text()) == generated_tables(), (
        "docs/guide.md's sampler tables are out of date with the registry: run "
        "`.venv/bin/python tests/test_registry.py` to regenerate them")


def test_the_tables_show_every_option_of_every_sampler():
    tables = generated_tables()
    for spec in REGISTRY.values():
        assert f"**`{spec.name}`** options:" in tables
        for option in spec.options:
            assert f"| `{option.name}` | {option.default!r} | {option.want} |" in tables.replace("\\|", "|")
    assert "`fractal`'s `sgd` table" in tables and "| `learning_rate` | 0.05 |" in tables  # the ensemble's default


# --------------------------------------------------------------------------------------------------
# fb.sample dispatches through the registry and nothing else
# --------------------------------------------------------------------------------------------------


def test_every_sampler_comes_from_the_registry():
    assert fb.SAMPLERS is REGISTRY
    assert {"sgd", "sgld", "sghmc", "nuts", "fractal"} <= set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert registry.get(name) is spec and spec.name == name
        assert (spec.kind == "kernel") == (spec.build is not None) != (spec.run is not None)
    assert REGISTRY["fractal"].kind == "method" and REGISTRY["sgld"].kind == "kernel"
    with pytest.raises(fb.ModelError, match=re.escape(f"unknown sampler 'hmc'; choose one of {sorted(REGISTRY)}")):
        registry.get("hmc")


def test_run_settings_are_exactly_the_settings_of_sample():
    parameters = inspect.signature(fb.sample).parameters
    settings = [p for p, v in parameters.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    assert sorted(settings) == sorted(RUN_SETTINGS)
    for spec in REGISTRY.values():
        assert set(spec.run_settings) <= set(RUN_SETTINGS), spec.name
        assert {o.name for o in spec.options}.isdisjoint(RUN_SETTINGS), spec.name


def test_a_registered_method_is_dispatched_with_its_validated_settings(conjugate, monkeypatch):
    target, _, _ = conjugate
    calls = []

    def run(target, config, progress):
        calls.append((target, config, progress))
        return "the run"

    toy = SamplerSpec("toy", "a test method", (registry.Option("rate", 0.5, checks.positive(), "a rate"),),
                      run=run, run_settings=("num_chains", "num_samples", "burn_in", "thin", "seed", "progress"))
    monkeypatch.setitem(REGISTRY, "toy", toy)
    assert fb.sample(target, "toy", num_chains=3, seed=4, rate=2) == "the run"
    (got_target, config, progress), = calls
    assert got_target is target and progress is None and isinstance(config, RunConfig)
    assert (config.sampler, config.options, config.num_chains, config.seed) == ("toy", {"rate": 2.0}, 3, 4)
    assert config.target.fingerprint == target.fingerprint
    with pytest.raises(fb.ModelError, match=r"unknown option\(s\) \['rat'\] for sampler 'toy'"):
        fb.sample(target, "toy", rat=2)
    with pytest.raises(fb.ModelError, match="the 'toy' sampler does not take \\['init'\\]"):
        fb.sample(target, "toy", init="uniform")
    assert len(calls) == 1
    with pytest.raises(ValueError, match="registered already"):
        registry.register(dataclasses.replace(REGISTRY["sgld"]))


# --------------------------------------------------------------------------------------------------
# Every argument is checked before any work
# --------------------------------------------------------------------------------------------------


class WorkStarted(Exception):
    """Raised by a kernel's init: sampling started, so the argument check came too late."""


@pytest.fixture
def no_work(monkeypatch):
    """Every kernel's build still runs (it validates, e.g. ``center``), but its kernel raises
    WorkStarted on init: a call that gets past validation stops right there, composite methods
    included (the fractal sampler's SGD ensemble is an ``fb.sample`` call through the registry)."""

    def guarded(build):
        def build_without_work(target, options, total_steps):
            kernel, hyper = build(target, options, total_steps)

            def refuse(*args):
                raise WorkStarted

            return kernel._replace(init=refuse, step=refuse, warmup=kernel.warmup and refuse), hyper

        return build_without_work

    for name, spec in list(REGISTRY.items()):
        if spec.build is not None:
            monkeypatch.setitem(REGISTRY, name, dataclasses.replace(spec, build=guarded(spec.build)))


BAD_CALLS = [
    ("sgdd", {}, "unknown sampler 'sgdd'"),
    ("sgld", {"stepsize": 1e-3}, r"unknown option\(s\) \['stepsize'\] for sampler 'sgld'"),
    ("sgld", {"step_size": -1.0}, "sgld: option step_size must be finite and > 0, got -1.0"),
    ("sgld", {"step_size": "big"}, "option step_size must be finite and > 0, got 'big'"),
    ("sgld", {"temperature": float("nan")}, "option temperature must be finite and >= 0"),
    ("sgld", {"center": [0.0]}, "center must be a flat unconstrained vector of length 3"),
    ("sgd", {"optimizer": "rmsprop"}, "option optimizer must be one of 'sgd', 'adam'; got 'rmsprop'"),
    ("sgd", {"schedule": {"kind": "linear"}}, "option schedule must be None"),
    ("sghmc", {"num_integration_steps": 0}, "num_integration_steps must be an integer >= 1, got 0"),
    ("nuts", {"target_acceptance_rate": 1.5}, "target_acceptance_rate must be finite and > 0 and <= 1"),
    ("nuts", {"burn_in": 0}, "nuts adapts its step size during burn-in"),
    ("sgld", {"num_chains": 0}, "num_chains must be an integer >= 1, got 0"),
    ("sgld", {"num_chains": 2.0}, "num_chains must be an integer >= 1, got 2.0"),
    ("sgld", {"num_samples": True}, "num_samples must be an integer >= 1, got True"),
    ("sgld", {"thin": 0}, "thin must be an integer >= 1"),
    ("sgld", {"burn_in": -1}, "burn_in must be an integer >= 0"),
    ("sgld", {"seed": -3}, "seed must be an integer >= 0"),
    ("sgld", {"num_checkpoints": 1}, "num_checkpoints must be an integer >= 2"),
    ("sgld", {"checkpoint_start": 10**6}, "checkpoint_start=1000000 is not before the last step 2000"),
    ("sgld", {"record_window": (5,)}, r"record_window must be \(start, length\)"),
    ("sgld", {"record_window": (1990, 50)}, r"record_window \(1990, 50\) ends after the last step 2000"),
    ("sgld", {"init": "normal"}, "init='normal' is not 'prior' or 'uniform'"),
    ("sgld", {"init": np.zeros(5)}, r"init must be .* got shape \(5,\)"),
    # a composite method refuses the run settings it sets itself, and checks its own before its SGD ensemble
    ("fractal", {"num_checkpoints": 5}, r"'fractal' sampler does not take \['num_checkpoints'\]: it sets them itself"),
    ("fractal", {"checkpoint_start": 100}, r"does not take \['checkpoint_start'\]"),
    ("fractal", {"init": "uniform"}, r"does not take \['init'\]"),
    ("fractal", {"record_window": (0, 5)}, r"does not take \['record_window'\]"),
    ("fractal", {"devices": 1}, "method sets its own statistics and devices"),
    ("fractal", {"stats": "all"}, "method sets its own statistics and devices"),
    ("fractal", {"num_chains": 0}, "num_chains must be an integer >= 1, got 0"),
    ("fractal", {"num_samples": -1}, "num_samples must be an integer >= 1"),
    ("fractal", {"d_s": float("nan")}, "fractal: option d_s must be finite and > 0, got nan"),
    ("fractal", {"kernel": "hmc"}, "option kernel must be one of 'sgld', 'nuts'; got 'hmc'"),
    ("fractal", {"weights": "posterior"}, "option weights must be one of 'reachability', 'evidence'"),
    ("fractal", {"gamma_eff": -1.0}, "option gamma_eff must be one of 'measured', 'sgd' or a number > 0"),
    ("fractal", {"sgd": {"learning_rat": 0.1}}, r"option sgd has unknown key\(s\) \['learning_rat'\]"),
    ("fractal", {"sgd": {"num_chains": 0}}, "option sgd key 'num_chains' must be an integer >= 1"),
    ("fractal", {"sgd": {"optimizer": "lbfgs"}}, "option sgd key 'optimizer' must be one of 'sgd', 'adam'"),
    ("fractal", {"llc": {"num_draws": 0}}, "option llc key 'num_draws' must be an integer >= 1"),
    ("fractal", {"basins": {"feature": "pixels"}}, "option basins key 'feature' must be one of"),
    ("fractal", {"basins": "labels"}, "option basins must be a table"),
]


def _id(case) -> str:
    sampler, arguments, _ = case.values if hasattr(case, "values") else case
    return f"{sampler}-{list(arguments)}"


@pytest.mark.parametrize("sampler, arguments, message", BAD_CALLS, ids=[_id(c) for c in BAD_CALLS])
def test_bad_arguments_are_a_model_error_before_any_work(conjugate, no_work, sampler, arguments, message):
    target, _, _ = conjugate
    with pytest.raises(fb.ModelError, match=message):
        fb.sample(target, sampler, **arguments)


@pytest.mark.parametrize("sampler", ["sgd", "sgld", "nuts", "fractal"])
def test_a_good_call_gets_to_the_work(conjugate, no_work, sampler):
    """The control for the test above: with valid arguments the guard is reached (for the fractal
    sampler: by its SGD ensemble), so a bad call that raised ModelError stopped before it."""
    target, _, _ = conjugate
    with pytest.raises(WorkStarted):
        fb.sample(target, sampler, num_chains=2, num_samples=10, burn_in=10)


if __name__ == "__main__":
    write_guide()
    print(f"wrote the sampler tables of {GUIDE}", file=sys.stderr)
