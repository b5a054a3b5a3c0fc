"""The trust model of suite files: models and data sets come from the toolkit's registries or from a
module file the suite names by a path relative to itself, nothing else; validation and --dry-run run
no user code; a module file's function must give what it promises; sys.path is never touched."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from fractalbayes.errors import SuiteError
from fractalbayes.suite import cli, resolve
from fractalbayes.suite import runner as suites

SUITE = """\
[suite]
analyses = []

[model]
name = "{model}"
options = {model_options}

[data]
name = "{data}"
options = {data_options}

[arms.sgd]
sampler = "sgd"
num_chains = 1
num_samples = 5
burn_in = 5
options = {{ learning_rate = 0.01 }}
"""

USER_CODE = """\
import numpy as np
import numpyro
import numpyro.distributions as dist

import fractalbayes as fb

open("IMPORTED", "a").write("user code ran\\n")  # top-level code: shows when the module was executed


def line(x, y=None, *, scale: float = 1.0, bias: bool = False):
    w = numpyro.sample("w", dist.Normal(0.0, scale).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def points(n: int = 40, seed: int = 0, *, label):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5]) + rng.normal(size=n)).astype(np.float32)
    return fb.data.Dataset(x, y, x[:0], y[:0], label, {})


def not_data(n: int = 40, label: str = "d"):
    return {"x": n}


def not_a_model(x, y=None):
    return x


helper = lambda: None  # noqa: E731 (not a def: refused as a name)
"""


def _write(folder: Path, model: str = "linear_regression", data: str = "linear_teacher",
           model_options: str = "{}", data_options: str = "{ n = 30, d = 2 }") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.toml"
    path.write_text(SUITE.format(model=model, data=data, model_options=model_options, data_options=data_options))
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A suite folder with the user module file, the current folder elsewhere, and a record of
    sys.path and sys.modules to compare with."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "user.py").write_text(USER_CODE)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return folder, list(sys.path), set(sys.modules)


def _ran(folder: Path) -> bool:
    """Whether the user module's top-level code ran (it writes IMPORTED into the current folder)."""
    return any(folder.parent.rglob("IMPORTED"))


def _problems(path: Path) -> str:
    with pytest.raises(SuiteError) as error:
        suites.load_suite(path)
    return "\n".join(error.value.problems)


def test_os_system_is_refused_at_validation_naming_the_key_and_both_allowed_forms(isolated, capsys):
    folder, _, _ = isolated
    path = _write(folder, data="os:system", data_options='{ command = "touch PWNED" }')
    text = _problems(path)
    assert ":9: data.name: 'os:system' is refused" in text
    assert "moons, digits" in text and "'FILE.py:function'" in text and "relative to the suite file's folder" in text
    for extra in ([], ["--dry-run"]):
        assert cli.main(["run", str(path), "--out", str(folder / "out"), *extra]) == 2
        assert "'os:system' is refused" in capsys.readouterr().err
    assert not (folder / "out").exists() and not list(folder.parent.rglob("PWNED"))


@pytest.mark.parametrize(("name", "reason"), [
    ("fractalbayes.model.data:moons", "dotted names of installed modules"),
    ("subprocess:run", "is refused"),
    ("/tmp/user.py:points", "not as an absolute path"),
    ("../suite/user.py:points", None),  # leaves the folder and comes back: allowed (inside it)
    ("../outside.py:points", "must lie inside the suite file's folder"),
    ("escape/os.py:system", "must lie inside the suite file's folder"),  # a symlink into the standard library
    ("user.py:helper", "no function 'helper' defined with def at its top level"),
    ("missing.py:points", "no module file"),
    ("user.py:os.system", "is refused"),
])
def test_names_outside_the_two_allowed_sources_are_refused(isolated, name, reason):
    folder, _, _ = isolated
    (folder.parent / "outside.py").write_text(USER_CODE)
    (folder / "escape").symlink_to(Path(os.__file__).parent, target_is_directory=True)
    path = _write(folder, data=name, data_options='{ label = "p" }')
    if reason is None:
        assert list(suites.load_suite(path).sources) == [name]
        return
    assert reason in _problems(path)
    assert not _ran(folder)


def test_the_current_folder_is_not_a_source(isolated):
    folder, _, _ = isolated
    (Path.cwd() / "mine.py").write_text(USER_CODE)
    assert "no module file" in _problems(_write(folder, data="mine.py:points", data_options='{ label = "p" }'))
    assert not _ran(folder)


def test_module_file_options_are_checked_from_its_text_without_running_it(isolated, capsys):
    folder, path_before, modules_before = isolated
    text = _problems(_write(folder, model="user.py:line", model_options='{ scale = "wide", width = 3 }',
                            data="user.py:points", data_options="{ n = 2.5 }"))
    assert "model.options.scale: must be a number (the default is 1.0), got string 'wide'" in text
    assert "model.options.width: unknown option 'width' for model 'user.py:line'; allowed: scale, bias" in text
    assert "data.options.n: must be an integer (the default is 40), got float 2.5" in text
    assert "data.options.label: required by data set 'user.py:points'" in text
    path = _write(folder, model="user.py:line", model_options="{ scale = 2 }", data="user.py:points",
                  data_options='{ n = 30, label = "p" }')
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "NOT imported: user.py:line, user.py:points" in printed and "nothing was run or written" in printed
    assert not _ran(folder)
    assert sys.path == path_before and not {m for m in set(sys.modules) - modules_before if "user" in m}


def test_module_files_run_when_cells_run_and_must_give_what_they_promise(isolated):
    folder, path_before, _ = isolated
    path = _write(folder, model="user.py:line", data="user.py:points", data_options='{ n = 30, label = "p" }')
    path.write_text(path.read_text() + """
[[cases]]
name = "good"

[[cases]]
name = "not-data"
"data.name" = "user.py:not_data"

[[cases]]
name = "not-a-model"
"model.name" = "user.py:not_a_model"
""")
    suite = suites.load_suite(path)
    assert not _ran(folder)
    cells = suites.run_suite(suite, folder / "out", progress=False)
    assert cells["good_seed=0"]["status"] == "done", cells["good_seed=0"]
    assert _ran(folder) and sys.path == path_before
    bad_data = cells["not-data_seed=0"]["error"]
    assert "SuiteError" in bad_data and "data.name: 'user.py:not_data' returned dict, not a" in bad_data
    assert "Dataset" in bad_data
    bad_model = cells["not-a-model_seed=0"]["error"]
    assert "model.name: 'user.py:not_a_model' is not a NumPyro model function" in bad_model
    assert "fb.from_numpyro" in bad_model
    hash_before = suite.cells("good")[0].config_hash
    (folder / "user.py").write_text(USER_CODE + "\n# edited\n")
    assert suites.load_suite(path).cells("good")[0].config_hash != hash_before  # editing the file reruns its cells


@pytest.mark.parametrize("name", ["a\x00b.py:points", "x" * 300 + ".py:points", "loop.py:points", "bad.py:points"])
def test_unreadable_module_files_are_refused_with_a_reason(isolated, name):
    folder, _, _ = isolated
    (folder / "loop.py").symlink_to(folder / "loop.py")
    (folder / "bad.py").write_text("def points(:\n")
    with pytest.raises(resolve.Unresolvable, match=f"{re.escape(repr(name)[:20])}.*(cannot read|no module file|syntax)"):
        resolve.locate("data", name, folder)
