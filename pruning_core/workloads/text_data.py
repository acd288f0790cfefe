"""``stdlib_text``: a real text corpus on every machine with Python, downloaded from nowhere.

The corpus is the Python standard library's own source code (``sysconfig.get_paths()["stdlib"]``
of the running interpreter), read as **bytes**: the vocabulary is the 256 byte values (no
tokenizer to ship or train; UTF-8 text stays exact). Files are split between train and test
**by file** (no file contributes to both), each split is the concatenation of its files in the
listed order, and it is cut into windows of ``block_size + 1`` bytes taken every ``block_size``
bytes: ``x = w[:-1]``, ``y = w[1:]``, so every byte but the first of a split is a target once.

``corpus`` picks the files:

- ``small`` (default): 10 train modules (~133 kB on CPython 3.11), 2 test modules (~20 kB);
  an epoch of ``gpt_tiny`` takes seconds on a laptop CPU;
- ``medium``: 30 train modules, 5 test modules (~740 kB / ~100 kB on 3.11);
- ``all``: every top-level ``*.py`` of the directory, sorted by name; every 10th file (the
  10th, 20th, ...) is a test file.

**Caveat**: the text is whatever the running Python ships, so it differs across Python versions
(and a distribution that strips sources has none: a missing file is a ``DataError`` naming it).
:func:`corpus_info` gives the Python version, the files and a SHA-256 of their contents; results
compare only between runs with the same hash. ``data.root`` replaces the stdlib directory by any
directory of ``.py`` files (e.g. a frozen copy, to pin the corpus across Python versions).
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..base.errors import ConfigError, DataError
from .bundle import DataBundle

log = logging.getLogger(__name__)

VOCAB = 256  # byte-level

#: (train files, test files) of the fixed corpora; pure-Python modules present from 3.8 to 3.13
CORPORA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "small": (
        ("abc.py", "bisect.py", "calendar.py", "copy.py", "csv.py", "fnmatch.py", "heapq.py",
         "shlex.py", "string.py", "textwrap.py"),
        ("glob.py", "queue.py"),
    ),
    "medium": (
        ("abc.py", "argparse.py", "base64.py", "bisect.py", "calendar.py", "codecs.py",
         "colorsys.py", "configparser.py", "contextlib.py", "copy.py", "csv.py",
         "dataclasses.py", "difflib.py", "fnmatch.py", "fractions.py", "functools.py",
         "getopt.py", "gettext.py", "heapq.py", "hmac.py", "linecache.py", "numbers.py",
         "operator.py", "pprint.py", "random.py", "sched.py", "shlex.py", "string.py",
         "textwrap.py", "tokenize.py"),
        ("glob.py", "queue.py", "statistics.py", "timeit.py", "weakref.py"),
    ),
}
ALL_TEST_EVERY = 10  # corpus "all": the 10th, 20th, ... file (sorted by name) is a test file


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def corpus_files(corpus: str, root: str | None = None) -> tuple[list[Path], list[Path]]:
    """(train files, test files) of ``corpus`` under ``root`` (default: the stdlib)."""
    base = Path(root).expanduser() if root else stdlib_dir()
    if not base.is_dir():
        raise DataError(f"stdlib_text: {base} is not a directory (data.root: a directory of "
                        ".py files, or unset for the Python standard library)")
    if corpus == "all":
        files = sorted(p for p in base.glob("*.py") if p.is_file())
        if len(files) < ALL_TEST_EVERY:
            raise DataError(f"stdlib_text: corpus 'all' needs >= {ALL_TEST_EVERY} .py files "
                            f"in {base}; found {len(files)}")
        test = [p for i, p in enumerate(files, 1) if i % ALL_TEST_EVERY == 0]
        return [p for p in files if p not in test], test
    if corpus not in CORPORA:
        raise ConfigError(f"data.options.corpus: unknown corpus {corpus!r}; valid: "
                          f"{', '.join([*CORPORA, 'all'])}")
    train, test = ([base / f for f in names] for names in CORPORA[corpus])
    missing = [p.name for p in (*train, *test) if not p.is_file()]
    if missing:
        raise DataError(f"stdlib_text: {', '.join(missing)} not found in {base} (this Python "
                        "ships no source for them); set data.root to a directory holding them")
    return train, test


def _read(files: list[Path]) -> bytes:
    return b"".join(p.read_bytes() for p in files)


def corpus_info(corpus: str = "small", root: str | None = None) -> dict[str, Any]:
    """What the corpus is on this machine: Python version, directory, files, sizes, and a
    SHA-256 over every file's name and bytes (train files, then test files, in order)."""
    train, test = corpus_files(corpus, root)
    digest = hashlib.sha256()
    for p in (*train, *test):
        digest.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return {"python": platform.python_version(), "directory": str(train[0].parent),
            "corpus": corpus, "train_files": [p.name for p in train],
            "test_files": [p.name for p in test], "train_bytes": len(_read(train)),
            "test_bytes": len(_read(test)), "sha256": digest.hexdigest()}


def windows(data: bytes, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of shape (N, block_size): windows of ``block_size + 1`` bytes every
    ``block_size`` bytes, ``x`` the first ``block_size`` of each, ``y`` the last."""
    tokens = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).astype(np.int64))
    n = (len(tokens) - 1) // block_size
    if n < 1:
        raise DataError(f"stdlib_text: {len(tokens)} bytes cannot fill one window of "
                        f"{block_size + 1}; lower data.options.block_size")
    starts = torch.arange(n) * block_size
    w = tokens[starts[:, None] + torch.arange(block_size + 1)]  # (N, block_size + 1)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def check_block_size(block_size: int) -> int:
    if block_size < 1:
        raise ConfigError(f"data.options.block_size: {block_size} must be >= 1 (e.g. 64)")
    return int(block_size)


def load_stdlib_text(root: str | None = None, seed: int = 0, corpus: str = "small",
                     block_size: int = 64) -> DataBundle:
    """Byte-level language modelling on the stdlib's sources (module doc). ``seed`` is unused:
    the corpus and its split are fixed by ``corpus`` (and the Python version)."""
    block_size = check_block_size(block_size)
    train, test = corpus_files(corpus, root)
    x, y = windows(_read(train), block_size)
    xt, yt = windows(_read(test), block_size)
    log.info("stdlib_text %s: %d train / %d test windows of %d bytes from %s (Python %s)",
             corpus, len(x), len(xt), block_size, train[0].parent, platform.python_version())
    return DataBundle(train=TensorDataset(x, y), test=TensorDataset(xt, yt),
                      input_shape=(block_size,), num_classes=VOCAB, name="stdlib_text")


def stdlib_text_spec(block_size: int = 64, **_: Any) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` without reading a file."""
    return (check_block_size(block_size),), VOCAB


def unigram_perplexity(bundle: DataBundle) -> float:
    """The baseline an LM must beat: exp of the test cross-entropy of the training split's
    byte frequencies (add-one smoothed), over the same targets the model is scored on."""
    y_train = bundle.train.tensors[1].flatten()  # type: ignore[attr-defined]
    y_test = bundle.test.tensors[1].flatten()  # type: ignore[attr-defined]
    counts = torch.bincount(y_train, minlength=VOCAB).double() + 1.0
    logp = (counts / counts.sum()).log()
    return math.exp(-float(logp[y_test].mean()))
