"""Suite files: read a TOML suite, validate it before anything runs, expand it into cells.

    suite = load_suite("benchmarks/suites/quick.toml")   # or a shipped name: load_suite("quick")
    suite.cells()                                        # cases x grid x seeds, each with an id and a hash

A malformed file raises :class:`SuiteError` listing every problem as ``file:line: key: message``,
with the allowed values: unknown sections, models, data sets, samplers, options or analyses; values
of the wrong type (checked against each option's default); grid keys and case keys that point
nowhere; grid values that break a model, data set or arm. The format is documented in
docs/suites.md; running a suite is :mod:`fractalbayes.suite`.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import hashlib
import importlib
import inspect
import itertools
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fractalbayes.suite import analyses
from fractalbayes.model import data as datasets
from fractalbayes.model import zoo as models
from fractalbayes.suite.analyses import REQUIRED
from fractalbayes.errors import SuiteError
from fractalbayes import checks
from fractalbayes.samplers import registry
from fractalbayes.samplers.registry import Option

SUITES_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
"""The shipped suites (present in a source checkout or an editable install)."""

SECTIONS = ("suite", "model", "data", "arms", "grid", "cases", "analyses", "report")

RUN_DEFAULTS: dict[str, Any] = {
    "num_chains": 4, "num_samples": 1000, "burn_in": 1000, "thin": 1, "num_checkpoints": 100,
    "checkpoint_start": 0, "record_window": None, "init": None, "batch_size": None,
}


# --------------------------------------------------------------------------------------------------
# Value checks: each returns a problem text or None
# --------------------------------------------------------------------------------------------------

_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}


def _show(value: Any) -> str:
    return f"{_TOML_TYPES.get(type(value), type(value).__name__)} {value!r}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(minimum: int) -> Callable[[Any], str | None]:
    return lambda v: None if _is_int(v) and v >= minimum else f"must be an integer >= {minimum}, got {_show(v)}"


def _choice(allowed: Sequence) -> Callable[[Any], str | None]:
    """One of the strings in ``allowed``; ``int`` / ``float`` in it also admit an integer / a number."""
    words = ", ".join(repr(a) for a in allowed if isinstance(a, str))
    numbers = float in allowed or int in allowed
    names = words + (" or a number" if float in allowed else " or an integer" if int in allowed else "")

    def check(value):
        if isinstance(value, str) and value in allowed:
            return None
        if numbers and (_is_number(value) if float in allowed else _is_int(value)):
            return None
        return f"must be {'one of ' if not numbers else ''}{names}; got {_show(value)}"

    return check


def _arm_names(value: Any) -> str | None:
    ok = isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok or value is None else f"must be an arm name or an array of arm names, got {_show(value)}"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {_show(value)}"


def _strings(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else f"must be an array of strings, got {_show(value)}"


def _like_default(default: Any) -> Callable[[Any], str | None]:
    """The type of an option's default decides what the file may give (None: anything)."""
    if default is None or default is REQUIRED:
        return lambda v: None
    if isinstance(default, bool):
        kinds, want = (lambda v: isinstance(v, bool)), "true or false"
    elif isinstance(default, int):
        kinds, want = _is_int, "an integer"
    elif isinstance(default, float):
        kinds, want = _is_number, "a number"
    elif isinstance(default, str):
        kinds, want = (lambda v: isinstance(v, str)), "a string"
    elif isinstance(default, (list, tuple)):
        kinds, want = (lambda v: isinstance(v, list)), "an array"
    elif isinstance(default, dict):
        kinds, want = (lambda v: isinstance(v, dict)), "a table"
    else:
        return lambda v: None
    return lambda v: None if kinds(v) else f"must be {want} (the default is {default!r}), got {_show(v)}"


# --------------------------------------------------------------------------------------------------
# Problems, located in the file
# --------------------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _header_name(line: str) -> str | None:
    match = _HEADER.match(line)
    return None if match is None else ".".join(p.strip().strip("\"'") for p in match.group(1).split("."))


