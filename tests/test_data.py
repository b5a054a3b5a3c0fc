"""Tests for fractalbayes.data: shapes, dtypes, determinism, standardisation, readers, errors."""

import gzip
import json
import random
import socket
import struct
import sys
import urllib.request

import numpy as np
import pytest

from fractalbayes.model import data

SMALL = {
    "moons": {},
    "digits": {"n": 300},
    "linear_teacher": {},
    "rrr_teacher": {"n": 200, "test_fraction": 0.1},
    "dln_teacher": {"n": 200, "widths": (3, 4, 5, 2), "rank": 2, "test_fraction": 0.1},
    "normal_crossing_teacher": {"n": 200, "w_true": (0.5, -1.0)},
}
CLASSIFICATION = {"moons", "digits", "mnist1d", "mnist"}


def _assert_conventions(ds: data.Dataset) -> None:
    x_train, y_train, x_test, y_test = ds[:4]
    assert x_train.dtype == x_test.dtype == np.float32
    assert x_train.ndim == x_test.ndim == 2 and x_train.shape[1] == x_test.shape[1] == ds.n_features
    assert len(y_train) == ds.n_train == len(x_train) and len(y_test) == len(x_test)
    if ds.name in CLASSIFICATION:
        assert y_train.dtype == y_test.dtype == np.int32 and y_train.ndim == 1
        assert 0 <= y_train.min() and y_train.max() < ds.n_classes
    else:
        assert y_train.dtype == y_test.dtype == np.float32 and ds.n_classes is None
        assert y_train.shape[1:] == y_test.shape[1:]
    json.dumps(ds.info)


# --------------------------------------------------------------------------------------------------
# Shapes, dtypes, determinism
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options, shapes",
    [
        ("moons", {}, ((150, 2), (150,), (50, 2), (50,))),
        ("moons", {"n": 10, "test_fraction": 0.0}, ((10, 2), (10,), (0, 2), (0,))),
        ("digits", {}, ((1348, 64), (1348,), (449, 64), (449,))),
        ("digits", {"n": 100, "test_fraction": 0.2}, ((80, 64), (80,), (20, 64), (20,))),
        ("linear_teacher", {"n": 40, "d": 5}, ((30, 5), (30,), (10, 5), (10,))),
        ("rrr_teacher", {"n": 50, "M": 4, "H": 3, "N": 2}, ((50, 4), (50, 2), (0, 4), (0, 2))),
        ("dln_teacher", {"n": 50, "widths": (3, 2)}, ((50, 3), (50, 2), (0, 3), (0, 2))),
        ("normal_crossing_teacher", {"n": 50, "test_fraction": 0.2}, ((40, 1), (40,), (10, 1), (10,))),
    ],
)
def test_shapes_and_dtypes(name, options, shapes):
    ds = data.load(name, **options)
    assert ds.name == name
    assert tuple(a.shape for a in ds[:4]) == shapes
    _assert_conventions(ds)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_arrays_different_seed_different(name):
    a, b = data.load(name, seed=3, **SMALL[name]), data.load(name, seed=3, **SMALL[name])
    c = data.load(name, seed=4, **SMALL[name])
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)
    assert a.info == b.info
    assert not np.array_equal(a.x_train, c.x_train)


def test_classification_info():
    ds = data.moons(seed=2, standardize=False)
    assert ds.n_classes == 2 and ds.info["seed"] == 2 and ds.info["standardized"] is False
    assert ds.info["source"] == "sklearn.datasets.make_moons"
    assert data.digits(n=50).n_classes == 10


# --------------------------------------------------------------------------------------------------
# Standardisation
# --------------------------------------------------------------------------------------------------


def test_split_standardize_uses_training_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(400, 3))
    x[:, 2] = 7.0  # a constant feature is only centred
    y = rng.integers(0, 3, size=400)
    x_tr, y_tr, x_te, y_te = data.split_standardize(x, y, test_fraction=0.25, seed=1,
                                                   standardize=True, classification=True)
    np.testing.assert_allclose(x_tr.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_tr.std(0), [1.0, 1.0, 0.0], atol=1e-5)
    raw_tr, _, raw_te, _ = data.split_standardize(x, y, test_fraction=0.25, seed=1,
                                                 standardize=False, classification=True)
    mean, std = raw_tr.mean(0, dtype=np.float64), raw_tr.std(0, dtype=np.float64)
    std[2] = 1.0
    np.testing.assert_allclose(x_te, (raw_te - mean) / std, rtol=1e-5, atol=1e-5)
    assert y_tr.dtype == np.int32 and len(y_tr) == 300 and len(y_te) == 100
    np.testing.assert_array_equal(np.sort(np.concatenate([y_tr, y_te])), np.sort(y))


