"""Dataset registry: every loader returns a ``DataBundle`` of in-memory ``TensorDataset``s.

Tensors rather than file-backed datasets: all supported datasets fit in memory, indexing is
fast and no worker processes are needed (workers and Ray actors do not mix well).

- ``digits``, ``mnist1d``, ``synthetic`` are generated or bundled: no download, no root.
- ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist`` read a local copy in torchvision's
  on-disk layout from ``root`` (``data.root`` in a config). Nothing is ever downloaded, and
  torchvision's md5 checks are skipped so a copy made by any tool works. A missing or broken
  file raises ``DataError`` naming the directory searched and the exact files expected.
- Dataset files are untrusted (SECURITY.md): CIFAR's pickled batches go through an unpickler
  that can build only dicts, lists, strings, ints and numpy arrays, never call other code.

Inputs are float32, labels int64. No augmentation is applied here.
"""

from __future__ import annotations

import functools
import gzip
import inspect
import json
import logging
import math
import pickle
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..base.errors import ConfigError, DataError
from ..base.registry import Registry
from ..base.suggest import with_hint
from .bundle import DataBundle
from .factories import is_import_path, load_data

log = logging.getLogger(__name__)


DatasetLoader = Callable[..., DataBundle]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


def _bundle(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
) -> DataBundle:
    """Wrap tensors, enforcing the float32 inputs / int64 labels convention."""
    return DataBundle(
        train=TensorDataset(x_train.float(), y_train.long()),
        test=TensorDataset(x_test.float(), y_test.long()),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_classes=int(num_classes),
        name=name,
    )


# --------------------------------------------------------------------------- generated


