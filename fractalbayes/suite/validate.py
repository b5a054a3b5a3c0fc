"""Validation of a parsed suite file, section by section, before anything runs.

:func:`validate` checks a TOML document against the schema (:mod:`fractalbayes.suite.schema`):
unknown sections, keys, models, data sets, samplers, options and analyses; values against their
options' validators (sampler options against the sampler registry's specs, analysis options
against their typed options, model and data options against the type of the function's defaults);
grid and case keys that point nowhere; grid values and cases that break a model, data set or arm
(each checked as if written in its place). Every problem is collected with its key, then raised
as one :class:`~fractalbayes.errors.SuiteError` (``file:line: key: message``). Models and data
sets resolve through :mod:`fractalbayes.suite.resolve`; no user code runs here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fractalbayes import checks
from fractalbayes.samplers import registry
from fractalbayes.samplers.registry import Option
from fractalbayes.suite import analyses, resolve, schema
from fractalbayes.suite.analyses import REQUIRED
from fractalbayes.suite.problems import Problems, show


@dataclass(frozen=True)
class Validated:
    """What a valid suite file declares, with defaults filled in (before grid and cases)."""

    suite: dict[str, Any]
    """The [suite] table as given."""
    base: dict[str, Any]
    """model, data, arms, analyses (with defaults) and reference."""
    grid: dict[str, list]
    cases: list[dict[str, Any]]
    seeds: list[int]
    report: dict[str, Any]


def like_default(default: Any) -> checks.Validator:
    """The type of a function's default decides what the file may give (None, no default or a
    non-literal default: anything)."""
    kinds = [(bool, lambda v: isinstance(v, bool), "true or false"), (int, checks.is_int, "an integer"),
             (float, checks.is_real, "a number"), (str, lambda v: isinstance(v, str), "a string"),
             ((list, tuple), lambda v: isinstance(v, list), "an array"),
             (dict, lambda v: isinstance(v, dict), "a table")]
    for kind, accepts, want in kinds:
        if isinstance(default, kind) and default is not REQUIRED:
            def validate(value, accepts=accepts, want=want):
                if not accepts(value):
                    raise checks.Invalid(f"must be {want} (the default is {default!r}), got {show(value)}")
                return value

            validate.want = want
            return validate
    return checks.anything


def _table(value: Any, where: str, problems: Problems) -> dict:
    if isinstance(value, dict):
        return value
    problems.add(where, f"must be a table, got {show(value)}")
    return {}


def _keys(table: dict, where: str, allowed: Sequence[str], problems: Problems, what: str = "key") -> None:
    for key in table:
        if key not in allowed:
            problems.add(f"{where}.{key}" if where else key, f"unknown {what} {key!r}; allowed: {', '.join(allowed)}")


def _value(option: Option, value: Any, key: str, problems: Problems) -> bool:
    """Run the option's validator; a refusal becomes a problem at ``key``."""
    try:
        option.validate(value)
    except checks.Invalid as reason:
        problems.add(key, str(reason))
        return False
    return True


def check_options(given: Any, options: Sequence[Option], where: str, owner: str, problems: Problems, *,
                  open_ended: bool = False) -> None:
    """Names against ``options`` (unless open-ended), values by each option's validator (nested
    tables key by key, like the sampler registry's), and that required options are given."""
    given = _table(given, where, problems)
    by_name = {o.name: o for o in options}
    for name, value in given.items():
        key = f"{where}.{name}"
        if name not in by_name:
            if not open_ended:
                problems.add(key, f"unknown option {name!r} for {owner}; allowed: {', '.join(by_name)}")
        elif by_name[name].table is not None:
            check_options(value, by_name[name].table, key, f"{owner}'s {name} table", problems)
        else:
            _value(by_name[name], value, key, problems)
    for option in options:
        if option.default is REQUIRED and option.name not in given:
            problems.add(f"{where}.{option.name}", f"required by {owner}")


def _check_keys_of(table: dict, options: Sequence[Option], where: str, problems: Problems,
                   skip: Sequence[str] = ()) -> None:
    """Known keys only, and each value by its option but those in ``skip`` (checked elsewhere)."""
    _keys(table, where, [o.name for o in options], problems)
    for option in options:
        if option.name in table and option.name not in skip:
            _value(option, table[option.name], f"{where}.{option.name}", problems)


def _check_named(section: str, table: Any, resolver: resolve.Resolver, problems: Problems) -> None:
    """[model] or [data]: its keys, where its name resolves to, and its options against the
    function's parameters (from its signature, or from the module file's text)."""
    keys = schema.MODEL_KEYS if section == "model" else schema.DATA_KEYS
    table = _table(table, section, problems)
    _check_keys_of(table, keys, section, problems, skip=("name", "options"))
    if "name" not in table:
        problems.add(f"{section}.name", f"required: {resolve.allowed_forms(section)}")
        return
    try:
        source = resolver.locate(section, table.get("name"))
    except resolve.Unresolvable as reason:
        problems.add(f"{section}.name", str(reason))
        return
    parameters, open_ended = resolve.parameters(source)
    options = [Option(name, default, like_default(default), "") for name, default in parameters.items()]
    what = "model" if section == "model" else "data set"
    check_options(table.get("options", {}), options, f"{section}.options", f"{what} {source.name!r}", problems,
                  open_ended=open_ended)


