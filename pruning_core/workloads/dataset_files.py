"""Reading dataset files safely: the data directory, CIFAR's pickled batches, MNIST's idx files.

Dataset files are untrusted (SECURITY.md): CIFAR's pickled batches go through an unpickler that
can build only dicts, lists, strings, ints and numpy arrays, never call other code; idx files are
parsed by hand (magic number, dimensions, exact size). A missing or broken file raises
``DataError`` naming the directory searched and the exact files expected.
"""

from __future__ import annotations

import gzip
import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import DataError

# --------------------------------------------------------------------------- the directory


def require_root(name: str, root: str | None, expected: str) -> Path:
    if root is None:
        raise DataError(
            f"{name}: no data directory given; set data.root to the directory holding {expected}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{name}: data.root {path} is not a directory; expected {expected} there")
    return path


def find_dir(root: Path, subdirs: Sequence[str], marker: str) -> Path:
    """The first of ``root/subdir`` (or ``root`` itself) that holds ``marker`` (or a .gz)."""
    for sub in (*subdirs, ""):
        d = root / sub if sub else root
        if (d / marker).is_file() or (d / f"{marker}.gz").is_file():
            return d
    return root / subdirs[0]  # nothing found: report the canonical location


def one_line(exc: BaseException) -> str:
    """Exception text without newlines: the CLI prints a DataError as exactly one line."""
    return " ".join(str(exc).split())

# --------------------------------------------------------------------------- CIFAR batches


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


def read_cifar_file(name: str, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
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
            f"{name}: malformed file {path} ({type(exc).__name__}: {one_line(exc)}); "
            f"expected a pickled dict with 'data' (N x 3072 uint8) and '{label_key}'"
        ) from exc
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
        raise DataError(
            f"{name}: malformed file {path}: data shape {data.shape}, {labels.size} labels; "
            "expected N x 3072 uint8 and N labels"
        )
    return data.reshape(-1, 3, 32, 32), labels

# --------------------------------------------------------------------------- idx files

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dims (N, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dim (N,)


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


def read_idx(name: str, d: Path, filename: str, magic: int) -> np.ndarray:
    plain, packed = d / filename, d / f"{filename}.gz"
    path = plain if plain.is_file() else packed
    try:
        raw = gzip.decompress(path.read_bytes()) if path == packed else path.read_bytes()
        return parse_idx(raw, magic)
    except (OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{name}: malformed idx file {path}: {one_line(exc)}") from exc
