"""``data.label_noise``: a bundle whose training labels are partly replaced (Zhang et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from .bundle import DataBundle


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