class _Problems:
    """Problems as ``file:line: key: message`` (line when the key can be found in the text)."""

    def __init__(self, source: str | os.PathLike, text: str):
        self.source, self.lines = str(source), text.splitlines()
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        if (key, message) not in self.items:
            self.items.append((key, message))

    def formatted(self) -> list[str]:
        out = []
        for key, message in self.items:
            line = self._locate(key)
            out.append(f"{self.source}:{line}: {key}: {message}" if line else f"{self.source}: {key}: {message}")
        return out

    def raise_if_any(self) -> None:
        if self.items:
            raise SuiteError(self.source, self.formatted())

    def _locate(self, key: str) -> int | None:
        """Line of ``key``: the deepest table header matching a prefix of it, then the line in that
        table naming the rest (``cases[i]`` picks the i-th ``[[cases]]``)."""
        headers = [(n, name) for n, line in enumerate(self.lines, 1) if (name := _header_name(line))]
        parts = re.sub(r"\[(\d+)\]", r".#\1", key.replace("'", "")).split(".")
        nth = int(parts.pop(1)[1:]) if len(parts) > 1 and parts[1].startswith("#") else 0
        parts = [p for p in parts if not p.startswith("#")]
        for cut in range(len(parts), 0, -1):
            starts = [n for n, name in headers if name == ".".join(parts[:cut])]
            if not starts:
                continue
            start = starts[min(nth, len(starts) - 1)]
            end = next((n for n, _ in headers if n > start), len(self.lines) + 1)
            rest = parts[cut:]
            for candidate in [".".join(rest), rest[-1], rest[0]] if rest else []:
                pattern = re.compile(r"(^|[{,])\s*[\"']?" + re.escape(candidate) + r"[\"']?\s*=")
                for n in range(start + 1, end):
                    if pattern.search(self.lines[n - 1]):
                        return n
            return start
        return None


# --------------------------------------------------------------------------------------------------
# The suite and its cells
# --------------------------------------------------------------------------------------------------


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

    @functools.cached_property
    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the config (first 16 hex digits)."""
        text = json.dumps(self.config, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
                "base": self.base, "grid": self.grid, "cases": self.cases, "report": self.report}


def _set_path(config: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = copy.deepcopy(value)


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """Nested tables (from unquoted dotted keys) to ``a.b.c`` paths; arrays and scalars are leaves."""
    flat = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


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


def _expand(suite: Suite) -> list[Cell]:
    short = short_names(list(suite.grid))
    cells, seen = [], set()
    for case in suite.cases or [{}]:
        for values in itertools.product(*suite.grid.values()):
            point = dict(zip(suite.grid, values))
            for seed in suite.seeds:
                config = copy.deepcopy(suite.base)
                for path, value in [*((p, v) for p, v in case.items() if p != "name"), *point.items()]:
                    _set_path(config, path, value)
                config["seed"] = seed
                parts = [case["name"]] if case.get("name") else []
                parts += [f"{short[p]}={_format_value(v)}" for p, v in point.items()] + [f"seed={seed}"]
                ident = re.sub(r"[^A-Za-z0-9=.,+_-]+", "-", "_".join(parts))
                cell = Cell(ident, seed, case.get("name"), point, config)
                if len(ident) > 100 or ident in seen:
                    cell = Cell(f"{ident[:90]}-{cell.config_hash[:8]}", seed, case.get("name"), point, config)
                seen.add(cell.id)
                cells.append(cell)
    return cells


# --------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------


def resolve_suite_path(name: str | os.PathLike) -> Path:
    """A suite file path, or the name of a shipped suite (``quick`` -> benchmarks/suites/quick.toml)."""
    path = Path(name)
    shipped = SUITES_DIR / f"{name}.toml"
    if path.is_file() or path.suffix == ".toml" or os.sep in str(name) or not shipped.is_file():
        return path
    return shipped


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and validate a suite file; raises :class:`SuiteError` listing every problem found."""
    path = resolve_suite_path(path)
    if not path.is_file():
        hint = f"; shipped suites: {', '.join(shipped_suites())}" if shipped_suites() else ""
        raise SuiteError(path, [f"no such suite file{hint}"])
    text = path.read_text()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = re.search(r"at line (\d+)", str(error))
        where = f"{path}:{line.group(1)}" if line else str(path)
        raise SuiteError(path, [f"{where}: invalid TOML: {error}"]) from None
    problems = _Problems(path, text)
    for folder in (str(path.parent.resolve()), os.getcwd()):  # where users keep their own models
        if folder not in sys.path:
            sys.path.append(folder)
    suite = _parse(doc, path, text, problems)
    problems.raise_if_any()
    return suite


