"""The suite-file schema, as typed options: every section's keys, generated where a spec exists.

The keys of ``[suite]``, ``[model]``, ``[data]``, ``[arms.NAME]`` and ``[report]`` are declared here
as :class:`~fractalbayes.samplers.registry.Option` s (default, validator, meaning); an arm's
``options`` are its sampler's registered options (``fractalbayes.samplers.registry``), an
analysis' options its typed options in :data:`fractalbayes.suite.analyses.ANALYSES`, and an arm's run
settings take their defaults from ``fb.sample``'s signature. :func:`describe` returns the whole
schema, :func:`markdown_tables` renders it; docs/suites.md's option tables are checked against
them in the tests (print them with ``python -m fractalbayes.suite.schema``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

from fractalbayes import checks
from fractalbayes.engine.sample import LOOP_SETTINGS, sample
from fractalbayes.samplers import registry
from fractalbayes.samplers.registry import Option
from fractalbayes.suite import analyses, resolve
from fractalbayes.suite.analyses import REQUIRED

SECTIONS = ("suite", "model", "data", "arms", "grid", "cases", "analyses", "report")
"""The top-level tables of a suite file."""

OVERRIDABLE = ("model", "data", "arms", "analyses")
"""Where grid and case keys may point."""


def _seeds(value: Any) -> list[int]:
    ok = isinstance(value, list) and value and all(checks.is_int(s) and s >= 0 for s in value)
    if not ok or len(set(value)) < len(value):
        raise checks.Invalid(f"must be a non-empty array of distinct integers >= 0, got {checks.show(value)}")
    return value


_seeds.want = "distinct integers >= 0"
STRING = checks.kind(str, want="a string")
STRINGS = checks.sequence_of(STRING, want="an array of strings")
BOOLEAN = checks.kind(bool, want="true or false")
TABLE = checks.kind(dict, want="a table")


def _named(want: str) -> checks.Validator:
    """A name checked elsewhere (by the registry or :mod:`fractalbayes.suite.resolve`)."""
    validate = checks.kind(str, want=want)
    validate.want = want
    return validate


SUITE_KEYS = (
    Option("name", None, STRING, "the suite's name (none: the file's name); an output folder belongs to one suite"),
    Option("description", "", STRING, "shown in the report"),
    Option("seeds", [0], _seeds, "each cell is repeated per seed (the seed of every sampler and analysis)"),
    Option("reference", None, STRING,
           "the arm that `compare` (and by default `tempering`, `lyapunov`) compares against"),
    Option("analyses", None, STRINGS, "the analyses to run (none: predictive and summary, plus compare with a "
                                      "reference); they run in the order of [analyses.NAME] below"),
)
MODEL_KEYS = (
    Option("name", REQUIRED, _named("a registered model or 'FILE.py:function'"), resolve.allowed_forms("model")),
    Option("options", {}, TABLE, "keyword arguments of the model, checked against its signature"),
    Option("batch_size", None, checks.integer(1), "minibatch size (none: full batch)"),
    Option("data_plate", None, STRING, "the data plate's name, when several plates hold every observed site"),
)
DATA_KEYS = (
    Option("name", REQUIRED, _named("a registered data set or 'FILE.py:function'"), resolve.allowed_forms("data")),
    Option("options", {}, TABLE, "keyword arguments of the loader, checked against its signature "
                                 "(the data's seed is the file's, default 0)"),
)

_SAMPLE = inspect.signature(sample).parameters
RUN_SETTINGS = (
    Option("num_chains", _SAMPLE["num_chains"].default, checks.integer(1), "chains, as in fb.sample"),
    Option("num_samples", _SAMPLE["num_samples"].default, checks.integer(1), "draws per chain"),
    Option("burn_in", _SAMPLE["burn_in"].default, checks.integer(0), "steps before the first draw (NUTS: warm-up)"),
    Option("thin", _SAMPLE["thin"].default, checks.integer(1), "steps per draw"),
    Option("num_checkpoints", _SAMPLE["num_checkpoints"].default, checks.integer(2),
           "positions recorded on a geometric grid of steps, for the diffusion analysis (none: 100)"),
    Option("checkpoint_start", _SAMPLE["checkpoint_start"].default, checks.choice("burn_in", also=checks.integer(0)),
           "start that grid here (none: step 0)"),
    Option("record_window", _SAMPLE["record_window"].default,
           checks.sequence_of(checks.integer(0), 2, want="[start, length] (integers)"),
           "also record every step in [start, start + length)"),
    Option("init", _SAMPLE["init"].default, checks.choice("prior", "uniform"), "initial positions (none: prior draws)"),
    Option("devices", _SAMPLE["devices"].default, checks.integer(1),
           "split the chains evenly over this many devices, same draws (none: one device)"),
    *LOOP_SETTINGS,
)
"""An arm's run settings: the keyword arguments of fb.sample a suite file may set (a sampler
declares in its spec which it takes); the seed is the cell's."""
ARM_KEYS = (
    Option("sampler", REQUIRED, _named("a registered sampler"), "a name in fb.SAMPLERS (their options: docs/guide.md)"),
    *RUN_SETTINGS,
    Option("batch_size", None, checks.integer(1), "this arm's minibatch size (none: the model's)"),
    Option("options", {}, TABLE, "the sampler's options, checked against its spec, nested tables too"),
)
REPORT_KEYS = (
    Option("group_by", [], STRINGS, "grid or case keys (or seed, case, row): mean ± sd of the metrics per group"),
    Option("columns", None, STRINGS, "the metrics in that table (none: every numeric metric)"),
    Option("scatter", [], checks.kind(list, want="an array of tables {x, y, diagonal, log}"),
           "[[report.scatter]]: one figure across all cells, with Pearson r and Spearman rho per group"),
)
SCATTER_KEYS = (
    Option("x", REQUIRED, STRING, "a metric or grid name"),
    Option("y", REQUIRED, STRING, "a metric or grid name"),
    Option("diagonal", False, BOOLEAN, "draw y = x"),
    Option("log", False, BOOLEAN, "log axes"),
)


