"""Run files carry a format version; every way a file can be unreadable is a clear RunFileError."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import fractalbayes as fb
from fractalbayes.engine.run import FORMAT_VERSION, META_KEY

FORMAT1 = Path(__file__).parent / "data" / "run_format1.nc"
"""Written by fractalbayes at commit 6725317 (before format versions): SGLD, 3 chains x 6 draws on a
12-point linear regression, chain 2 started at 1e20 so that it diverged at step 0."""


@pytest.fixture(scope="module")
def small_run(conjugate):
    target, _, _ = conjugate
    return fb.sample(target, "sgld", num_chains=2, num_samples=20, burn_in=10, step_size=1e-4, seed=31)


@pytest.fixture(scope="module")
def saved(small_run, tmp_path_factory):
    return small_run.save(tmp_path_factory.mktemp("runs") / "run.nc")


def _rewrite_meta(source: Path, dest: Path, edit) -> Path:
    with xr.open_datatree(source, engine="h5netcdf") as tree:
        tree = tree.load()
    tree.attrs[META_KEY] = edit(tree.attrs[META_KEY])
    tree.to_netcdf(dest, engine="h5netcdf")
    return dest


def test_save_writes_the_format_version_and_load_round_trips(saved, small_run):
    with xr.open_datatree(saved, engine="h5netcdf") as tree:
        assert json.loads(tree.attrs[META_KEY])["format_version"] == FORMAT_VERSION == 2
    loaded = fb.load_run(saved)
    np.testing.assert_array_equal(loaded.positions, small_run.positions)
    assert loaded.stats.keys() == small_run.stats.keys() | {"lp"}
    assert loaded.config == small_run.config and loaded.unconstrained_sites == {"w": (3,)}


def test_format1_file_is_migrated():
    run = fb.load_run(FORMAT1)
    assert run.sampler == "sgld" and run.positions.shape == (3, 6, 2) and run.diverged_at.tolist() == [-1, -1, 0]
    # format 1's diverging stayed true after the chain froze: now the first frozen draw only
    assert run.stats["diverging"].tolist() == [[False] * 6, [False] * 6, [True] + [False] * 5]
    assert run.stats["frozen"].tolist() == [[False] * 6, [False] * 6, [True] * 6]
    tree = run.to_arviz()  # format 1 kept z flat and no site layout: it stays flat
    assert tree["unconstrained_posterior"]["z"].shape == (3, 6, 2)
    assert json.loads(tree.attrs[META_KEY])["format_version"] == FORMAT_VERSION


def test_format1_file_saves_as_format2_and_loads_again(tmp_path):
    run = fb.load_run(FORMAT1)
    again = fb.load_run(run.save(tmp_path / "migrated.nc"))
    np.testing.assert_array_equal(again.positions, run.positions)
    np.testing.assert_array_equal(again.stats["diverging"], run.stats["diverging"])


def test_newer_format_is_refused_with_upgrade_advice(saved, tmp_path):
    def future(meta):
        value = json.loads(meta)
        value["format_version"] = FORMAT_VERSION + 1
        return json.dumps(value)

    path = _rewrite_meta(saved, tmp_path / "future.nc", future)
    with pytest.raises(fb.RunFileError, match=rf"future.nc.*format version {FORMAT_VERSION + 1}.*upgrade fractalbayes"):
        fb.load_run(path)


@pytest.mark.parametrize("version", ["two", 0, True, None])
def test_nonsense_format_version_is_corrupt(saved, tmp_path, version):
    def edit(meta):
        return json.dumps(json.loads(meta) | {"format_version": version})

    with pytest.raises(fb.RunFileError, match="is not a run-file version.*run.save"):
        fb.load_run(_rewrite_meta(saved, tmp_path / "odd.nc", edit))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(fb.RunFileError, match=r"nope.nc does not exist.*run.save\(path\)"):
        fb.load_run(tmp_path / "nope.nc")
    with pytest.raises(fb.RunFileError, match="is a folder, not a run file"):
        fb.load_run(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nc"
    path.touch()
    with pytest.raises(fb.RunFileError, match=r"empty.nc is empty.*run.save\(path\)"):
        fb.load_run(path)


def test_truncated_file(saved, tmp_path):
    path = tmp_path / "truncated.nc"
    path.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(fb.RunFileError, match=r"truncated.nc \(\d+ bytes\) is not a readable netCDF/HDF5 file"):
        fb.load_run(path)


def test_not_netcdf(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("this is a text file, not a run\n" * 20)
    with pytest.raises(fb.RunFileError, match="notes.nc .* is not a readable netCDF/HDF5 file"):
        fb.load_run(path)


def test_corrupt_json_attribute(saved, tmp_path):
    path = _rewrite_meta(saved, tmp_path / "corrupt.nc", lambda meta: meta[: len(meta) // 2])
    with pytest.raises(fb.RunFileError, match="corrupt.nc: its 'fractalbayes' attribute is not valid JSON"):
        fb.load_run(path)


def test_netcdf_of_another_tool(saved, tmp_path):
    path = tmp_path / "foreign.nc"
    xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), np.zeros((1, 3)))})}).to_netcdf(
        path, engine="h5netcdf")
    with pytest.raises(fb.RunFileError, match="foreign.nc: this DataTree was not written by fractalbayes"):
        fb.load_run(path)


def test_run_file_missing_a_group(saved, tmp_path):
    with xr.open_datatree(saved, engine="h5netcdf") as tree:
        tree = tree.load()
    del tree["checkpoints"]
    tree.to_netcdf(tmp_path / "partial.nc", engine="h5netcdf")
    with pytest.raises(fb.RunFileError, match="partial.nc lacks part of a run.*checkpoints"):
        fb.load_run(tmp_path / "partial.nc")


def test_run_file_error_is_an_oserror(tmp_path):
    with pytest.raises(OSError):
        fb.load_run(tmp_path / "absent.nc")
