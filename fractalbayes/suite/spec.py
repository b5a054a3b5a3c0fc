"""Suite files: read a TOML suite, validate it before anything runs, expand it into cells.

    suite = load_suite("path/to/my-suite.toml")   # or a shipped name: load_suite("quick")
    suite.cells()                                 # cases x grid x seeds, each with an id and a hash

A malformed file raises :class:`SuiteError` listing every problem as ``file:line: key: message``
(:mod:`fractalbayes.suite.validate`, against :mod:`fractalbayes.suite.schema`). Loading never runs
user code: module files named by the suite are read as text (:mod:`fractalbayes.suite.resolve`)
and executed only when a cell is built. The format is documented in docs/suites.md; running a
suite is :mod:`fractalbayes.suite.runner`.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import hashlib
import importlib.resources
import itertools
import json
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fractalbayes.errors import SuiteError
from fractalbayes.suite import resolve
from fractalbayes.suite.problems import Problems
from fractalbayes.suite.validate import set_path, validate

SUITES_DIR = Path(str(importlib.resources.files("fractalbayes.suites")))
"""The shipped suites: package data of ``fractalbayes.suites`` (in a wheel and in a source checkout)."""


@dataclass(frozen=True)
class Cell:
    """One (case, grid point, seed): every arm sampled on one target, then the analyses."""

    id: str
    seed: int
    case: str | None
    grid: dict[str, Any]
    """Grid path -> value of this cell."""
    config: dict[str, Any]
    """Resolved: model, data, arms, analyses (with defaults), reference, seed."""
    folder: Path | None = None
    """The suite file's folder, where module files named by the config are found."""
    sources: dict[str, str] = field(default_factory=dict)
    """Module files named by the config (name as written -> sha256 of the file's text)."""

    @functools.cached_property
    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the config, and of the module files' hashes when it names
        any (first 16 hex digits): editing a model file recomputes its cells."""
        value = self.config if not self.sources else {"config": self.config, "sources": self.sources}
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def source(self, section: str) -> resolve.Source:
        """Where this cell's model or data set comes from (read again from the suite's folder)."""
        return resolve.locate(section, self.config[section]["name"], self.folder or Path.cwd())


@dataclass(frozen=True)
class Suite:
    """A validated suite file; :meth:`cells` expands it."""

    path: Path
    text: str
    name: str
    description: str
    base: dict[str, Any]
    """model, data, arms, analyses (defaults filled in) and reference, before grid and cases."""
    grid: dict[str, list]
    cases: list[dict[str, Any]]
    seeds: list[int]
    report: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """Module files the suite names (name as written -> sha256); none run before a cell is built."""

    @property
    def folder(self) -> Path:
        return self.path.parent.resolve()

    def cells(self, only: str | None = None) -> list[Cell]:
        """Cases x grid x seeds (in file order), optionally those whose id matches ``only``.

        ``only`` is a glob (``*``, ``?``, ``[...]``) matched against the whole id, or else a substring.
        """
        cells = _expand(self)
        if only is None:
            return cells
        globbing = any(c in only for c in "*?[")
        return [c for c in cells if (fnmatch.fnmatchcase(c.id, only) if globbing else only in c.id)]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "file": str(self.path), "seeds": self.seeds,
                "base": self.base, "grid": self.grid, "cases": self.cases, "report": self.report,
                **({"module_files": self.sources} if self.sources else {})}


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, list):
        return "x".join(_format_value(v) for v in value)
    if isinstance(value, dict):
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:6]
    return str(value)


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix of each grid path that is unique among them."""
    names = {}
    for path in paths:
        parts = path.split(".")
        for size in range(1, len(parts) + 1):
            suffix = ".".join(parts[-size:])
            if sum(p == suffix or p.endswith("." + suffix) for p in paths) == 1:
                break
        names[path] = suffix
    return names


def _name(config: dict, section: str) -> Any:
    table = config.get(section)
    return table.get("name") if isinstance(table, dict) else None


def _expand(suite: Suite) -> list[Cell]:
    short = short_names(list(suite.grid))
    cells, seen = [], set()
    for case in suite.cases or [{}]:
        for values in itertools.product(*suite.grid.values()):
            point = dict(zip(suite.grid, values))
            for seed in suite.seeds:
                config = copy.deepcopy(suite.base)
                for path, value in [*((p, v) for p, v in case.items() if p != "name"), *point.items()]:
                    set_path(config, path, value)
                config["seed"] = seed
                parts = [case["name"]] if case.get("name") else []
                parts += [f"{short[p]}={_format_value(v)}" for p, v in point.items()] + [f"seed={seed}"]
                ident = re.sub(r"[^A-Za-z0-9=.,+_-]+", "-", "_".join(parts))
                sources = {s: suite.sources[s] for s in (_name(config, "model"), _name(config, "data"))
                           if s in suite.sources}
                cell = Cell(ident, seed, case.get("name"), point, config, suite.folder, sources)
                if len(ident) > 100 or ident in seen:
                    cell = Cell(f"{ident[:90]}-{cell.config_hash[:8]}", seed, case.get("name"), point, config,
                                suite.folder, sources)
                seen.add(cell.id)
                cells.append(cell)
    return cells


def resolve_suite_path(name: str | os.PathLike) -> Path:
    """A suite file path, or the name of a shipped suite (``quick`` -> fractalbayes/suites/quick.toml)."""
    path = Path(name)
    shipped = SUITES_DIR / f"{name}.toml"
    if path.is_file() or path.suffix == ".toml" or os.sep in str(name) or not shipped.is_file():
        return path
    return shipped


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and validate a suite file; raises :class:`SuiteError` listing every problem found.

    No user code runs: module files the suite names are read as text, not imported."""
    path = resolve_suite_path(path)
    if not path.is_file():
        hint = f"; shipped suites: {', '.join(shipped_suites())}" if shipped_suites() else ""
        raise SuiteError(path, [f"no such suite file{hint}"])
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SuiteError(path, [f"cannot read the suite file ({type(error).__name__}: {error})"]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = re.search(r"at line (\d+)", str(error))
        where = f"{path}:{line.group(1)}" if line else str(path)
        raise SuiteError(path, [f"{where}: invalid TOML: {error}"]) from None
    resolver = resolve.Resolver(path.parent)
    valid = validate(doc, resolver, Problems(path, text))
    return Suite(path=path, text=text, name=valid.suite.get("name", path.stem),
                 description=valid.suite.get("description", ""), base=valid.base, grid=valid.grid, cases=valid.cases,
                 seeds=valid.seeds, report=valid.report, sources=resolver.files())
