import numpy as np
import pytest
import torch
from PIL import Image

from pruning_core.base.errors import DataError
from pruning_core.trials.experiment import run
from pruning_core.trials.registries import load_trial_config
from pruning_core.workloads.data import dataset_spec, load_dataset


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for cls, level in (("cat", 40), ("dog", 200)):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(level, 20, (40, 48, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return tmp_path


def test_imagenet_layout_reads_resizes_and_crops(folder):
    b = load_dataset("imagefolder", root=str(folder), size=16, resize=20)
    assert (len(b.train), len(b.test), b.num_classes, b.input_shape) == (12, 6, 2, (3, 16, 16))
    x, y = b.test[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 0
    # dark "cat" images normalise below zero, bright "dog" ones above (ImageNet statistics)
    assert b.test[0][0].mean() < 0 < b.test[5][0].mean()
    torch.manual_seed(0)
    a1 = b.train[0][0]
    torch.manual_seed(1)
    assert not torch.equal(a1, b.train[0][0])  # random resized crops + flips on train
    assert dataset_spec("imagefolder", root=str(folder), size=16) == ((3, 16, 16), 2)


def test_a_trial_trains_on_an_image_folder(folder):
    cfg = load_trial_config({
        "model": {"name": "lenet5"},
        "data": {"name": "imagefolder", "root": str(folder), "batch_size": 4,
                 "options": {"size": 16, "resize": 20}},
        "train": {"epochs": 1, "optimizer": "sgd", "lr": 0.01},
        "prune": {"criterion": "snip", "sparsity": 0.5}})
    r = run(cfg)
    assert r.status == "ok" and abs(r.sparsity - 0.5) < 1e-2


def test_missing_split_names_the_layout(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"^imagefolder: expected class folders under .*val"):
        load_dataset("imagefolder", root=str(tmp_path))
