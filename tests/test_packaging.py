"""The wheel is a product: built from the sources, installed into a throwaway venv, it carries the
shipped suites and `fractalbayes demo --out DIR` works from any directory.

Offline and quick: the wheel is built without build isolation (setuptools comes from the test
extra) from a copy of the tracked files, and installed with ``--no-deps`` into a fresh venv that
sees the project venv's site-packages (a .pth line) for the dependencies, so nothing is downloaded.
The project venv's editable install is a .pth *file* there, which a path added by a .pth line does
not process: the fresh venv imports the wheel's copy (checked).
"""

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sources(into: Path) -> Path:
    """Copy the tracked files (as they are in the working tree) into ``into``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the fresh venv's bin folder)."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the tracked files")
    base = tmp_path_factory.mktemp("packaging")
    src = _sources(base / "src")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(base / "dist"),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (base / "dist").glob("fractalbayes-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, capture_output=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, venv / "bin"


def _in(folder: Path, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=folder, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_the_wheel_carries_the_suites_and_the_command_line(installed, tmp_path):
    wheel, bin_dir = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (ROOT / "fractalbayes" / "suites").glob("*.toml"))
    assert shipped and all(f"fractalbayes/suites/{name}" in names for name in shipped)
    assert not any(name.startswith(("tests/", "benchmarks/", "docs/")) for name in names)

    where = _in(tmp_path, str(bin_dir / "python"), "-c", "import fractalbayes; print(fractalbayes.__file__)")
    assert where.returncode == 0 and str(bin_dir.parent) in where.stdout, where.stdout + where.stderr
    version = _in(tmp_path, str(bin_dir / "fractalbayes"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == "fractalbayes 0.1.0", version
    dry = _in(tmp_path, str(bin_dir / "fractalbayes"), "run", "quick", "--dry-run")
    assert dry.returncode == 0 and "suite quick: 1 cell(s) selected" in dry.stdout, dry.stdout + dry.stderr


@pytest.mark.slow
def test_demo_from_the_installed_wheel_in_another_directory(installed, tmp_path):
    _, bin_dir = installed
    demo = _in(tmp_path, str(bin_dir / "fractalbayes"), "demo", "--out", "demo", timeout=900)
    out = tmp_path / "demo"
    cells = json.loads((out / "index.json").read_text())["cells"]
    arms = {arm: entry["status"] for cell in cells.values() for arm, entry in cell["arms"].items()}
    assert arms == {"sgd": "done", "sgld": "done", "fractal": "done", "nuts": "done"}, demo.stderr[-3000:]
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (out / "report.html").is_file() and "Comparison with the NUTS reference" in demo.stdout
    assert "\r" not in demo.stderr and "\x1b" not in demo.stderr  # not a terminal: plain lines