def test_split_standardize_never_touches_y_and_regression_y_is_float():
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10.0) * 100
    _, y_tr, _, y_te = data.split_standardize(x, y, test_fraction=0.3, seed=0, standardize=True,
                                             classification=False)
    assert y_tr.dtype == np.float32
    np.testing.assert_array_equal(np.sort(np.concatenate([y_tr, y_te])), y)


@pytest.mark.parametrize("name", ["moons", "digits"])
def test_loaders_standardise_on_train(name):
    ds = data.load(name)
    varying = ds.x_train.std(0) > 0
    np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0)[varying], 1.0, atol=1e-4)
    raw = data.load(name, standardize=False)
    mean, std = raw.x_train.mean(0), raw.x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mean) / std, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Teachers
# --------------------------------------------------------------------------------------------------


def test_linear_teacher_recovers_w_true():
    ds = data.linear_teacher(n=2000, d=3, noise=0.1, test_fraction=0.0, seed=5)
    w_hat = np.linalg.lstsq(ds.x_train, ds.y_train, rcond=None)[0]
    np.testing.assert_allclose(w_hat, ds.info["w_true"], atol=0.02)
    assert ds.info["noise"] == 0.1


@pytest.mark.parametrize("M, H, N, rank", [(3, 2, 3, 0), (3, 2, 3, 1), (3, 2, 3, 2), (5, 4, 2, 2), (1, 1, 1, 1)])
def test_rrr_teacher_rank_and_factors(M, H, N, rank):
    ds = data.rrr_teacher(n=100, M=M, H=H, N=N, rank=rank, noise=0.0, seed=1)
    product, a, b = (np.array(ds.info[key]) for key in ("product", "A", "B"))
    assert product.shape == (N, M) and a.shape == (H, M) and b.shape == (N, H)
    assert np.linalg.matrix_rank(product) == rank
    np.testing.assert_allclose(b @ a, product)
    np.testing.assert_allclose(ds.y_train, ds.x_train @ product.T, atol=1e-4)
    assert (ds.info["M"], ds.info["H"], ds.info["N"], ds.info["rank"]) == (M, H, N, rank)


@pytest.mark.parametrize("widths, rank", [((3, 4, 3), 1), ((3, 4, 5, 2), 2), ((2, 3), 2), ((4, 3, 3, 3, 4), 3)])
def test_dln_teacher_rank_and_factors(widths, rank):
    ds = data.dln_teacher(n=100, widths=widths, rank=rank, noise=0.0)
    product = np.array(ds.info["product"])
    assert product.shape == (widths[-1], widths[0])
    assert np.linalg.matrix_rank(product) == rank
    layers = [np.array(w) for w in ds.info["weights"]]
    assert [w.shape for w in layers] == [(o, i) for i, o in zip(widths[:-1], widths[1:])]
    np.testing.assert_allclose(np.linalg.multi_dot(layers[::-1]) if len(layers) > 1 else layers[0], product)
    np.testing.assert_allclose(ds.y_train, ds.x_train @ product.T, atol=1e-4)
    assert ds.info["widths"] == list(widths) and ds.info["rank"] == rank


