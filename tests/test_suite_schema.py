"""The suite-file schema is generated from the typed specs: docs/suites.md holds the generated tables,
option knowledge lives in one place, and the page's module-file example runs."""

from __future__ import annotations

import re
from pathlib import Path

from fractalbayes.methods.fractal import sampler as fractal_sampler
from fractalbayes.samplers import registry
from fractalbayes.slt.llc import settings as llc_settings
from fractalbayes.suite import analyses, cli, schema
from fractalbayes.suite import runner as suites

DOC = Path(__file__).resolve().parents[1] / "docs" / "suites.md"


def test_docs_hold_every_generated_option_table_verbatim():
    text = DOC.read_text()
    stale = [title for title, table in schema.markdown_tables().items() if table not in text]
    assert not stale, (f"docs/suites.md is out of date for {stale}: paste the tables printed by "
                       f"`python -m fractalbayes.suite.schema`")


def test_the_schema_describes_every_registered_sampler_and_analysis_from_its_spec():
    described = schema.describe()
    assert set(described["samplers"]) == set(registry.REGISTRY)
    for name, spec in registry.REGISTRY.items():
        assert [r["key"] for r in described["samplers"][name]] == [o.name for o in spec.options]
    assert list(described["analyses"]) == list(analyses.ANALYSES)
    assert [r["key"] for r in described["sections"]["arms.NAME"]] == [o.name for o in schema.ARM_KEYS]


def test_option_knowledge_is_declared_once():
    """The LLC analyses take the estimator's Option objects themselves; tempering takes the fractal
    sampler's; no analysis re-declares an option of another layer under the same name."""
    truth = analyses.ANALYSES["llc_truth"].options
    assert all(any(o is s for o in truth) for s in llc_settings.OPTIONS)
    llc = {o.name: o for o in analyses.ANALYSES["llc"].options}
    for setting in llc_settings.OPTIONS:
        if setting.name != "num_chains":  # one chain per point: chains_per_point instead
            assert llc[setting.name].validate is setting.validate and llc[setting.name].doc == setting.doc
    fractal = {o.name: o for o in fractal_sampler.OPTIONS + fractal_sampler.BASIN_OPTIONS}
    for option in analyses.TEMPERING_TEST_OPTIONS:
        if option.name in fractal:
            assert option is fractal[option.name]
    assert analyses.ANALYSES["diffusion"].option("xi") is fractal["xi"]


def _blocks(text: str, section: str) -> dict[str, str]:
    part = text[text.index(section):]
    part = part[:part.index("\n## ", 1)]
    return {lang: body for lang, body in re.findall(r"```(python|toml)\n(.*?)```", part, re.S)}


def test_the_trust_model_example_validates_without_running_and_then_runs(tmp_path, capsys):
    blocks = _blocks(DOC.read_text(), "## Where models and data sets come from")
    (tmp_path / "my_models.py").write_text(blocks["python"])
    path = tmp_path / "my-suite.toml"
    path.write_text(blocks["toml"])
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "NOT imported: my_models.py:sloped_line, my_models.py:noisy_line" in printed
    cells = suites.run_suite(suites.load_suite(path), tmp_path / "out", progress=False)
    assert [entry["status"] for entry in cells.values()] == ["done"], cells
    assert (tmp_path / "out" / "cells" / "seed=0" / "sgld.nc").is_file()
