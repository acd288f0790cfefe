import pytest
import torch
import torchvision

from pruning_core.base.errors import ConfigError
from pruning_core.trials.registries import load_trial_config
from pruning_core.workloads.models import create_model, torchvision_weights_path
from tests.conftest import user_code_dir


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_torchvision_weights_come_from_the_local_cache_only(torch_home):
    path = torchvision_weights_path("resnet18", "IMAGENET1K_V1")
    assert path.parent == torch_home / "hub" / "checkpoints"
    with pytest.raises(ConfigError, match=rf"^model\.options\.weights: IMAGENET1K_V1 for "
                                          rf"resnet18 is not in the local cache: expected "
                                          rf"{path}"):
        create_model("tv:resnet18", (3, 32, 32), 10, weights="IMAGENET1K_V1")
    torch.manual_seed(0)
    trained = torchvision.models.resnet18(num_classes=1000)
    path.parent.mkdir(parents=True)
    torch.save(trained.state_dict(), path)
    model = create_model("tv:resnet18", (3, 32, 32), 10, weights="IMAGENET1K_V1")
    assert torch.equal(model.conv1.weight, trained.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, trained.layer4[1].bn2.running_var)
    assert model.fc.out_features == 10  # another classifier size: fresh init, as fine-tuning


def test_unknown_torchvision_weights_name(torch_home):
    with pytest.raises(ConfigError, match=r"'IMAGENET9K' is not a weights name of resnet18; "
                                          r"valid: IMAGENET1K_V1"):
        create_model("tv:resnet18", (3, 32, 32), 10, weights="IMAGENET9K")


def test_a_config_names_a_user_factory_that_must_import(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^model\.name: cannot import 'no_such_pkg\.nets'"):
        load_trial_config({"model": {"name": "no_such_pkg.nets:build"}})
    (tmp_path / "userpkg2.py").write_text(
        "from torch import nn\n"
        "def build(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(40, num_classes))\n")
    user_code_dir(monkeypatch, tmp_path, "userpkg2")
    cfg = load_trial_config({"model": {"name": "userpkg2:build"}, "data": {"name": "mnist1d"}})
    model = create_model(cfg.model.name, (1, 40), 10)
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)