def _check_arm(name: str, arm: Any, problems: Problems) -> None:
    where = f"arms.{name}"
    arm = _table(arm, where, problems)
    sampler = arm.get("sampler")
    if not isinstance(sampler, str) or sampler not in registry.REGISTRY:
        problems.add(f"{where}.sampler",
                     f"unknown sampler {sampler!r}; allowed: {', '.join(sorted(registry.REGISTRY))}")
        return
    spec = registry.REGISTRY[sampler]
    settings = schema.arm_settings(spec)
    keys = [o for o in schema.ARM_KEYS if o.name in ("sampler", "options", "batch_size") or o in settings]
    _keys(arm, where, [o.name for o in keys], problems, what=f"key for a {sampler} arm")
    for option in keys:
        if option.name in arm and option.name not in ("sampler", "options"):
            _value(option, arm[option.name], f"{where}.{option.name}", problems)
    check_options(arm.get("options", {}), spec.options, f"{where}.options", f"sampler {sampler!r}", problems)


def _arm_values(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []


def _check_analyses(suite: dict, table: Any, arms: dict, reference: str | None, problems: Problems) -> dict:
    """The analyses to run, in canonical order, with their options resolved (defaults filled in)."""
    names = suite.get("analyses", ["predictive", "summary"] + (["compare"] if reference else []))
    if not _value(schema.SUITE_KEYS[-1], names, "suite.analyses", problems):
        return {}
    for name in names:
        if name not in analyses.ANALYSES:
            problems.add("suite.analyses", f"unknown analysis {name!r}; allowed: {', '.join(analyses.ANALYSES)}")
    table = _table(table, "analyses", problems)
    for name in table:
        if name not in names:
            problems.add(f"analyses.{name}", f"options for {name!r}, which is not in suite.analyses "
                                             f"({', '.join(names)}): add it there or remove this table")
    resolved = {}
    for name, spec in analyses.ANALYSES.items():
        if name not in names:
            continue
        options = table.get(name, {})
        check_options(options, spec.options, f"analyses.{name}", f"analysis {name!r}", problems)
        if not isinstance(options, dict):
            continue
        resolved[name] = spec.defaults | options
        for key in spec.arm_options:
            for arm in _arm_values(resolved[name].get(key)):
                if arm not in arms:
                    problems.add(f"analyses.{name}.{key}", f"no arm named {arm!r}; arms: {', '.join(arms) or 'none'}")
        if spec.needs_reference and not (resolved[name].get(spec.needs_reference) or reference):
            problems.add(f"analyses.{name}.{spec.needs_reference}",
                         f"{name} needs a reference arm: set suite.reference or this option")
        if spec.needs_arms and not arms:
            problems.add("arms", f"analysis {name!r} needs at least one arm ([arms.NAME] with a sampler)")
    return resolved


def _check_report(report: Any, varied: list[str], problems: Problems) -> dict:
    """The [report] table; ``varied``: the grid and case keys (what group_by may name)."""
    report = _table(report, "report", problems)
    _check_keys_of(report, schema.REPORT_KEYS, "report", problems)
    allowed = [*varied, "seed", "case", "row"]
    groups = report.get("group_by", [])
    for key in groups if isinstance(groups, list) else []:
        if isinstance(key, str) and key not in allowed:
            problems.add("report.group_by", f"{key!r} is not a grid or case key; allowed: {', '.join(allowed)}")
    scatter = report.get("scatter", [])
    for i, plot in enumerate(scatter if isinstance(scatter, list) else []):
        where = f"report.scatter[{i}]"
        if not isinstance(plot, dict) or not isinstance(plot.get("x"), str) or not isinstance(plot.get("y"), str):
            problems.add(where, f"needs x and y (metric or grid names), got {show(plot)}")
            continue
        _check_keys_of(plot, schema.SCATTER_KEYS, where, problems)
    return report


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


def _check_overrides(table: Any, where: str, problems: Problems, *, grid: bool) -> dict[str, Any]:
    flat = _flatten(_table(table, where, problems))
    for path, value in list(flat.items()):
        if path == "name" and not grid:
            continue
        parts = path.split(".")
        if parts[0] not in schema.OVERRIDABLE or len(parts) < 2 and parts[0] in ("arms", "analyses"):
            problems.add(f"{where}.'{path}'", "a grid or case key is a path into model, data, arms or analyses, "
                                              "e.g. 'arms.sgd.options.learning_rate'")
            del flat[path]
        elif grid and (not isinstance(value, list) or not value):
            problems.add(f"{where}.'{path}'", f"must be a non-empty array of values, got {show(value)}")
            del flat[path]
    return flat


def set_path(config: dict, path: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts (creating tables on the way; a value there is replaced)."""
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = copy.deepcopy(value)


def override(config: dict, values: dict[str, Any]) -> dict:
    config = copy.deepcopy(config)
    for key, value in values.items():
        if key != "name":
            set_path(config, key, value)
    return config


def _check_config(config: dict, resolver: resolve.Resolver, problems: Problems) -> None:
    """Model, data and arms of one (base or overridden) configuration."""
    _check_named("model", config.get("model"), resolver, problems)
    _check_named("data", config.get("data"), resolver, problems)
    for name, arm in _table(config.get("arms", {}), "arms", problems).items():
        _check_arm(name, arm, problems)


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
    trial = Problems("", "")
    _value(spec.option(option), value, key, trial)
    if not trial.items and option in spec.arm_options:
        missing = [a for a in _arm_values(value) if a not in base["arms"]]
        if missing:
            return True, f"value {value!r}: no arm named {missing[0]!r}; arms: {', '.join(base['arms']) or 'none'}"
    return True, f"value {value!r}: {trial.items[0][1]}" if trial.items else None


def _check_variants(base: dict, cases: list[dict], resolver: resolve.Resolver, problems: Problems) -> list[dict]:
    """Model, data and arms of the base, or of each case applied to it (the base alone never runs
    then); a problem is reported at the case key that caused it, else at the base key."""
    if not cases:
        _check_config(base, resolver, problems)
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
        config = override(base, own)
        trial = problems.fresh()
        _check_config(config, resolver, trial)
        for key, message in trial.items:
            mine = next((k for k in own if key == k or key.startswith(k + ".") or k.startswith(key + ".")), None)
            if mine:
                problems.add(f"cases[{i}].'{mine}'", message)
            else:
                problems.add(key, f"{message} (with case {case['name']!r})")
        configs.append(config)
    return configs


def _check_grid(grid: dict, base: dict, configs: list[dict], resolver: resolve.Resolver, problems: Problems) -> None:
    """Each grid value as if written in its place, against every valid variant."""
    for key, values in grid.items():
        for value in values:
            where = f"grid.'{key}'"
            handled, problem = _override_problem(key, value, base)
            if problem:
                problems.add(where, problem)
            for config in [] if handled or problem else configs:
                trial = problems.fresh()
                _check_config(override(config, {key: value}), resolver, trial)
                for _, message in trial.items:
                    problems.add(where, f"value {value!r}: {message}")


def validate(doc: dict, resolver: resolve.Resolver, problems: Problems) -> Validated:
    """Check a parsed suite file; raises :class:`SuiteError` listing every problem found."""
    _keys(doc, "", schema.SECTIONS, problems, what="section")
    suite = _table(doc.get("suite", {}), "suite", problems)
    _check_keys_of(suite, schema.SUITE_KEYS, "suite", problems, skip=("analyses",))  # checked with the analyses
    seeds = suite.get("seeds", [0])
    for section in ("model", "data"):
        if section not in doc:
            problems.add(section, f"missing [{section}] table")
    arms = _table(doc.get("arms", {}), "arms", problems)
    reference = suite.get("reference")
    if isinstance(reference, str) and reference not in arms:
        problems.add("suite.reference", f"no arm named {reference!r}; arms: {', '.join(arms) or 'none'}")
    base = {"model": doc.get("model"), "data": doc.get("data"), "arms": arms, "reference": reference}
    problems.raise_if_any()  # structure is broken: checks of the parts would repeat the same problems
    base["analyses"] = _check_analyses(suite, doc.get("analyses", {}), arms, reference, problems)
    grid = _check_overrides(doc.get("grid", {}), "grid", problems, grid=True)
    cases_doc = doc.get("cases", [])
    if not isinstance(cases_doc, list):
        problems.add("cases", "must be an array of tables ([[cases]])")
        cases_doc = []
    cases = [_check_overrides(case, f"cases[{i}]", problems, grid=False) for i, case in enumerate(cases_doc)]
    names = [c.get("name") for c in cases]
    if cases and (any(not isinstance(n, str) or not n for n in names) or len(set(map(repr, names))) < len(names)):
        problems.add("cases", "every [[cases]] needs a distinct, non-empty name = \"...\"")
    configs = [] if problems.items else _check_variants(base, cases, resolver, problems)
    if configs and not problems.items:  # grid values against valid variants only
        _check_grid(grid, base, configs, resolver, problems)
    varied = list(dict.fromkeys([*grid, *(k for case in cases for k in case if k != "name")]))
    report = _check_report(doc.get("report", {}), varied, problems)
    problems.raise_if_any()
    return Validated(suite, base, grid, cases, seeds, report)

