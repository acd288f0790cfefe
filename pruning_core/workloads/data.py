"""Dataset registry and loading API: every loader returns a ``DataBundle`` of datasets.

Tensors rather than file-backed datasets: all built-in datasets but ``imagefolder`` fit in
memory, indexing is fast and no worker processes are needed (workers and Ray actors do not mix
well). The datasets live in their own modules and register themselves on import; this module
imports them all, so ``DATASETS`` is complete wherever ``pruning_core.workloads.data`` is:

- ``generated_data``: ``digits``, ``mnist1d``, ``synthetic`` (generated or bundled: no root);
- ``image_data``: ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``, ``imagefolder`` (a
  local copy under ``root``, read by ``dataset_files``: dataset files are untrusted, SECURITY.md);
- ``text_data``: ``stdlib_text``;
- ``data_stats``: normalisation statistics; ``label_noise``: ``data.label_noise``.

Inputs are float32, labels int64. No augmentation is applied here. Every name these modules
export is importable from here too.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset, Subset, TensorDataset

from ..base.errors import ConfigError
from ..base.suggest import with_hint
from .bundle import DataBundle
from .data_registry import DATASETS, DatasetLoader, tensor_bundle  # noqa: F401
from .data_stats import CIFAR_STATS, IMAGENET_STATS, MNIST_STATS, black_pixel, normalise  # noqa: F401
from .dataset_files import (  # noqa: F401
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    _CifarUnpickler,
    parse_idx,
    read_cifar_file,
    read_idx,
)
from .factories import is_import_path, load_data
from .generated_data import (  # noqa: F401
    SYNTHETIC_LATENT_DIM,
    SYNTHETIC_NOISE,
    load_digits,
    load_mnist1d,
    load_synthetic,
)
from .image_data import (  # noqa: F401
    CIFAR_FORMATS,
    MNIST_FILES,
    MNIST_FOLDERS,
    imagefolder_dirs,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_imagefolder,
    load_mnist,
)
from .label_noise import _Relabelled, with_label_noise  # noqa: F401
from .text_data import load_stdlib_text, stdlib_text_spec

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
        train_dir, _ = imagefolder_dirs(root)
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


# --------------------------------------------------------------------------- text
# (a byte-level LM corpus from the Python standard library; see text_data.py)

DATASETS.add("stdlib_text", load_stdlib_text)
#: datasets whose shape follows their options, known without reading a file
_SPEC_FNS: dict[str, Callable[..., tuple[tuple[int, ...], int]]] = {
    "stdlib_text": stdlib_text_spec,
}