@DATASETS.register("digits")
def load_digits(root: str | None = None, seed: int = 0, test_size: int = 360) -> DataBundle:
    """scikit-learn's bundled 8x8 digits (1,797 images) as (1, 8, 8) in [0, 1].

    The split comes from a permutation drawn from a local generator seeded by ``seed``, so it
    is reproducible and leaves numpy's global state alone; 360 test images by default.
    """
    from sklearn.datasets import load_digits as sk_load_digits  # deferred: sklearn is slow

    digits = sk_load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(digits.target.astype(np.int64))  # (N,)
    if not 0 < test_size < len(y):
        raise ConfigError(f"digits: test_size={test_size} must be in 1..{len(y) - 1}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    test_idx, train_idx = perm[:test_size], perm[test_size:]
    return _bundle("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10)


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate the canonical MNIST-1D split once per process (~1.5 s)."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds numpy's and Python's *global* generators; put them back afterwards
    # so loading data never changes the randomness of the caller.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in arrays:
        a.flags.writeable = False  # cached: callers must get copies, never mutate these
    return arrays


@DATASETS.register("mnist1d")
def load_mnist1d(root: str | None = None, seed: int = 0) -> DataBundle:
    """MNIST-1D (Greydanus 2020): 4,000 train / 1,000 test sequences as (1, 40).

    Always the canonical dataset (generator seed 42, already shuffled), so results compare
    with the published baselines; ``seed`` does not change it.
    """
    x, y, x_test, y_test = (torch.tensor(a) for a in _mnist1d_arrays())  # copies
    return _bundle("mnist1d", x.unsqueeze(1), y, x_test.unsqueeze(1), y_test, 10)  # (N, 1, 40)


SYNTHETIC_LATENT_DIM = 16  # inputs lie near a 16-dim subspace: learnable from ~1k examples
SYNTHETIC_NOISE = 0.5  # isotropic noise around that subspace, relative to unit signal


@DATASETS.register("synthetic")
def load_synthetic(
    root: str | None = None,
    seed: int = 0,
    num_train: int = 1024,
    num_test: int = 256,
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
) -> DataBundle:
    """Gaussian inputs labelled by a fixed random linear teacher (benchmarks and tests only).

    A teacher on raw 3,072-dim noise cannot be learned from 1,024 examples, so the inputs are
    Gaussian latents ``z`` (16 dims) mapped through a fixed random matrix, plus Gaussian noise;
    labels are ``argmax(z @ T)``. Everything comes from a local generator seeded by ``seed``.
    """
    shape = tuple(int(d) for d in shape)
    if num_train < 1 or num_test < 1 or num_classes < 2 or not shape or min(shape) < 1:
        raise ConfigError(
            "synthetic: need num_train >= 1, num_test >= 1, num_classes >= 2 and a shape of "
            f"positive sizes; got {num_train}, {num_test}, {num_classes}, {shape}"
        )
    gen = torch.Generator().manual_seed(seed)
    n, k = num_train + num_test, SYNTHETIC_LATENT_DIM
    z = torch.randn(n, k, generator=gen)  # (N, k)
    mixing = torch.randn(k, math.prod(shape), generator=gen) / k**0.5  # (k, D): unit variance
    noise = SYNTHETIC_NOISE * torch.randn(n, math.prod(shape), generator=gen)  # (N, D)
    x = (z @ mixing + noise).view(n, *shape)  # (N, *shape)
    teacher = torch.randn(k, num_classes, generator=gen)  # (k, K)
    y = (z @ teacher).argmax(dim=1)  # (N,)
    return _bundle(
        "synthetic", x[:num_train], y[:num_train], x[num_train:], y[num_train:], num_classes
    )


# --------------------------------------------------------------------------- local files


def _require_root(name: str, root: str | None, expected: str) -> Path:
    if root is None:
        raise DataError(
            f"{name}: no data directory given; set data.root to the directory holding {expected}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{name}: data.root {path} is not a directory; expected {expected} there")
    return path


def _find_dir(root: Path, subdirs: Sequence[str], marker: str) -> Path:
    """The first of ``root/subdir`` (or ``root`` itself) that holds ``marker`` (or a .gz)."""
    for sub in (*subdirs, ""):
        d = root / sub if sub else root
        if (d / marker).is_file() or (d / f"{marker}.gz").is_file():
            return d
    return root / subdirs[0]  # nothing found: report the canonical location


def _one_line(exc: BaseException) -> str:
    """Exception text without newlines: the CLI prints a DataError as exactly one line."""
    return " ".join(str(exc).split())


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, C, H, W) uint8 -> float32 in [0, 1], then per-channel standardisation."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


# CIFAR ---------------------------------------------------------------------------------

CIFAR_STATS = {  # per-channel mean / std of the training images
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class _CifarFormat:
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: str
    num_classes: int
    title: str


CIFAR_FORMATS = {
    "cifar10": _CifarFormat(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "labels",
        10,
        "torchvision's CIFAR-10 python format",
    ),
    "cifar100": _CifarFormat(
        "cifar-100-python", ("train",), "test", "fine_labels", 100,
        "torchvision's CIFAR-100 python format",
    ),
}  # fmt: skip


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR python batches that can build nothing but their contents.

    A CIFAR batch is a pickled dict of bytes/str keys, a uint8 numpy array, lists of ints and
    of bytes/str. Plain containers and strings need no global; numpy arrays need the few below
    (``numpy.core...`` in the Python 2 era release, ``numpy._core...`` from numpy 2; protocol 5
    uses ``_frombuffer``; protocols 0-2 written by Python 3 spell bytes as ``_codecs.encode``).
    Any other global (``os.system``, ``builtins.exec``, ``subprocess.Popen``...) is refused:
    a dataset directory is untrusted input and must never run code (see SECURITY.md).
    """

    def __init__(self, file: Any, name: str, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._name, self._path = name, path

    def find_class(self, module: str, name: str) -> Any:
        allowed = _CIFAR_GLOBALS.get((module, name))
        if allowed is None:
            raise DataError(
                f"{self._name}: refusing {self._path}: it asks to load {module}.{name}, which "
                "a CIFAR batch never contains (only dicts, lists, strings, ints and numpy "
                "arrays are read from dataset files); replace it with a genuine CIFAR copy"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._name}: refusing {self._path}: persistent ids are not CIFAR data")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocols 0-2: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _cifar_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            table[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


_CIFAR_GLOBALS = _cifar_globals()


def _read_cifar_file(name: str, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR batch -> (N, 3, 32, 32) uint8 images and (N,) labels.

    CIFAR's python release *is* a pickle (Python 2 era; ``encoding="bytes"`` keeps its keys
    raw), read with :class:`_CifarUnpickler` so a crafted file cannot run code.
    """
    try:
        with path.open("rb") as f:
            d = _CifarUnpickler(f, name, path).load()
        if not isinstance(d, dict):
            raise TypeError(f"top level is a {type(d).__name__}, not a dict")
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        if not isinstance(d.get("data"), np.ndarray | list):
            raise TypeError(f"'data' is a {type(d.get('data')).__name__}")
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d[label_key], dtype=np.int64)
    except DataError:
        raise
    except Exception as exc:  # truncated, not a pickle, missing keys: all mean a bad file
        raise DataError(
            f"{name}: malformed file {path} ({type(exc).__name__}: {_one_line(exc)}); "
            f"expected a pickled dict with 'data' (N x 3072 uint8) and '{label_key}'"
        ) from exc
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
        raise DataError(
            f"{name}: malformed file {path}: data shape {data.shape}, {labels.size} labels; "
            "expected N x 3072 uint8 and N labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(name: str, root: str | None, normalize: bool) -> DataBundle:
    fmt = CIFAR_FORMATS[name]
    files = (*fmt.train_files, fmt.test_file)
    expected = f"{fmt.folder}/{{{', '.join(files)}}} ({fmt.title})"
    base = _require_root(name, root, expected)
    d = _find_dir(base, [fmt.folder], files[0])
    missing = [f for f in files if not (d / f).is_file()]
    if missing:
        raise DataError(
            f"{name}: expected {', '.join(files)} under {d} ({fmt.title}); "
            f"not found: {', '.join(missing)}"
        )
    train = [_read_cifar_file(name, d / f, fmt.label_key) for f in fmt.train_files]
    x_test, y_test = _read_cifar_file(name, d / fmt.test_file, fmt.label_key)
    x = torch.from_numpy(np.concatenate([a for a, _ in train]))  # (N, 3, 32, 32) uint8
    y = torch.from_numpy(np.concatenate([b for _, b in train]))
    xt = torch.from_numpy(x_test)
    if normalize:
        x, xt = (_normalise(t, *CIFAR_STATS[name]) for t in (x, xt))
    else:
        x, xt = x.float() / 255.0, xt.float() / 255.0
    log.info("%s: read %d train / %d test images from %s", name, len(y), len(y_test), d)
    return _bundle(name, x, y, xt, torch.from_numpy(y_test), fmt.num_classes)


@DATASETS.register("cifar10")
def load_cifar10(root: str | None = None, seed: int = 0, normalize: bool = True) -> DataBundle:
    """CIFAR-10 from ``root`` (or ``root/cifar-10-batches-py``); per-channel standardised."""
    return _load_cifar("cifar10", root, normalize)


@DATASETS.register("cifar100")
def load_cifar100(root: str | None = None, seed: int = 0, normalize: bool = True) -> DataBundle:
    """CIFAR-100 (fine labels) from ``root`` (or ``root/cifar-100-python``)."""
    return _load_cifar("cifar100", root, normalize)


# MNIST-style idx files ------------------------------------------------------------------

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dims (N, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dim (N,)
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def parse_idx(raw: bytes, magic: int) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format): big-endian magic and dims, then uint8 data."""
    if len(raw) < 4:
        raise ValueError(f"file too short ({len(raw)} bytes)")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise ValueError(f"magic number {got}, expected {magic}")
    ndim = magic & 0xFF  # the low byte of the magic number counts the dimensions
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError("header truncated")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) - header != math.prod(dims):
        raise ValueError(f"{len(raw) - header} data bytes for dims {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx(name: str, d: Path, filename: str, magic: int) -> np.ndarray:
    plain, packed = d / filename, d / f"{filename}.gz"
    path = plain if plain.is_file() else packed
    try:
        raw = gzip.decompress(path.read_bytes()) if path == packed else path.read_bytes()
        return parse_idx(raw, magic)
    except (OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{name}: malformed idx file {path}: {_one_line(exc)}") from exc


def _load_mnist_like(name: str, root: str | None, normalize: bool) -> DataBundle:
    folder = MNIST_FOLDERS[name]
    expected = f"{folder}/raw/{{{', '.join(MNIST_FILES)}}} (plain or .gz; torchvision's layout)"
    base = _require_root(name, root, expected)
    d = _find_dir(base, [f"{folder}/raw", "raw"], MNIST_FILES[0])
    missing = [f for f in MNIST_FILES if not ((d / f).is_file() or (d / f"{f}.gz").is_file())]
    if missing:
        raise DataError(
            f"{name}: expected {', '.join(MNIST_FILES)} (plain or .gz) under {d} "
            f"(torchvision's {folder} raw layout); not found: {', '.join(missing)}"
        )
    x, y, xt, yt = (
        _read_idx(name, d, f, IDX_IMAGES_MAGIC if "images" in f else IDX_LABELS_MAGIC)
        for f in MNIST_FILES
    )
    for images, labels, split in ((x, y, "train"), (xt, yt, "t10k")):
        if len(images) != len(labels):
            raise DataError(
                f"{name}: {split} images and labels differ in count ({len(images)} vs "
                f"{len(labels)}) under {d}"
            )
    mean, std = MNIST_STATS[name] if normalize else (0.0, 1.0)
    x_t, xt_t = (
        _normalise(torch.from_numpy(a.copy()).unsqueeze(1), [mean], [std]) for a in (x, xt)
    )
    log.info("%s: read %d train / %d test images from %s", name, len(y), len(yt), d)
    return _bundle(name, x_t, torch.from_numpy(y.copy()), xt_t, torch.from_numpy(yt.copy()), 10)


@DATASETS.register("mnist")
def load_mnist(root: str | None = None, seed: int = 0, normalize: bool = True) -> DataBundle:
    """MNIST as (1, 28, 28) from ``root/MNIST/raw`` (or the raw folder itself)."""
    return _load_mnist_like("mnist", root, normalize)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(
    root: str | None = None, seed: int = 0, normalize: bool = True
) -> DataBundle:
    """Fashion-MNIST as (1, 28, 28) from ``root/FashionMNIST/raw`` (or the raw folder)."""
    return _load_mnist_like("fashion_mnist", root, normalize)


# --------------------------------------------------------------------------- ImageNet layout

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_IMAGEFOLDER_SPLITS = ("train", "val")


def _imagefolder_dirs(root: str | None) -> tuple[Path, Path]:
    base = _require_root("imagefolder", root, "train/<class>/*.jpg and val/<class>/*.jpg "
                         "(torchvision ImageFolder layout)")
    dirs = tuple(base / s for s in _IMAGEFOLDER_SPLITS)
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise DataError(f"imagefolder: expected class folders under {', '.join(missing)} "
                        "(train/<class>/... and val/<class>/...)")
    return dirs  # type: ignore[return-value]


@DATASETS.register("imagefolder")
def load_imagefolder(root: str | None = None, seed: int = 0, size: int = 224,
                     resize: int = 256, augment: bool = True,
                     normalize: bool = True) -> DataBundle:
    """An ImageNet-layout directory, read lazily (``torchvision.datasets.ImageFolder``):
    ``root/train/<class>/*`` and ``root/val/<class>/*``.

    Test images: resize the short side to ``resize`` then centre-crop ``size``. Training images
    (``augment``, the ImageNet recipe): ``RandomResizedCrop(size)`` + horizontal flip; without
    it, the test transform. Normalised with ImageNet's per-channel statistics. Images are
    decoded on the fly in the training process (no worker processes): fine for small folders;
    large ones belong on a machine with fast storage.
    """
    from torchvision import datasets
    from torchvision.transforms import v2

    train_dir, val_dir = _imagefolder_dirs(root)
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if normalize:
        tail.append(v2.Normalize(*IMAGENET_STATS))
    test_tf = v2.Compose([v2.Resize(resize), v2.CenterCrop(size), *tail])
    train_tf = v2.Compose([v2.RandomResizedCrop(size), v2.RandomHorizontalFlip(), *tail]) \
        if augment else test_tf
    try:
        train = datasets.ImageFolder(str(train_dir), transform=train_tf)
        test = datasets.ImageFolder(str(val_dir), transform=test_tf)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"imagefolder: {exc}") from None
    if train.classes != test.classes:
        raise DataError(f"imagefolder: train/ has classes {train.classes[:5]}… but val/ has "
                        f"{test.classes[:5]}…; both need the same class folders")
    log.info("imagefolder: %d train / %d val images, %d classes under %s", len(train),
             len(test), len(train.classes), root)
    return DataBundle(train=train, test=test, input_shape=(3, size, size),
                      num_classes=len(train.classes), name="imagefolder")


# --------------------------------------------------------------------------- entry point


def _check_options(name: str, loader: DatasetLoader, options: dict[str, Any]) -> None:
    """Name the unknown option and the valid ones, instead of a bare TypeError."""
    valid = [p for p in inspect.signature(loader).parameters if p not in ("root", "seed")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(with_hint(
            f"dataset {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(valid) or '(none)'}", unknown[0], valid))


def _take(ds: Dataset, limit: int | None, what: str) -> Dataset:
    """The first ``limit`` examples; tensors are sliced (views), anything else is a Subset."""
    if limit is None:
        return ds
    if limit < 1:
        raise ConfigError(f"data.{what} must be >= 1 (or unset for all); got {limit}")
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[:limit] for t in ds.tensors))
    return Subset(ds, range(min(limit, len(ds))))  # type: ignore[arg-type]


def load_dataset(
    name: str,
    root: str | None = None,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    **options: Any,
) -> DataBundle:
    """Load a registered dataset, or the user's data factory named by import path
    (``"my_pkg.data:load"``, see ``factories.py``); limits keep the first N examples."""
    if is_import_path(name):
        bundle = load_data(name, seed=seed, root=root, options=options)
    else:
        loader = DATASETS.get(name)
        _check_options(name, loader, options)
        bundle = loader(root=root, seed=seed, **options)
    return DataBundle(
        train=_take(bundle.train, train_limit, "train_limit"),
        test=_take(bundle.test, test_limit, "test_limit"),
        input_shape=bundle.input_shape,
        num_classes=bundle.num_classes,
        name=bundle.name,
    )


def with_label_noise(bundle: DataBundle, fraction: float, seed: int) -> DataBundle:
    """``data.label_noise``: ``round(fraction * n)`` training examples, chosen by a generator
    seeded with ``seed``, get a label drawn uniformly from the *other* classes (Zhang et al.
    2017, "Understanding deep learning requires rethinking generalization": the memorisation
    test of overfitting). The test split is untouched."""
    n = len(bundle.train)
    gen = torch.Generator().manual_seed(seed + 7919)  # apart from the other seeded streams
    chosen = torch.randperm(n, generator=gen)[: round(fraction * n)]
    shift = torch.randint(1, bundle.num_classes, (len(chosen),), generator=gen)
    if isinstance(bundle.train, TensorDataset):
        x, y = bundle.train.tensors[0], bundle.train.tensors[1].clone()
        y[chosen] = (y[chosen] + shift) % bundle.num_classes
        train: Dataset = TensorDataset(x, y)
    else:  # the user's dataset: relabelled on access, never materialised
        train = _Relabelled(bundle.train, dict(zip(chosen.tolist(), shift.tolist(),
                                                   strict=True)), bundle.num_classes)
    return DataBundle(train=train, test=bundle.test, input_shape=bundle.input_shape,
                      num_classes=bundle.num_classes, name=bundle.name)


class _Relabelled(Dataset):  # type: ignore[type-arg]
    """``(x, (y + shift) % classes)`` for the chosen indices, ``(x, y)`` elsewhere."""

    def __init__(self, base: Dataset, shift: dict[int, int], classes: int) -> None:  # type: ignore[type-arg]
        self.base, self.shift, self.classes = base, shift, classes

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        x, y = self.base[i]
        return (x, (int(y) + self.shift[i]) % self.classes) if i in self.shift else (x, y)


#: (input shape, classes) of datasets whose shape is fixed: known without reading any file
_SPECS: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist1d": ((1, 40), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
}


def dataset_spec(name: str, root: str | None = None, seed: int = 0,
                 **options: Any) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` without loading data (e.g. to list a model's layers on a
    laptop that lacks the dataset directory). A user's data factory is called once per
    process and arguments to learn them (``_factory_spec``)."""
    if is_import_path(name):
        return _factory_spec(name, root, seed, json.dumps(options, sort_keys=True, default=str))
    DATASETS.get(name)  # unknown name -> ConfigError listing the valid ones
    if name == "imagefolder":  # classes from the folder names: no image is read
        train_dir, _ = _imagefolder_dirs(root)
        size = int(options.get("size", 224))
        return (3, size, size), sum(1 for d in train_dir.iterdir() if d.is_dir())
    if name == "synthetic":
        shape = tuple(int(d) for d in options.get("shape", (3, 32, 32)))
        return shape, int(options.get("num_classes", 10))
    if name in _SPEC_FNS:
        return _SPEC_FNS[name](**options)
    return _SPECS[name]


def dataset_names() -> list[str]:
    return DATASETS.names()


@functools.lru_cache(maxsize=16)
def _factory_spec(name: str, root: str | None, seed: int,
                  options_json: str) -> tuple[tuple[int, ...], int]:
    bundle = load_data(name, seed=seed, root=root, options=json.loads(options_json))
    return bundle.input_shape, bundle.num_classes


def black_pixel(name: str, **options: Any) -> tuple[float, ...] | None:
    """The normalised value of a black pixel per channel (what torchvision's RandomCrop pads
    with before normalising), or None where inputs are not normalised images."""
    if not options.get("normalize", True):
        return None
    if name in CIFAR_STATS:
        mean, std = CIFAR_STATS[name]
        return tuple(-m / s for m, s in zip(mean, std, strict=True))
    if name in MNIST_STATS:
        mean, std = MNIST_STATS[name]
        return (-mean / std,)
    return None


# --------------------------------------------------------------------------- text
# (a byte-level LM corpus from the Python standard library; see text_data.py)

from .text_data import load_stdlib_text, stdlib_text_spec  # noqa: E402

DATASETS.add("stdlib_text", load_stdlib_text)
#: datasets whose shape follows their options, known without reading a file
_SPEC_FNS: dict[str, Callable[..., tuple[tuple[int, ...], int]]] = {
    "stdlib_text": stdlib_text_spec,
}
