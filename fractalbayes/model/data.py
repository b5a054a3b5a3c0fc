"""Offline data sets, deterministic by seed; nothing here ever downloads.

Sources: scikit-learn's bundled generators and files (``make_moons``, ``load_digits``), MNIST-1D
generated locally with the ``mnist1d`` package, real MNIST read from a local path only, and synthetic
teachers with a known true parameter (linear, reduced-rank, deep linear, normal crossing) whose
learning coefficients have closed forms.

Conventions: ``x`` is float32 of shape (n, features); classification ``y`` is int32 labels of shape
(n,); regression ``y`` is float32 of shape (n,) or (n, outputs). ``info`` is JSON-serialisable.
"""

import functools
import gzip
import os
import random
import struct
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np


class Dataset(NamedTuple):
    """A train/test split with its provenance in ``info`` (JSON-serialisable)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    info: dict

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def n_features(self) -> int:
        """Number of input features (columns of ``x``)."""
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int | None:
        """Number of classes for classification data, ``None`` for regression."""
        return self.info.get("n_classes")


# --------------------------------------------------------------------------------------------------
# Validation and the shared split / standardisation helper
# --------------------------------------------------------------------------------------------------


def _check_int(value: int, name: str, low: int = 1, high: int | None = None) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer in [low, high] (no upper bound if None)."""
    allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")


def _check_noise(noise: float) -> None:
    if not noise >= 0.0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale each feature with training statistics; constant features keep scale 1."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def _as_targets(y: np.ndarray, classification: bool) -> np.ndarray:
    return np.asarray(y, dtype=np.int32 if classification else np.float32)