def _import(spec: str) -> Callable:
    """``package.module:function`` -> the function (ImportError/AttributeError name the problem)."""
    module_name, _, attribute = spec.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{spec} is a {type(function).__name__}, not a function")
    return function


def model_function(name: str) -> Callable:
    return _import(name) if ":" in name else models.MODELS[name]


def data_function(name: str) -> Callable:
    return _import(name) if ":" in name else functools.partial(datasets.load, name)


def _keyword_defaults(function: Callable, skip: int) -> tuple[dict[str, Any], bool]:
    """(name -> default or REQUIRED) of a function's options after ``skip`` positional data
    arguments, and whether it takes ``**kwargs``."""
    params = list(inspect.signature(function).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    data_params = {p.name for p in positional[:skip]}
    options = {
        p.name: REQUIRED if p.default is p.empty else p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in data_params
    }
    return options, any(p.kind == p.VAR_KEYWORD for p in params)


def _check_table(value: Any, where: str, problems: _Problems) -> dict:
    if isinstance(value, dict):
        return value
    problems.add(where, f"must be a table, got {_show(value)}")
    return {}


def _check_keys(table: dict, where: str, allowed: Sequence[str], problems: _Problems, what: str = "key") -> None:
    for key in table:
        if key not in allowed:
            problems.add(f"{where}.{key}" if where else key, f"unknown {what} {key!r}; allowed: {', '.join(allowed)}")


def _check_options(given: Any, defaults: dict[str, Any], where: str, owner: str, problems: _Problems, *,
                   checks: dict[str, Callable[[Any], str | None]] | None = None,
                   tables: dict[str, tuple[dict, dict]] | None = None, open_ended: bool = False) -> None:
    """Names against ``defaults`` (unless open-ended); values by ``checks`` or else by the type of
    their default; nested ``tables`` (name -> (defaults, checks)) recursively; required options."""
    checks, tables = checks or {}, tables or {}
    given = _check_table(given, where, problems)
    for name, value in given.items():
        key = f"{where}.{name}"
        if name not in defaults:
            if not open_ended:
                problems.add(key, f"unknown option {name!r} for {owner}; allowed: {', '.join(defaults)}")
            continue
        if problem := checks.get(name, _like_default(defaults[name]))(value):
            problems.add(key, problem)
        elif name in tables:
            _check_options(value, tables[name][0], key, f"{owner}'s {name} table", problems, checks=tables[name][1])
    for name, default in defaults.items():
        if default is REQUIRED and name not in given:
            problems.add(f"{where}.{name}", f"required by {owner}")


def _check_model(model: Any, problems: _Problems) -> None:
    model = _check_table(model, "model", problems)
    _check_keys(model, "model", ("name", "options", "batch_size", "data_plate"), problems)
    name = model.get("name")
    if not isinstance(name, str):
        problems.add("model.name", f"required: a shipped model ({', '.join(models.MODELS)}) or "
                                   f"'package.module:function' of your NumPyro model")
        return
    if "batch_size" in model and (problem := _integer(1)(model["batch_size"])):
        problems.add("model.batch_size", problem)
    if "data_plate" in model and (problem := _string(model["data_plate"])):
        problems.add("model.data_plate", problem)
    if ":" not in name and name not in models.MODELS:
        problems.add("model.name", f"unknown model {name!r}; allowed: {', '.join(models.MODELS)}, or "
                                   f"'package.module:function' of your NumPyro model")
        return
    try:
        function = model_function(name)
    except Exception as error:  # noqa: BLE001 (any import failure is the user's to fix)
        problems.add("model.name", f"cannot import {name!r} ({type(error).__name__}: {error}); modules are found on "
                                   f"the Python path, the suite file's folder and the current folder")
        return
    defaults, open_ended = _keyword_defaults(function, skip=2)
    _check_options(model.get("options", {}), defaults, "model.options", f"model {name!r}", problems,
                   open_ended=open_ended)


def _check_data(data: Any, problems: _Problems) -> None:
    data = _check_table(data, "data", problems)
    _check_keys(data, "data", ("name", "options"), problems)
    name = data.get("name")
    names = list(datasets.LOADERS)
    if not isinstance(name, str) or (":" not in name and name not in names):
        problems.add("data.name", f"unknown data set {name!r}; allowed: {', '.join(names)}, or "
                                  f"'package.module:function' returning a fractalbayes.data.Dataset")
        return
    try:
        function = _import(name) if ":" in name else datasets.LOADERS[name]
    except Exception as error:  # noqa: BLE001
        problems.add("data.name", f"cannot import {name!r} ({type(error).__name__}: {error})")
        return
    defaults, open_ended = _keyword_defaults(function, skip=0)
    _check_options(data.get("options", {}), defaults, "data.options", f"data set {name!r}", problems,
                   open_ended=open_ended)


def _check_sampler_options(given: Any, options: Sequence[Option], where: str, owner: str, problems: _Problems) -> None:
    """A sampler's options against its registered spec: names, values (the spec's own validators),
    nested tables key by key."""
    given = _check_table(given, where, problems)
    by_name = {o.name: o for o in options}
    for name, value in given.items():
        key = f"{where}.{name}"
        if name not in by_name:
            problems.add(key, f"unknown option {name!r} for {owner}; allowed: {', '.join(by_name)}")
        elif by_name[name].table is not None:
            _check_sampler_options(value, by_name[name].table, key, f"{owner}'s {name} table", problems)
        else:
            try:
                by_name[name].validate(value)
            except checks.Invalid as reason:
                problems.add(key, str(reason))


def _check_arm(name: str, arm: Any, problems: _Problems) -> None:
    where = f"arms.{name}"
    arm = _check_table(arm, where, problems)
    sampler = arm.get("sampler")
    if sampler not in registry.REGISTRY:
        problems.add(f"{where}.sampler", f"unknown sampler {sampler!r}; allowed: {', '.join(sorted(registry.REGISTRY))}")
        return
    spec = registry.REGISTRY[sampler]
    run_keys = tuple(k for k in RUN_DEFAULTS if k == "batch_size" or k in spec.run_settings)
    _check_keys(arm, where, ("sampler", "options", *run_keys), problems, what=f"key for a {sampler} arm")
    run_checks = {"num_chains": _integer(1), "num_samples": _integer(1), "burn_in": _integer(0), "thin": _integer(1),
                  "num_checkpoints": _integer(2), "batch_size": _integer(1),
                  "checkpoint_start": lambda v: None if _is_int(v) and v >= 0 or v == "burn_in"
                  else f"must be an integer >= 0 or 'burn_in', got {_show(v)}",
                  "record_window": lambda v: None if isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)
                  else f"must be [start, length] (integers), got {_show(v)}",
                  "init": _choice(("prior", "uniform"))}
    for key in run_keys:
        if key in arm and (problem := run_checks[key](arm[key])):
            problems.add(f"{where}.{key}", problem)
    _check_sampler_options(arm.get("options", {}), spec.options, f"{where}.options", f"sampler {sampler!r}", problems)