def test_normal_crossing_teacher():
    ds = data.normal_crossing_teacher(n=500, k=(1, 2), noise=0.0)
    assert ds.info["w_true"] == [0.0, 0.0] and ds.info["k"] == [1, 2]
    np.testing.assert_array_equal(ds.y_train, 0.0)
    ds = data.normal_crossing_teacher(n=500, k=(1, 2), w_true=(2.0, -1.5), noise=0.0)
    np.testing.assert_allclose(ds.y_train, ds.x_train[:, 0] * 2.0 * 1.5**2, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# MNIST from local files
# --------------------------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _fake_mnist(seed: int, n_train: int = 20, n_test: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }


def _write_idx_dir(directory, arrays, gzipped=False):
    directory.mkdir()
    for key, filename in data._MNIST_FILES.items():
        payload = _idx_bytes(arrays[key])
        if gzipped:
            (directory / f"{filename}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / filename).write_bytes(payload)
    return directory


def test_read_idx_round_trips_types(tmp_path):
    for code, dtype in [(0x08, np.uint8), (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)]:
        array = np.arange(24).reshape(2, 3, 4).astype(dtype)
        path = tmp_path / f"a{code}.idx"
        path.write_bytes(_idx_bytes(array, code))
        out = data.read_idx(path)
        assert out.dtype == dtype and out.dtype.isnative
        np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("gzipped", [False, True])
def test_mnist_idx_directory(tmp_path, gzipped):
    arrays = _fake_mnist(0)
    directory = _write_idx_dir(tmp_path / "mnist", arrays, gzipped)
    ds = data.mnist(directory, standardize=False)
    _assert_conventions(ds)
    assert ds.x_train.shape == (20, 784) and ds.x_test.shape == (8, 784)
    np.testing.assert_allclose(ds.x_train, arrays["x_train"].reshape(20, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0

    std = data.mnist(directory, n=10, seed=1)
    assert std.n_train == 10 and std.x_test.shape == (8, 784)
    np.testing.assert_allclose(std.x_train.mean(0), 0.0, atol=1e-5)
    assert not np.array_equal(std.x_train, data.mnist(directory, n=10, seed=2).x_train)


def test_mnist_npz_matches_idx(tmp_path):
    arrays = _fake_mnist(1)
    np.savez(tmp_path / "mnist.npz", **arrays)
    from_npz = data.mnist(tmp_path / "mnist.npz")
    from_idx = data.mnist(_write_idx_dir(tmp_path / "idx", arrays))
    for u, v in zip(from_npz[:4], from_idx[:4]):
        np.testing.assert_array_equal(u, v)
    assert data.load("mnist", path=tmp_path / "mnist.npz").n_train == 20


def test_mnist_missing_path_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*train-images-idx3-ubyte"):
        data.mnist(tmp_path / "absent")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((2, 28, 28), np.uint8)))
    with pytest.raises(FileNotFoundError, match="partial.*lacks train-labels-idx1-ubyte"):
        data.mnist(tmp_path / "partial")
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="bad.npz lacks arrays y_train, x_test, y_test"):
        data.mnist(tmp_path / "bad.npz")


def test_mnist_malformed_files(tmp_path):
    directory = _write_idx_dir(tmp_path / "mnist", _fake_mnist(2))
    bad = directory / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 8) + bytes(8))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte is not an IDX file: magic number 12340801"):
        data.mnist(directory)
    bad.write_bytes(_idx_bytes(np.zeros(8, np.uint8))[:-3])
    with pytest.raises(ValueError, match="malformed.*needs 8 data bytes, found 5"):
        data.mnist(directory)
    bad.write_bytes(_idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(ValueError, match="test images .* and labels"):
        data.mnist(directory)


# --------------------------------------------------------------------------------------------------
# MNIST-1D offline
# --------------------------------------------------------------------------------------------------


def test_mnist1d_offline_and_keeps_global_random_state(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    for module in [m for m in sys.modules if m == "mnist1d" or m.startswith("mnist1d.")]:
        monkeypatch.delitem(sys.modules, module)  # exercise the import too
    data._mnist1d_arrays.cache_clear()

    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    ds = data.mnist1d()
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state

    _assert_conventions(ds)
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40) and ds.n_classes == 10
    assert set(np.unique(ds.y_train)) == set(range(10))
    np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0), 1.0, atol=1e-4)


def test_mnist1d_subsample_is_deterministic():
    a, b, c = data.mnist1d(n=100, seed=0), data.mnist1d(n=100, seed=0), data.mnist1d(n=100, seed=1)
    assert a.x_train.shape == (100, 40) and a.x_test.shape == (1000, 40)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    full = data.mnist1d(standardize=False)
    assert np.isclose(full.x_train.std(), 1.0, atol=0.05)  # the package's own global scaling


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: data.moons(0), "n must be an integer >= 1"),
        (lambda: data.moons(-5), "n must be"),
        (lambda: data.moons(noise=-0.1), "noise must be >= 0"),
        (lambda: data.moons(test_fraction=1.0), r"test_fraction must be in \[0, 1\)"),
        (lambda: data.linear_teacher(test_fraction=-0.1), "test_fraction"),
        (lambda: data.digits(n=2000), r"n must be an integer in \[1, 1797\]"),
        (lambda: data.mnist1d(n=0), r"n must be an integer in \[1, 4000\]"),
        (lambda: data.linear_teacher(d=0), "d must be"),
        (lambda: data.rrr_teacher(H=2, rank=3), r"rank .* must be an integer in \[0, 2\]"),
        (lambda: data.rrr_teacher(M=1, H=2, N=3, rank=2), r"rank .* in \[0, 1\]"),
        (lambda: data.rrr_teacher(rank=-1), "rank"),
        (lambda: data.dln_teacher(widths=(3, 1, 3), rank=2), r"rank \(at most min\(widths\)\).*\[0, 1\]"),
        (lambda: data.dln_teacher(widths=(3,)), "widths must list"),
        (lambda: data.dln_teacher(widths=(3, 0, 2)), r"widths\[1\]"),
        (lambda: data.normal_crossing_teacher(k=(1, -2)), r"k\[1\] must be an integer >= 0"),
        (lambda: data.normal_crossing_teacher(k=(1, 2), w_true=(1.0,)), "w_true must have one entry"),
        (lambda: data.load("cifar10"), "unknown data set 'cifar10'; allowed names: moons, digits, mnist1d"),
    ],
)
def test_bad_inputs_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
