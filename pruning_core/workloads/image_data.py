"""Image datasets read from a local copy: CIFAR-10/100, MNIST, Fashion-MNIST, an ImageFolder.

``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist`` read torchvision's on-disk layout from
``root`` (``data.root`` in a config) into memory; ``imagefolder`` reads an ImageNet-layout
directory lazily. Nothing is ever downloaded, and torchvision's md5 checks are skipped so a copy
made by any tool works. The files are read by ``dataset_files`` (safely: they are untrusted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..base.errors import DataError
from .bundle import DataBundle
from .data_registry import DATASETS, tensor_bundle
from .data_stats import CIFAR_STATS, IMAGENET_STATS, MNIST_STATS, normalise
from .dataset_files import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    find_dir,
    read_cifar_file,
    read_idx,
    require_root,
)

log = logging.getLogger(__name__)

# CIFAR ---------------------------------------------------------------------------------

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


def _load_cifar(name: str, root: str | None, normalize: bool) -> DataBundle:
    fmt = CIFAR_FORMATS[name]
    files = (*fmt.train_files, fmt.test_file)
    expected = f"{fmt.folder}/{{{', '.join(files)}}} ({fmt.title})"
    base = require_root(name, root, expected)
    d = find_dir(base, [fmt.folder], files[0])
    missing = [f for f in files if not (d / f).is_file()]
    if missing:
        raise DataError(
            f"{name}: expected {', '.join(files)} under {d} ({fmt.title}); "
            f"not found: {', '.join(missing)}"
        )
    train = [read_cifar_file(name, d / f, fmt.label_key) for f in fmt.train_files]
    x_test, y_test = read_cifar_file(name, d / fmt.test_file, fmt.label_key)
    x = torch.from_numpy(np.concatenate([a for a, _ in train]))  # (N, 3, 32, 32) uint8
    y = torch.from_numpy(np.concatenate([b for _, b in train]))
    xt = torch.from_numpy(x_test)
    if normalize:
        x, xt = (normalise(t, *CIFAR_STATS[name]) for t in (x, xt))
    else:
        x, xt = x.float() / 255.0, xt.float() / 255.0
    log.info("%s: read %d train / %d test images from %s", name, len(y), len(y_test), d)
    return tensor_bundle(name, x, y, xt, torch.from_numpy(y_test), fmt.num_classes)


@DATASETS.register("cifar10")
def load_cifar10(root: str | None = None, seed: int = 0, normalize: bool = True) -> DataBundle:
    """CIFAR-10 from ``root`` (or ``root/cifar-10-batches-py``); per-channel standardised."""
    return _load_cifar("cifar10", root, normalize)


@DATASETS.register("cifar100")
def load_cifar100(root: str | None = None, seed: int = 0, normalize: bool = True) -> DataBundle:
    """CIFAR-100 (fine labels) from ``root`` (or ``root/cifar-100-python``)."""
    return _load_cifar("cifar100", root, normalize)


# MNIST-style idx files ------------------------------------------------------------------

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def _load_mnist_like(name: str, root: str | None, normalize: bool) -> DataBundle:
    folder = MNIST_FOLDERS[name]
    expected = f"{folder}/raw/{{{', '.join(MNIST_FILES)}}} (plain or .gz; torchvision's layout)"
    base = require_root(name, root, expected)
    d = find_dir(base, [f"{folder}/raw", "raw"], MNIST_FILES[0])
    missing = [f for f in MNIST_FILES if not ((d / f).is_file() or (d / f"{f}.gz").is_file())]
    if missing:
        raise DataError(
            f"{name}: expected {', '.join(MNIST_FILES)} (plain or .gz) under {d} "
            f"(torchvision's {folder} raw layout); not found: {', '.join(missing)}"
        )
    x, y, xt, yt = (
        read_idx(name, d, f, IDX_IMAGES_MAGIC if "images" in f else IDX_LABELS_MAGIC)
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
        normalise(torch.from_numpy(a.copy()).unsqueeze(1), [mean], [std]) for a in (x, xt)
    )
    log.info("%s: read %d train / %d test images from %s", name, len(y), len(yt), d)
    y_t, yt_t = torch.from_numpy(y.copy()), torch.from_numpy(yt.copy())
    return tensor_bundle(name, x_t, y_t, xt_t, yt_t, 10)


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

_IMAGEFOLDER_SPLITS = ("train", "val")


def imagefolder_dirs(root: str | None) -> tuple[Path, Path]:
    base = require_root("imagefolder", root, "train/<class>/*.jpg and val/<class>/*.jpg "
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

    train_dir, val_dir = imagefolder_dirs(root)
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