def _analysis_checks(spec: analyses.Analysis) -> dict[str, Callable[[Any], str | None]]:
    return {k: _choice(v) for k, v in spec.choices.items()} | {k: _arm_names for k in spec.arm_options}


def _check_analyses(suite: dict, table: Any, arms: dict, reference: str | None, problems: _Problems) -> dict:
    """The analyses to run, in canonical order, with their options resolved (defaults filled in)."""
    names = suite.get("analyses", ["predictive", "summary"] + (["compare"] if reference else []))
    if (problem := _strings(names)) is not None:
        problems.add("suite.analyses", problem)
        return {}
    for name in names:
        if name not in analyses.ANALYSES:
            problems.add("suite.analyses", f"unknown analysis {name!r}; allowed: {', '.join(analyses.ANALYSES)}")
    table = _check_table(table, "analyses", problems)
    for name in table:
        if name not in names:
            problems.add(f"analyses.{name}", f"options for {name!r}, which is not in suite.analyses "
                                             f"({', '.join(names)}): add it there or remove this table")
    resolved = {}
    for name, spec in analyses.ANALYSES.items():
        if name not in names:
            continue
        options = table.get(name, {})
        _check_options(options, spec.defaults, f"analyses.{name}", f"analysis {name!r}", problems,
                       checks=_analysis_checks(spec))
        if not isinstance(options, dict):
            continue
        resolved[name] = spec.defaults | options
        for key in spec.arm_options:
            value = resolved[name].get(key)
            if value is REQUIRED or _arm_names(value):
                continue
            for arm in [value] if isinstance(value, str) else value or []:
                if arm not in arms:
                    problems.add(f"analyses.{name}.{key}", f"no arm named {arm!r}; arms: {', '.join(arms) or 'none'}")
        if spec.needs_reference and not (resolved[name].get(spec.needs_reference) or reference):
            problems.add(f"analyses.{name}.{spec.needs_reference}",
                         f"{name} needs a reference arm: set suite.reference or this option")
        if spec.needs_arms and not arms:
            problems.add("arms", f"analysis {name!r} needs at least one arm ([arms.NAME] with a sampler)")
    return resolved