def _subsample(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``n`` examples chosen without replacement by ``seed`` (all of them when ``n`` is None)."""
    if n is None:
        return x, y
    _check_int(n, "n", high=len(x))
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[idx], y[idx]


def split_standardize(
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_fraction: float,
    seed: int,
    standardize: bool,
    classification: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``(x, y)`` into ``(x_train, y_train, x_test, y_test)`` and optionally standardise ``x``.

    The split is a permutation drawn from ``np.random.default_rng(seed)``: the first
    ``round(n * test_fraction)`` permuted examples (at most ``n - 1``) form the test set. With
    ``standardize`` each feature of ``x`` is centred and scaled by the *training* mean and standard
    deviation (features constant on the training set are only centred); ``y`` is never touched.
    ``x`` comes back as float32, ``y`` as int32 labels (``classification``) or float32 targets.
    """
    _check_fraction(test_fraction)
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    _check_int(n, "number of examples")
    n_test = min(int(round(n * test_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    x_train, x_test = x[train], x[test]
    if standardize:
        x_train, x_test = _standardize(x_train, x_test)
    y = _as_targets(y, classification)
    return x_train, y[train], x_test, y[test]


def _classification_info(source: str, seed: int, standardize: bool, n_classes: int, **extra: Any) -> dict:
    return {"task": "classification", "source": source, "seed": seed, "standardized": standardize,
            "n_classes": n_classes, **extra}


# --------------------------------------------------------------------------------------------------
# Classification data
# --------------------------------------------------------------------------------------------------


def moons(
    n: int = 200,
    *,
    noise: float = 0.1,
    test_fraction: float = 0.25,
    seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Two interleaving half circles (2 features, 2 classes) from ``sklearn.datasets.make_moons``.

    ``n`` is the total number of points before the train/test split; ``seed`` drives both the
    generator and the split.
    """
    from sklearn.datasets import make_moons

    _check_int(n, "n")
    _check_noise(noise)
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    arrays = split_standardize(x, y, test_fraction=test_fraction, seed=seed,
                               standardize=standardize, classification=True)
    info = _classification_info("sklearn.datasets.make_moons", seed, standardize, 2, noise=noise,
                                test_fraction=test_fraction)
    return Dataset(*arrays, name="moons", info=info)


def digits(
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    standardize: bool = True,
    n: int | None = None,
) -> Dataset:
    """The 8x8 handwritten digits bundled with scikit-learn (``load_digits``: 1797 x 64, 10 classes).

    Pixels are float32 counts in 0..16 before standardisation. ``n`` (at most 1797) keeps a
    deterministic random subset of that size before the split.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = _subsample(bunch.data, bunch.target, n, seed)
    arrays = split_standardize(x, y, test_fraction=test_fraction, seed=seed,
                               standardize=standardize, classification=True)
    info = _classification_info("sklearn.datasets.load_digits", seed, standardize, 10,
                                test_fraction=test_fraction)
    return Dataset(*arrays, name="digits", info=info)


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate the canonical MNIST-1D split locally, leaving global random states untouched."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        import mnist1d.data  # imports matplotlib and seeds the global generators when building

        args = mnist1d.data.get_dataset_args()
        raw = mnist1d.data.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (raw["x"], raw["y"], raw["x_test"], raw["y_test"])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def mnist1d(*, n: int | None = None, seed: int = 0, standardize: bool = True) -> Dataset:
    """MNIST-1D (Greydanus 2020): 10 classes of length-40 signals, generated offline.

    Built by ``mnist1d.data.make_dataset(get_dataset_args())`` (the package's canonical data, its own
    seed 42, train/test 4000/1000 as the package splits it); ``mnist1d.data.get_dataset`` is never
    called because it downloads. ``n`` (at most 4000) keeps a random subset of the *training* set
    chosen by ``seed``; the test set is always the full 1000. The result is cached per process.
    """
    x_train, y_train, x_test, y_test = _mnist1d_arrays()
    x_train, y_train = _subsample(x_train, y_train, n, seed)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    if standardize:
        x_train, x_test = _standardize(x_train, x_test)
    info = _classification_info("mnist1d.data.make_dataset (offline, get_dataset_args defaults)",
                                seed, standardize, 10)
    return Dataset(x_train, _as_targets(y_train, True), x_test, _as_targets(y_test, True),
                   name="mnist1d", info=info)


# --------------------------------------------------------------------------------------------------
# Real MNIST from a local path
# --------------------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_MNIST_LAYOUT = (
    "expected a directory holding " + ", ".join(_MNIST_FILES.values())
    + " (each optionally gzipped, '.gz'), or an .npz file with arrays "
    + ", ".join(_MNIST_FILES)
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the format of LeCun's MNIST files), gzipped when its name ends in ``.gz``.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then each dimension as a big-endian uint32 and the data
    in row-major big-endian order. Raises ``ValueError`` naming the file if it is not such a file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        buf = f.read()
    if len(buf) < 4 or buf[:2] != b"\x00\x00" or buf[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path} is not an IDX file: magic number {buf[:4].hex() or '(empty)'}; expected 0000 "
            f"followed by a type code in {sorted(hex(c) for c in _IDX_DTYPES)} and the rank"
        )
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path} is truncated: header announces {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    count = int(np.prod(shape))
    if len(buf) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path} is malformed: shape {shape} needs {count * dtype.itemsize} data bytes, "
            f"found {len(buf) - header}"
        )
    return np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _read_mnist_dir(path: Path) -> dict[str, np.ndarray]:
    found, missing = {}, []
    for key, name in _MNIST_FILES.items():
        candidates = [path / name, path / f"{name}.gz"]
        existing = [c for c in candidates if c.is_file()]
        if existing:
            found[key] = read_idx(existing[0])
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(f"MNIST directory {path} lacks {', '.join(missing)}; {_MNIST_LAYOUT}")
    return found


def _read_mnist_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        missing = [key for key in _MNIST_FILES if key not in npz.files]
        if missing:
            raise ValueError(f"MNIST file {path} lacks arrays {', '.join(missing)}; {_MNIST_LAYOUT}")
        return {key: npz[key] for key in _MNIST_FILES}


def _mnist_images(images: np.ndarray, labels: np.ndarray, path: Path, split: str) -> np.ndarray:
    """Check one split and return its images flattened and scaled to [0, 1] as float32."""
    if images.ndim < 2 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"MNIST data at {path} is malformed: {split} images {images.shape} and labels "
            f"{labels.shape} must be (n, height, width) and (n,)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"MNIST data at {path} is malformed: {split} labels must lie in 0..9")
    flat = images.reshape(len(images), -1)
    if np.issubdtype(flat.dtype, np.integer):
        return (flat / 255.0).astype(np.float32)
    if flat.size and (flat.min() < 0 or flat.max() > 1):
        raise ValueError(
            f"MNIST data at {path} is malformed: float {split} images must lie in [0, 1] "
            "(integer images are taken as 0..255)"
        )
    return flat.astype(np.float32)


def mnist(
    path: str | os.PathLike,
    *,
    n: int | None = None,
    seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Real MNIST (LeCun et al.) read from a local path; it is never downloaded.

    ``path`` is either a directory with the four original IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
    optionally ``.gz``) or an ``.npz`` file with arrays ``x_train, y_train, x_test, y_test`` (the
    Keras ``mnist.npz`` layout). Images are flattened (784 features) and scaled to [0, 1] before the
    optional standardisation with training statistics. The file's own train/test split is kept;
    ``n`` keeps a random subset of the training set chosen by ``seed``.
    """
    path = Path(path)
    if path.is_dir():
        raw, source = _read_mnist_dir(path), f"local MNIST IDX files in {path}"
    elif path.suffix == ".npz" and path.is_file():
        raw, source = _read_mnist_npz(path), f"local MNIST npz {path}"
    elif path.exists():
        raise ValueError(f"MNIST path {path} is neither a directory nor an .npz file; {_MNIST_LAYOUT}")
    else:
        raise FileNotFoundError(f"MNIST path {path} does not exist; {_MNIST_LAYOUT}")
    x_train = _mnist_images(raw["x_train"], raw["y_train"], path, "train")
    x_test = _mnist_images(raw["x_test"], raw["y_test"], path, "test")
    x_train, y_train = _subsample(x_train, raw["y_train"], n, seed)
    if standardize:
        x_train, x_test = _standardize(x_train, x_test)
    info = _classification_info(source, seed, standardize, 10)
    return Dataset(x_train, _as_targets(y_train, True), x_test, _as_targets(raw["y_test"], True),
                   name="mnist", info=info)


# --------------------------------------------------------------------------------------------------
# Synthetic teachers with a known true parameter
# --------------------------------------------------------------------------------------------------


def _teacher(name: str, x: np.ndarray, y: np.ndarray, seed: int, test_fraction: float, **info: Any) -> Dataset:
    arrays = split_standardize(x, y, test_fraction=test_fraction, seed=seed, standardize=False,
                               classification=False)
    info = {"task": "regression", "source": f"synthetic {name}", "seed": seed, "standardized": False,
            "test_fraction": test_fraction, **info}
    return Dataset(*arrays, name=name, info=info)


def _low_rank_layers(rng: np.random.Generator, widths: tuple[int, ...], rank: int) -> list[np.ndarray]:
    """Layer matrices (out x in) for widths (input, hidden..., output) whose product has ``rank``.

    The product is U V with Gaussian U (output x rank) and V (rank x input); V sits in the first
    layer's top rows, U in the last layer's left columns and hidden layers pass the first ``rank``
    units through unchanged.
    """
    u = rng.standard_normal((widths[-1], rank))
    v = rng.standard_normal((rank, widths[0]))
    if len(widths) == 2:
        return [u @ v]
    layers = [np.zeros((w_out, w_in)) for w_in, w_out in zip(widths[:-1], widths[1:])]
    layers[0][:rank] = v
    for layer in layers[1:-1]:
        layer[:rank, :rank] = np.eye(rank)
    layers[-1][:, :rank] = u
    return layers


def _product(layers: list[np.ndarray]) -> np.ndarray:
    return functools.reduce(lambda acc, layer: layer @ acc, layers[1:], layers[0])


def linear_teacher(
    n: int = 200,
    d: int = 3,
    *,
    noise: float = 0.5,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Dataset:
    """Synthetic linear regression: ``y = x @ w_true + noise * eps`` with x, w_true, eps ~ N(0, I).

    ``x`` is (n, d), ``y`` is (n,); ``info`` holds ``w_true`` and ``noise``. A regular model with d
    parameters: learning coefficient d / 2.
    """
    _check_int(n, "n")
    _check_int(d, "d")
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d)
    x = rng.standard_normal((n, d))
    y = x @ w + noise * rng.standard_normal(n)
    return _teacher("linear_teacher", x, y, seed, test_fraction, d=d, noise=noise, w_true=w.tolist())


def rrr_teacher(
    n: int = 1000,
    M: int = 3,
    H: int = 2,
    N: int = 3,
    rank: int = 1,
    *,
    noise: float = 1.0,
    seed: int = 0,
    test_fraction: float = 0.0,
) -> Dataset:
    """Synthetic reduced-rank regression (Aoyagi & Watanabe 2005): ``y = x A^T B^T + noise * eps``.

    Input ``x`` ~ N(0, I_M) is (n, M), output ``y`` is (n, N); the model has A (H x M) and B (N x H)
    and the true product B A has the given ``rank`` (0 <= rank <= min(M, H, N)). ``info`` holds M, H,
    N, rank, noise, the true ``product`` (N x M) and one true ``A`` and ``B``, as nested lists.
    """
    _check_int(n, "n")
    for arg, value in (("M", M), ("H", H), ("N", N)):
        _check_int(value, arg)
    _check_int(rank, "rank (at most min(M, H, N))", low=0, high=min(M, H, N))
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    a, b = _low_rank_layers(rng, (M, H, N), rank)
    product = b @ a
    x = rng.standard_normal((n, M))
    y = x @ product.T + noise * rng.standard_normal((n, N))
    return _teacher("rrr_teacher", x, y, seed, test_fraction, M=M, H=H, N=N, rank=rank, noise=noise,
                    product=product.tolist(), A=a.tolist(), B=b.tolist())


def dln_teacher(
    n: int = 1000,
    widths: tuple[int, ...] = (3, 4, 3),
    rank: int = 1,
    *,
    noise: float = 1.0,
    seed: int = 0,
    test_fraction: float = 0.0,
) -> Dataset:
    """Synthetic deep linear network teacher (Aoyagi 2024): ``y = x W^T + noise * eps``.

    ``widths`` = (input, hidden..., output); W = W_L ... W_1 is output x input with the given ``rank``
    (0 <= rank <= min(widths)). ``x`` ~ N(0, I) is (n, widths[0]), ``y`` is (n, widths[-1]).
    ``info`` holds widths, rank, noise, the true ``product`` W and one factorisation ``weights``
    (list of W_1..W_L), as nested lists.
    """
    _check_int(n, "n")
    widths = tuple(widths)
    if len(widths) < 2:
        raise ValueError(f"widths must list at least an input and an output width, got {widths!r}")
    for i, w in enumerate(widths):
        _check_int(w, f"widths[{i}]")
    _check_int(rank, "rank (at most min(widths))", low=0, high=min(widths))
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    layers = _low_rank_layers(rng, widths, rank)
    product = _product(layers)
    x = rng.standard_normal((n, widths[0]))
    y = x @ product.T + noise * rng.standard_normal((n, widths[-1]))
    return _teacher("dln_teacher", x, y, seed, test_fraction, widths=[int(w) for w in widths],
                    rank=rank, noise=noise, product=product.tolist(),
                    weights=[layer.tolist() for layer in layers])


def normal_crossing_teacher(
    n: int = 1000,
    k: tuple[int, ...] = (1, 2),
    *,
    w_true: tuple[float, ...] | None = None,
    noise: float = 1.0,
    seed: int = 0,
    test_fraction: float = 0.0,
) -> Dataset:
    """Synthetic normal-crossing teacher: ``y = x * prod_j w_true[j] ** k[j] + noise * eps``.

    Scalar input ``x`` ~ N(0, 1) is (n, 1), ``y`` is (n,). The model ``y = x prod_j w_j^{k_j}`` with
    the default ``w_true`` = zeros (the singular point) has K(w) proportional to prod_j w_j^{2 k_j}.
    ``k`` must be non-negative integers; ``info`` holds k, w_true and noise.
    """
    _check_int(n, "n")
    k = tuple(k)
    if not k:
        raise ValueError("k must be a non-empty sequence of non-negative integers, got ()")
    for j, kj in enumerate(k):
        _check_int(kj, f"k[{j}]", low=0)
    w = np.zeros(len(k)) if w_true is None else np.asarray(w_true, dtype=np.float64)
    if w.shape != (len(k),):
        raise ValueError(f"w_true must have one entry per exponent in k (length {len(k)}), got {w_true!r}")
    _check_noise(noise)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1))
    y = x[:, 0] * np.prod(w ** np.asarray(k)) + noise * rng.standard_normal(n)
    return _teacher("normal_crossing_teacher", x, y, seed, test_fraction, k=[int(kj) for kj in k],
                    w_true=w.tolist(), noise=noise)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., Dataset]] = {
    "moons": moons,
    "digits": digits,
    "mnist1d": mnist1d,
    "mnist": mnist,
    "linear_teacher": linear_teacher,
    "rrr_teacher": rrr_teacher,
    "dln_teacher": dln_teacher,
    "normal_crossing_teacher": normal_crossing_teacher,
}


def load(name: str, **options: Any) -> Dataset:
    """Load a data set by name; ``options`` go to its loader (``mnist`` needs ``path=``).

    Names: moons, digits, mnist1d, mnist, linear_teacher, rrr_teacher, dln_teacher,
    normal_crossing_teacher. All are offline; see each loader for its source.
    """
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; allowed names: {', '.join(LOADERS)}")
    return LOADERS[name](**options)
