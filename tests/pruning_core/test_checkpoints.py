import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.structured.compact_file import load_weights
from pruning_core.workloads.checkpoints import read_state_dict


def net(hidden: int = 4) -> nn.Module:
    torch.manual_seed(hidden)
    return nn.Sequential(nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.Linear(hidden, 2))


def test_torch_and_safetensors_checkpoints_load_exactly(tmp_path):
    src = net()
    src[1].running_mean.fill_(0.5)
    torch.save(src.state_dict(), tmp_path / "a.pt")
    torch.save({"epoch": 3, "state_dict": src.state_dict()}, tmp_path / "nested.pt")
    save_file(src.state_dict(), str(tmp_path / "a.safetensors"))
    for name in ("a.pt", "nested.pt", "a.safetensors"):
        dst = net()
        dst[0].weight.data.zero_()
        load_weights(dst, tmp_path / name)
        for k, v in src.state_dict().items():
            assert torch.equal(dst.state_dict()[k], v), (name, k)


def test_other_architecture_names_the_first_bad_key_and_shapes(tmp_path):
    torch.save(net(8).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ConfigError, match=r"^model\.weights: '0\.weight' has shape \(8, 3\) in "
                                          r"the file but \(4, 3\) in the model$"):
        load_weights(net(4), tmp_path / "wide.pt")
    other = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ConfigError, match=r"key '1\.running_mean' is missing from the file .*"
                                          r"weights_strict: false"):
        load_weights(net(4), tmp_path / "other.pt")


def test_non_strict_loads_the_matching_keys(tmp_path):
    src = net()
    state = {k: v for k, v in src.state_dict().items() if k.startswith("0.")}
    torch.save(state, tmp_path / "partial.pt")
    dst = net()
    before = dst[2].weight.clone()
    load_weights(dst, tmp_path / "partial.pt", strict=False)
    assert torch.equal(dst[0].weight, src[0].weight) and torch.equal(dst[2].weight, before)


class Custom:  # a pickled object of a class: needs code to load
    def __init__(self) -> None:
        self.w = torch.ones(2)


def test_pickles_that_need_code_are_refused_with_the_reason(tmp_path):
    torch.save(net(), tmp_path / "module.pt")  # a whole nn.Module
    with pytest.raises(ConfigError, match=r"needs weights_only=False to load \(it pickles "
                                          r"torch\.nn\.modules\.container\.Sequential"):
        read_state_dict(tmp_path / "module.pt")
    torch.save({"x": Custom()}, tmp_path / "custom.pt")
    with pytest.raises(ConfigError, match="needs weights_only=False"):
        read_state_dict(tmp_path / "custom.pt")


def test_missing_garbage_and_non_tensor_files(tmp_path):
    with pytest.raises(ConfigError, match="no file at"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is not a torch checkpoint"):
        read_state_dict(tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        read_state_dict(tmp_path / "junk.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pt")