def _check_report(report: Any, varied: list[str], problems: _Problems) -> dict:
    """The [report] table; ``varied``: the grid and case keys (what group_by may name)."""
    report = _check_table(report, "report", problems)
    _check_keys(report, "report", ("group_by", "columns", "scatter"), problems)
    groups = report.get("group_by", [])
    allowed = [*varied, "seed", "case", "row"]
    if (problem := _strings(groups)) is not None:
        problems.add("report.group_by", problem)
    else:
        for key in groups:
            if key not in allowed:
                problems.add("report.group_by", f"{key!r} is not a grid or case key; allowed: {', '.join(allowed)}")
    if "columns" in report and (problem := _strings(report["columns"])):
        problems.add("report.columns", problem)
    scatter = report.get("scatter", [])
    if not isinstance(scatter, list):
        problems.add("report.scatter", f"must be an array of tables {{x, y, diagonal, log}}, got {_show(scatter)}")
        return report
    for i, plot in enumerate(scatter):
        if not isinstance(plot, dict) or not isinstance(plot.get("x"), str) or not isinstance(plot.get("y"), str):
            problems.add(f"report.scatter[{i}]", f"needs x and y (metric or grid names), got {_show(plot)}")
            continue
        _check_keys(plot, f"report.scatter[{i}]", ("x", "y", "diagonal", "log"), problems)
        for key in ("diagonal", "log"):
            if key in plot and not isinstance(plot[key], bool):
                problems.add(f"report.scatter[{i}].{key}", f"must be true or false, got {_show(plot[key])}")
    return report


def _check_overrides(table: Any, where: str, problems: _Problems, *, grid: bool) -> dict[str, Any]:
    flat = _flatten(_check_table(table, where, problems))
    for path, value in list(flat.items()):
        if path == "name" and not grid:
            continue
        head = path.split(".")[0]
        if head not in ("model", "data", "arms", "analyses"):
            problems.add(f"{where}.'{path}'", "a grid or case key is a path into model, data, arms or analyses, "
                                              "e.g. 'arms.sgd.options.learning_rate'")
            del flat[path]
        elif grid and (not isinstance(value, list) or not value):
            problems.add(f"{where}.'{path}'", f"must be a non-empty array of values, got {_show(value)}")
            del flat[path]
    return flat


def _check_config(config: dict, problems: _Problems) -> None:
    """Model, data and arms of one (base or overridden) configuration."""
    _check_model(config.get("model"), problems)
    _check_data(config.get("data"), problems)
    arms = _check_table(config.get("arms", {}), "arms", problems)
    for name, arm in arms.items():
        _check_arm(name, arm, problems)


