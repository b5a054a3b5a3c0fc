"""Property tests of suite files (hypothesis): random valid files load and dry-run; random mutations of
them (values, keys, text) are refused only with SuiteError and exit status 2, write nothing, and never
import or run user code, whatever names they give models and data sets."""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fractalbayes.errors import SuiteError
from fractalbayes.suite import cli
from fractalbayes.suite import runner as suites

PROPERTY = settings(max_examples=50, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

EVIL = """\
open(__file__ + ".IMPORTED", "w").write("user code ran")


def model(x, y=None, *, scale: float = 1.0):
    raise SystemExit("model called")


def load(n: int = 10):
    raise SystemExit("loader called")
"""

DANGEROUS = ["os:system", "subprocess:run", "builtins:eval", "fractalbayes.model.data:moons", "evil.py:model",
             "evil.py:load", "./evil.py:load", "../evil.py:load", "/etc/evil.py:load", "evil:load", "evil.py",
             "evil.py:", ":load", "evil.py:__import__", "sub/../evil.py:load", "~/evil.py:load"]


# --------------------------------------------------------------------------------------------------
# TOML out of dicts (the test's own writer: tomllib only reads)
# --------------------------------------------------------------------------------------------------


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"


def dumps(doc: dict) -> str:
    """Top-level scalars first, then one [table] per table (arms: [arms.NAME]), then [[cases]]."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list))
             or isinstance(v, list) and not (v and all(isinstance(c, dict) for c in v))]
    for name, table in doc.items():
        if not isinstance(table, dict):
            continue
        nested = name == "arms" and all(isinstance(v, dict) for v in table.values()) and table
        for sub, body in table.items() if nested else [(None, table)]:
            lines.append(f"\n[{_key(name)}{'.' + _key(sub) if sub is not None else ''}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in body.items()]
    for name, cases in doc.items():
        if isinstance(cases, list) and cases and all(isinstance(c, dict) for c in cases):
            for case in cases:
                lines.append(f"\n[[{_key(name)}]]")
                lines += [f"{_key(k)} = {_value(v)}" for k, v in case.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------

RATES = st.floats(1e-4, 0.5)
PROBLEMS = {  # model -> (data, data options)
    "linear_regression": ("linear_teacher", st.fixed_dictionaries({"n": st.integers(20, 200), "d": st.integers(1, 4)})),
    "logistic_regression": ("moons", st.fixed_dictionaries({"n": st.integers(40, 300), "noise": st.floats(0.0, 0.5)})),
}
ARMS = {
    "sgd": st.fixed_dictionaries({"learning_rate": RATES}, optional={"momentum": st.floats(0.0, 0.9),
                                                                      "optimizer": st.sampled_from(["sgd", "adam"])}),
    "sgld": st.fixed_dictionaries({"step_size": RATES}),
    "nuts": st.builds(dict),
}


@st.composite
def valid_docs(draw) -> dict:
    model = draw(st.sampled_from(sorted(PROBLEMS)))
    data, data_options = PROBLEMS[model]
    arms = {}
    for name in draw(st.lists(st.sampled_from(sorted(ARMS)), min_size=1, max_size=3, unique=True)):
        arm = {"sampler": name, "options": draw(ARMS[name])}
        settings = {"num_chains": st.integers(1, 4), "num_samples": st.integers(1, 50), "burn_in": st.integers(1, 50),
                    "thin": st.integers(1, 3)}
        arm |= draw(st.fixed_dictionaries({}, optional=settings))
        arms[name] = arm
    seeds = draw(st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True))
    doc = {"suite": {"name": "prop", "seeds": seeds}, "model": {"name": model},
           "data": {"name": data, "options": draw(data_options)}, "arms": arms}
    if "nuts" in arms and draw(st.booleans()):
        doc["suite"]["reference"] = "nuts"
    first = next(iter(arms))
    option = next(iter(arms[first]["options"]), None)
    if option in ("learning_rate", "step_size") and draw(st.booleans()):
        doc["grid"] = {f"arms.{first}.options.{option}": draw(st.lists(RATES, min_size=1, max_size=3, unique=True))}
    return doc


SCALARS = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=12),
                    st.sampled_from(DANGEROUS))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.text(min_size=1, max_size=8), SCALARS, max_size=3))
KEYS = st.one_of(st.sampled_from(["name", "options", "sampler", "seeds", "reference", "analyses", "arms", "grid",
                                  "cases", "report", "model", "data", "num_chains", "batch_size", "group_by"]),
                 st.text(min_size=1, max_size=10))


def _tables(doc: dict, prefix: tuple = ()) -> list[tuple]:
    """Paths to every table of the document (the root included)."""
    out = [prefix]
    for key, value in doc.items():
        if isinstance(value, dict):
            out += _tables(value, prefix + (key,))
    return out


def _at(doc: dict, path: tuple) -> dict:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_texts(draw) -> str:
    """A valid file changed 1-3 times: a value replaced (names of models and data sets included), a key
    dropped or added, or a character of the text inserted or deleted."""
    doc = copy.deepcopy(draw(valid_docs()))  # mutated in place: nothing shared with other examples
    text = None
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "drop", "add", "name", "text"]))
        table = _at(doc, draw(st.sampled_from(_tables(doc))))
        if kind == "name":
            section = doc.get(draw(st.sampled_from(["model", "data"])))
            if isinstance(section, dict):
                section["name"] = draw(st.sampled_from(DANGEROUS))
        elif kind in ("replace", "drop") and table:
            key = draw(st.sampled_from(sorted(table)))
            if kind == "drop":
                del table[key]
            else:
                table[key] = draw(VALUES)
        elif kind == "add":
            table[draw(KEYS)] = draw(VALUES)
        elif kind == "text":
            text = dumps(doc) if text is None else text
            at = draw(st.integers(0, max(len(text) - 1, 0)))
            text = text[:at] + draw(st.sampled_from(["", "[", "]", "=", '"', "\n", "x", "{", ","])) + text[at + 1:]
    return text if text is not None else dumps(doc)


# --------------------------------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The suite folder, holding a module file whose top-level code leaves a mark when it runs."""
    folder = tmp_path_factory.mktemp("properties")
    (folder / "evil.py").write_text(EVIL)
    (folder / "sub").mkdir()
    return folder


def _state(folder: Path) -> tuple:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")), set(sys.modules), list(sys.path)


@pytest.fixture(scope="module")
def warm(folder) -> None:
    """Everything the CLI imports on its own paths (argparse, tomllib, ...), once, before the snapshots."""
    path = folder / "suite.toml"
    path.write_text(dumps({"model": {"name": "linear_regression"}, "data": {"name": "linear_teacher"},
                           "arms": {"sgd": {"sampler": "sgd"}}}))
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    path.write_text("[model\n")
    assert cli.main(["run", str(path), "--out", str(folder / "out")]) == 2


@PROPERTY
@given(doc=valid_docs())
def test_random_valid_suites_load_and_dry_run_writing_nothing(folder, warm, doc):
    path = folder / "suite.toml"
    path.write_text(dumps(doc))
    before = _state(folder)
    suite = suites.load_suite(path)
    grid = math.prod(len(v) for v in suite.grid.values())
    assert len(suite.cells()) == len(doc["suite"]["seeds"]) * grid
    assert cli.main(["run", str(path), "--out", str(folder / "out"), "--dry-run"]) == 0
    assert _state(folder) == before


@PROPERTY
@given(text=mutated_texts())
def test_mutated_suites_fail_only_with_suite_error_and_exit_2_writing_and_importing_nothing(folder, warm, text):
    path = folder / "suite.toml"
    path.write_text(text)
    before = _state(folder)
    try:
        suites.load_suite(path)
        valid = True
    except SuiteError as error:
        valid = False
        event(error.problems[0].split(": ", 2)[-1][:40])
        assert error.problems and all(isinstance(p, str) and p for p in error.problems)
    out = folder / "out"
    if valid:  # the mutation kept it valid: only a dry run (a real one would sample)
        assert cli.main(["run", str(path), "--out", str(out), "--dry-run"]) == 0
    else:
        assert cli.main(["run", str(path), "--out", str(out)]) == 2
    assert _state(folder) == before  # no output, no mark of evil.py running, no module, sys.path as it was
