"""The public namespace: ``fb.__all__`` is exactly what the docs use, every ``fb.X.Y`` the docs write
resolves after a bare ``import fractalbayes as fb``, and every library module is reachable from it.

The checks run in a fresh interpreter: inside pytest other tests have imported submodules already,
which would hide an ``fb.fractal.tempering_test`` that only works after someone else's import.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fractalbayes as fb

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAME = re.compile(r"(?<![\w.])fb\.(?!__)([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
"""``fb.a.b.c`` as the docs write it (dunder names such as ``fb.__all__`` are about the namespace)."""

PROBE = r"""
import importlib, json, pkgutil, sys
import fractalbayes as fb
chains = json.loads(sys.argv[1])
unresolved = []
for chain in chains:
    value = fb
    for part in chain.split("."):
        if not hasattr(value, part):
            unresolved.append(chain)
            break
        value = getattr(value, part)
loaded = set(sys.modules)
modules = [m.name for m in pkgutil.walk_packages(fb.__path__, "fractalbayes.")]
unreachable = []
for module in modules:
    parts = module.split(".")[1:]
    if parts[0] in ("suite", "suites", "__main__") or any(p.startswith("_") for p in parts):
        continue
    value = fb
    for part in parts:
        value = getattr(value, part, None)
    # a package may re-export a module's main function under the module's name
    # (fb.engine.sample, fb.fractal.tempering_test): the function stands for its module
    shadowed = getattr(value, "__module__", None) == module and getattr(value, "__name__", None) == parts[-1]
    if module not in loaded or not (value is sys.modules[module] or shadowed):
        unreachable.append(module)
print(json.dumps({"unresolved": unresolved, "unreachable": unreachable, "all": fb.__all__}))
"""


def doc_names() -> dict[str, set[str]]:
    """Every ``fb.a.b.c`` written in README.md and docs/*.md, with the files it appears in."""
    found: dict[str, set[str]] = {}
    for path in DOCS:
        for chain in NAME.findall(path.read_text()):
            found.setdefault(chain, set()).add(path.name)
    return found


@pytest.fixture(scope="module")
def fresh() -> dict:
    """What a fresh ``import fractalbayes as fb`` resolves (one subprocess for the module)."""
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(doc_names()))], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_docs_name_many_things():
    names = doc_names()
    assert {"sample", "fractal.tempering_test", "llc.estimate", "SAMPLERS"} <= set(names)
    assert NAME.findall("x = fb.llc.estimate(t) + nfb.sample + a.fb.x; fb.SAMPLERS[n]. fb. fb.__all__") == [
        "llc.estimate", "SAMPLERS"]


def test_every_name_the_docs_use_resolves_after_a_bare_import(fresh):
    report = fresh
    names = doc_names()
    assert not report["unresolved"], {n: sorted(names[n]) for n in report["unresolved"]}
    assert report["all"] == fb.__all__


def test_every_library_module_is_reachable_from_fb(fresh):
    """Every module of the layers below the suite is loaded by ``import fractalbayes`` and reachable
    as ``fb.<subpackage>.<module>`` (names starting with _ are private); the suite layer (the
    application: files, runner, report, CLI) is imported on its own, by ``python -m fractalbayes``."""
    assert fresh["unreachable"] == []


def test_all_matches_the_names_the_docs_use():
    documented = {chain.split(".")[0] for chain in doc_names()}
    assert not documented - set(fb.__all__), f"used in the docs but not in fb.__all__: {documented - set(fb.__all__)}"
    assert not set(fb.__all__) - documented, (
        f"in fb.__all__ but in no doc (list it in docs/architecture.md's public namespace): "
        f"{sorted(set(fb.__all__) - documented)}")
    assert len(fb.__all__) == len(set(fb.__all__))
    for name in fb.__all__:
        assert hasattr(fb, name), name
    errors = [fb.FractalBayesError, fb.InputError, fb.ModelError, fb.SamplerError, fb.SuiteError, fb.RunFileError]
    assert all(issubclass(e, fb.FractalBayesError) for e in errors) and issubclass(fb.ModelError, fb.InputError)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_architecture_example_registers_and_runs_a_sampler(monkeypatch, capsys):
    """docs/architecture.md's example, executed (on a copy of the registry, so that its example
    sampler does not outlive the test)."""
    from fractalbayes.samplers import registry

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    (block,) = python_blocks(ROOT / "docs" / "architecture.md")
    exec(compile(block, "docs/architecture.md", "exec"), {})
    assert "descent" in registry.REGISTRY and "descent" not in fb.SAMPLERS
    assert capsys.readouterr().out.strip() == "descent: option rate must be finite and > 0, got -1.0"
