"""Docs that run: every ```python block of README.md and docs/*.md is a complete program, executed
here in a fresh interpreter in an empty folder, unless a ``<!-- fragment: REASON -->`` line right
above it marks it as a fragment on purpose (the reason is required). A block whose first line is
``# NAME.py`` is a module for another example (a suite's model file) and is checked by the worked
example below instead.

The worked example (docs/suites.md): a user's own NumPyro model and data set in ``my_models.py``,
the suite file ``my-suite.toml`` next to it, both taken verbatim from the page, run with
``fractalbayes run`` and reported with ``fractalbayes report``. And the API reference
(docs/api/, mkdocs + mkdocstrings) builds in strict mode, so a broken reference fails the tests.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>\w+)\n(?P<code>.*?)```", re.DOTALL)
FRAGMENT = re.compile(r"<!-- fragment: (?P<reason>\S.*?) -->")


def blocks(lang: str) -> list[tuple[str, int, str, str | None]]:
    """(file, index in the file, code, fragment reason or None) of every ```lang block."""
    found = []
    for path in DOCS:
        text = "\n" + path.read_text()
        kept = [m for m in BLOCK.finditer(text) if m.group("lang") == lang]
        for index, match in enumerate(kept):
            marker = FRAGMENT.search(match.group("before"))
            found.append((path.relative_to(ROOT).as_posix(), index, match.group("code"),
                          marker.group("reason") if marker else None))
    return found


def module_name(code: str) -> str | None:
    first = code.splitlines()[0] if code.strip() else ""
    named = re.fullmatch(r"# ([\w-]+\.(?:py|toml))", first.strip())
    return named.group(1) if named else None


PROGRAMS = [b for b in blocks("python") if b[3] is None and module_name(b[2]) is None]


def test_every_block_is_a_program_a_module_or_a_marked_fragment():
    python = blocks("python")
    assert len(python) >= 8, "the block parser found too few ```python blocks"
    assert {f for f, *_ in PROGRAMS} >= {"README.md", "docs/guide.md", "docs/architecture.md"}
    for file, index, code, reason in python:
        assert reason is None or len(reason) > 15, f"{file} block {index}: say why it is a fragment"
    # a marker that is not directly above a block is a mistake (it would mark nothing)
    for path in DOCS:
        text = path.read_text()
        for marker in FRAGMENT.finditer(text):
            assert text[marker.end():].startswith("\n```python"), f"{path.name}: stray {marker.group(0)}"


def test_fragment_markers_are_recognised():
    text = "intro\n<!-- fragment: needs a model of your own, see above -->\n```python\nx + 1\n```\n"
    (match,) = BLOCK.finditer("\n" + text)
    assert FRAGMENT.search(match.group("before")).group("reason") == "needs a model of your own, see above"


@pytest.mark.slow
@pytest.mark.parametrize("file,index,code", [(f, i, c) for f, i, c, _ in PROGRAMS],
                         ids=[f"{f}:{i}" for f, i, *_ in PROGRAMS])
def test_doc_block_runs(file, index, code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, f"{file}, python block {index} failed:\n{done.stderr[-4000:]}"


def _named_blocks(path: Path) -> dict[str, str]:
    named = {}
    for lang in ("python", "toml"):
        for file, _, code, _ in blocks(lang):
            if ROOT / file == path and module_name(code):
                named[module_name(code)] = code
    return named


@pytest.mark.slow
def test_worked_example_own_model_through_a_suite_and_a_report(tmp_path):
    files = _named_blocks(ROOT / "docs" / "suites.md")
    assert {"my_models.py", "my-suite.toml"} <= set(files), sorted(files)
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    cli = [sys.executable, "-m", "fractalbayes"]
    run = subprocess.run([*cli, "run", "my-suite.toml", "--out", "runs/mine"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    cells = json.loads((tmp_path / "runs/mine/index.json").read_text())["cells"]
    assert [c["status"] for c in cells.values()] == ["done"]
    report = subprocess.run([*cli, "report", "runs/mine"], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert report.returncode == 0, report.stderr[-4000:]
    assert "sloped_line" in (tmp_path / "runs/mine/report.html").read_text()


@pytest.mark.slow
def test_api_reference_builds_in_strict_mode(tmp_path):
    """`mkdocs build --strict` on a copy of the configuration, so that the site goes to tmp."""
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    built = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr[-4000:]
    engine = (tmp_path / "site" / "api" / "engine" / "index.html").read_text()
    assert "fractalbayes.engine.sample.sample" in engine and "num_chains" in engine


@pytest.mark.slow
def test_a_broken_reference_fails_the_strict_build(tmp_path):
    """The strict build is a real check: a page naming a missing object fails it."""
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "api" / "core.md").write_text("# Core\n\n::: fractalbayes.errors.NoSuchError\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace('paths: ["."]', f'paths: ["{ROOT}"]')
    (tmp_path / "mkdocs.yml").write_text(config)
    built = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir",
                            str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           check=False)
    assert built.returncode != 0 and "NoSuchError" in built.stderr, built.stderr[-2000:]
