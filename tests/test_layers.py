"""The package's layering (docs/architecture.md): every intra-package import points to the same or a
lower layer, and no modules import each other in a circle.

Imports are read with `ast` from every module's source, module-level and lazy (inside functions)
alike, so a lazy import that climbs back up is caught too.
"""

import ast
import graphlib
import sys
from pathlib import Path

import pytest

import fractalbayes

PACKAGE = Path(fractalbayes.__file__).parent
LAYERS = {
    "errors": 0, "checks": 0, "progress": 0,
    "model": 1,
    "samplers": 2,
    "engine": 3,
    "stats": 4,
    "slt": 5,
    "methods": 6,
    "suite": 7, "suites": 7,  # suites: the shipped suite files (package data)
    "": 8, "__main__": 8,  # the package's own __init__ (the public `fb` namespace) and `python -m`
}
"""Layer of each top-level module or subpackage of fractalbayes, lowest first."""


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = modules()


def resolve(name: str) -> str | None:
    """The longest module prefix of a dotted name (``fractalbayes.model.zoo.MODELS`` -> ``...zoo``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """Every fractalbayes module that `module` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]
        else:
            continue
        found |= {resolve(n) for n in names if n.split(".")[0] == PACKAGE.name} - {None, module}
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else ""
    if key not in LAYERS:
        pytest.fail(f"{module} is in no layer: add {key!r} to LAYERS here and to docs/architecture.md")
    return LAYERS[key]


def test_the_package_is_where_we_look():
    assert {"fractalbayes.model.target", "fractalbayes.samplers.registry", "fractalbayes.engine.sample",
            "fractalbayes.methods.fractal.sampler", "fractalbayes.suite.cli"} <= set(MODULES)
    # the parser sees real edges (a test that finds no imports could not fail)
    assert "fractalbayes.model.target" in imports("fractalbayes.engine.sample")
    assert "fractalbayes.samplers.sgd" in imports("fractalbayes.methods.fractal.sampler")


def test_every_import_points_down():
    climbs = [f"{m} (layer {layer(m)}) imports {i} (layer {layer(i)})"
              for m in sorted(MODULES) for i in sorted(imports(m)) if layer(i) > layer(m)]
    assert not climbs, "imports that climb to a higher layer:\n" + "\n".join(climbs)


def test_no_import_cycles():
    # Edges into a package's __init__ are left out, as in /work/shared/tools/import_cycles.py: a
    # package re-exporting its own submodules is not a cycle of work.
    graph = {m: {i for i in imports(m) if MODULES[i].name != "__init__.py"} for m in MODULES}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


def test_the_checker_catches_a_climb_and_a_cycle(tmp_path, monkeypatch):
    """The two checks above fail on a planted violation (they are not vacuous)."""
    package = tmp_path / "fractalbayes"
    for name, source in {"__init__.py": "", "model/__init__.py": "", "samplers/__init__.py": "",
                         "model/target.py": "from fractalbayes.samplers import registry\n",
                         "samplers/registry.py": "def f():\n    from ..model import target\n"}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(source)
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE", package)
    monkeypatch.setattr(this, "MODULES", modules())
    assert imports("fractalbayes.model.target") == {"fractalbayes.samplers.registry"}
    assert imports("fractalbayes.samplers.registry") == {"fractalbayes.model.target"}
    with pytest.raises(AssertionError, match=r"model.target \(layer 1\) imports .*registry \(layer 2\)"):
        test_every_import_points_down()
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles()