def arm_settings(spec: registry.SamplerSpec) -> tuple[Option, ...]:
    """The run settings a sampler takes in a suite file (a composite method sets some itself)."""
    return tuple(o for o in RUN_SETTINGS if o.name in spec.run_settings)


# --------------------------------------------------------------------------------------------------
# The schema as data, and as Markdown
# --------------------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A default as a suite file writes it (none for None)."""
    if value is REQUIRED:
        return "required"
    if value is None:
        return "none"
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def rows(options: Sequence[Option]) -> list[dict[str, str]]:
    """Options as table rows: key, default, allowed values, meaning (a file leaves out what it does not
    set, so an optional value's "None or" is not repeated)."""
    return [{"key": o.name, "default": toml_value(o.default), "allowed": o.want.removeprefix("None or "),
             "meaning": o.doc} for o in options]


def describe() -> dict[str, dict[str, list[dict[str, str]]]]:
    """The whole suite-file schema: every table's keys, every sampler's and analysis' options."""
    return {
        "sections": {"suite": rows(SUITE_KEYS), "model": rows(MODEL_KEYS), "data": rows(DATA_KEYS),
                     "arms.NAME": rows(ARM_KEYS), "report": rows(REPORT_KEYS),
                     "report.scatter": rows(SCATTER_KEYS)},
        "samplers": {name: rows(spec.options) for name, spec in sorted(registry.REGISTRY.items())},
        "analyses": {name: rows(spec.options) for name, spec in analyses.ANALYSES.items()},
    }


def markdown(table: list[dict[str, str]]) -> str:
    """One Markdown table: | key | default | allowed | meaning |."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r['key']}` | `{cell(r['default'])}` | {cell(r['allowed'])} | {cell(r['meaning'])} |"
              for r in table]
    return "\n".join(lines)


def markdown_tables() -> dict[str, str]:
    """The tables docs/suites.md holds: each section's keys and each analysis' options."""
    schema = describe()
    return ({f"[{name}]": markdown(table) for name, table in schema["sections"].items()}
            | {f"[analyses.{name}]": markdown(table) for name, table in schema["analyses"].items()})


if __name__ == "__main__":
    for title, text in markdown_tables().items():
        print(f"{title}\n\n{text}\n")
