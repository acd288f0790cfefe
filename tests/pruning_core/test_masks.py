import json

import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.config import AllocationConfig
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import layer_infos, prunable_parameters
from tests.conftest import tiny_convnet


def pruned(sparsity=0.8):
    model = tiny_convnet()
    masks = MaskSet(prunable_parameters(model))
    Pruner(model=model, masks=masks, criterion="magnitude", allocation=AllocationConfig(),
           final_sparsity=sparsity, batches=[], input_shape=(3, 8, 8)).step(sparsity)
    return model, masks


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_pruned_weights_stay_zero_through_training(opt, batches):
    model, masks = pruned()
    keys = list(model.state_dict())
    optim = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
             if opt == "sgd" else torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1))
    for _ in range(5):  # epochs
        for x, y in batches:
            optim.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optim.step()
            masks.apply()
    for name, m in masks.masks.items():
        w = model.get_parameter(name)
        assert torch.count_nonzero(w[~m]) == 0
        assert torch.count_nonzero(w[m]) == int(m.sum())  # kept weights train (none stuck at 0)
    assert list(model.state_dict()) == keys  # no renamed keys, no extra buffers


def test_save_load_roundtrip_without_pickle(tmp_path):
    _model, masks = pruned()
    path = tmp_path / "masks.safetensors"
    masks.save(path)
    data = path.read_bytes()
    assert data[:1] != b"\x80"  # a pickle stream starts with the PROTO opcode 0x80
    # safetensors: an 8-byte little-endian header length, then a JSON header naming every mask
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert set(masks.masks) <= set(header)
    other = tiny_convnet()
    loaded = MaskSet.load(path, prunable_parameters(other))
    for k in masks:
        assert torch.equal(loaded[k], masks[k])
    loaded.apply()
    assert loaded.sparsity() == pytest.approx(masks.sparsity())


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="unreadable"):
        MaskSet.load(bad, prunable_parameters(tiny_convnet()))
    _model, masks = pruned()
    masks.save(tmp_path / "m.safetensors")
    wrong = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ConfigError, match="shape"):
        MaskSet.load(tmp_path / "m.safetensors", {"0.weight": wrong[0].weight})


def test_targets_include_exclude_and_defaults():
    model = tiny_convnet()
    names = list(prunable_parameters(model))
    assert names == ["0.weight", "3.weight", "8.weight", "10.weight"]  # no biases, no BN
    assert list(prunable_parameters(model, exclude=["10.*"])) == names[:-1]
    assert list(prunable_parameters(model, include=["8.*"])) == ["8.weight"]
    with pytest.raises(ConfigError, match="no prunable"):
        prunable_parameters(model, include=["nothing*"])
    infos = layer_infos(model)
    assert [i.kind for i in infos] == ["conv", "conv", "linear", "linear"]
    assert infos[0].depth == 0.0 and infos[-1].depth == 1.0


def test_collapsed_and_layer_sparsity():
    model = tiny_convnet()
    masks = MaskSet(prunable_parameters(model))
    masks.update({"8.weight": torch.zeros(32, 16, dtype=torch.bool)})
    assert masks.collapsed() == ["8.weight"]
    assert masks.layer_sparsity()["8.weight"] == 1.0
    assert masks.layer_sparsity()["0.weight"] == 0.0