def _parse(doc: dict, path: Path, text: str, problems: _Problems) -> Suite:
    _check_keys(doc, "", SECTIONS, problems, what="section")
    suite = _check_table(doc.get("suite", {}), "suite", problems)
    _check_keys(suite, "suite", ("name", "description", "seeds", "reference", "analyses"), problems)
    for key in ("name", "description", "reference"):
        if key in suite and (problem := _string(suite[key])):
            problems.add(f"suite.{key}", problem)
    seeds = suite.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or any(_integer(0)(s) for s in seeds) or len(set(seeds)) < len(seeds):
        problems.add("suite.seeds", f"must be a non-empty array of distinct integers >= 0, got {_show(seeds)}")
        seeds = [0]
    for section in ("model", "data"):
        if section not in doc:
            problems.add(section, f"missing [{section}] table")
    arms = _check_table(doc.get("arms", {}), "arms", problems)
    reference = suite.get("reference")
    if reference is not None and reference not in arms:
        problems.add("suite.reference", f"no arm named {reference!r}; arms: {', '.join(arms) or 'none'}")
    base = {"model": doc.get("model"), "data": doc.get("data"), "arms": arms, "reference": reference}
    if problems.items:  # structure is broken: checks of the parts would repeat the same problems
        problems.raise_if_any()
    base["analyses"] = _check_analyses(suite, doc.get("analyses", {}), arms, reference, problems)
    grid = _check_overrides(doc.get("grid", {}), "grid", problems, grid=True)
    cases_doc = doc.get("cases", [])
    if not isinstance(cases_doc, list):
        problems.add("cases", "must be an array of tables ([[cases]])")
        cases_doc = []
    cases = [_check_overrides(case, f"cases[{i}]", problems, grid=False) for i, case in enumerate(cases_doc)]
    names = [c.get("name") for c in cases]
    if cases and (any(not isinstance(n, str) or not n for n in names) or len(set(names)) < len(names)):
        problems.add("cases", "every [[cases]] needs a distinct, non-empty name = \"...\"")
    configs = [] if problems.items else _check_variants(base, cases, problems, lambda: _Problems(path, text))
    for key, values in grid.items() if configs and not problems.items else ():  # against valid variants only
        for value in values:
            where = f"grid.'{key}'"
            handled, problem = _override_problem(key, value, base)
            if problem:
                problems.add(where, problem)
            for config in [] if handled or problem else configs:
                trial = _Problems(path, text)
                _check_config(_override(config, {key: value}), trial)
                for _, message in trial.items:
                    problems.add(where, f"value {value!r}: {message}")
    varied = list(dict.fromkeys([*grid, *(k for case in cases for k in case if k != "name")]))
    report = _check_report(doc.get("report", {}), varied, problems)
    if problems.items:
        problems.raise_if_any()
    return Suite(
        path=path, text=text, name=suite.get("name", path.stem), description=suite.get("description", ""),
        base=base, grid=grid, cases=cases, seeds=seeds, report=report,
    )


def _override(config: dict, values: dict[str, Any]) -> dict:
    config = copy.deepcopy(config)
    for key, value in values.items():
        if key != "name":
            _set_path(config, key, value)
    return config


def _override_problem(key: str, value: Any, base: dict) -> tuple[bool, str | None]:
    """(handled, problem) for the parts of a grid or case key that are not model, data or arm
    options: an unknown arm, or an analysis option (checked here, so handled)."""
    parts = key.split(".")
    if parts[0] == "arms" and parts[1] not in base["arms"]:
        return True, f"no arm named {parts[1]!r}; arms: {', '.join(base['arms']) or 'none'}"
    if parts[0] != "analyses":
        return False, None
    if parts[1] not in base["analyses"]:
        return True, f"analysis {parts[1]!r} is not in suite.analyses"
    spec, option = analyses.ANALYSES[parts[1]], ".".join(parts[2:])
    if option not in spec.defaults:
        return True, f"unknown option {option!r} for analysis {parts[1]!r}; allowed: {', '.join(spec.defaults)}"
    problem = _analysis_checks(spec).get(option, _like_default(spec.defaults[option]))(value)
    return True, f"value {value!r}: {problem}" if problem else None


def _check_variants(base: dict, cases: list[dict], problems: _Problems, fresh: Callable[[], _Problems]) -> list[dict]:
    """Model, data and arms of the base, or of each case applied to it (the base alone never runs
    then); a problem is reported at the case key that caused it, else at the base key."""
    if not cases:
        _check_config(base, problems)
        return [base]
    configs = []
    for i, case in enumerate(cases):
        own = {k: v for k, v in case.items() if k != "name"}
        for key, value in list(own.items()):
            handled, problem = _override_problem(key, value, base)
            if problem:
                problems.add(f"cases[{i}].'{key}'", problem)
            if handled or problem:
                del own[key]
        config = _override(base, own)
        trial = fresh()
        _check_config(config, trial)
        for key, message in trial.items:
            mine = next((k for k in own if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
            if mine:
                problems.add(f"cases[{i}].'{mine}'", message)
            else:
                problems.add(key, f"{message} (with case {case['name']!r})")
        configs.append(config)
    return configs
