"""Model registry: every builder makes a plain-layer classifier of the right output shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruning_core.errors import ConfigError
from pruning_core.models import MODELS, create_model, model_names

# Tiny but representative inputs: width multipliers keep the big families fast.
SMALL: dict[str, tuple[tuple[int, ...], dict]] = {
    "mlp": ((1, 8, 8), {"hidden": (16, 8)}),
    "cnn1d": ((1, 40), {}),
    "lenet5": ((1, 8, 8), {}),
    "vgg11_bn": ((3, 8, 8), {"width": 0.125}),
    "vgg16_bn": ((3, 8, 8), {"width": 0.125}),
    "resnet20": ((3, 8, 8), {"width": 0.25}),
    "resnet32": ((3, 8, 8), {"width": 0.25}),
    "resnet18": ((3, 8, 8), {"width": 0.0625}),
}
# The layer types masks, criteria and surgery know about; nothing else may own a parameter.
PLAIN = {nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]


def test_every_registered_model_has_a_small_case() -> None:
    assert set(SMALL) == set(MODELS.names())


@pytest.mark.parametrize("name", MODELS.names())
def test_builds_and_forwards(name: str) -> None:
    shape, options = SMALL[name]
    model = create_model(name, shape, 7, **options)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    out.sum().backward()  # gradients reach every parameter
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", MODELS.names())
def test_only_plain_layers_own_parameters(name: str) -> None:
    shape, options = SMALL[name]
    model = create_model(name, shape, 10, **options)
    owners = {type(m) for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
    assert owners and owners <= PLAIN


@pytest.mark.parametrize(
    ("name", "shape"),
    [("lenet5", (1, 28, 28)), ("lenet5", (3, 32, 32)), ("lenet5", (1, 9, 13)),
     ("vgg16_bn", (3, 32, 32)), ("resnet20", (3, 32, 32)), ("mlp", (64,))],
)  # fmt: skip
def test_other_input_sizes(name: str, shape: tuple[int, ...]) -> None:
    options = {"width": 0.125} if name.startswith(("vgg", "resnet")) else {}
    assert create_model(name, shape, 10, **options)(torch.randn(2, *shape)).shape == (2, 10)


def test_lenet5_classic_geometry_on_mnist() -> None:
    # 28x28 padded by 2 is the classic 32x32 LeNet-5: 16*5*5 features into 120 units.
    model = create_model("lenet5", (1, 28, 28), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(400, 120), (120, 84), (84, 10)]
    assert n_params(model) == 61_706


def test_cnn1d_matches_the_published_model() -> None:
    # Greydanus' ConvBase: 5,210 parameters; 25 channels, length 40 -> 19 -> 10 -> 5.
    model = create_model("cnn1d", (1, 40), 10)
    assert n_params(model) == 5_210
    assert [c.out_channels for c in convs(model)] == [25, 25, 25]
    # (L,) inputs get a channel axis, and (B, L) batches are accepted too.
    flat = create_model("cnn1d", (40,), 10)
    assert flat(torch.randn(4, 40)).shape == (4, 10)
    assert model(torch.randn(4, 40)).shape == (4, 10)


def test_resnet20_parameter_count() -> None:
    # 269,722 with the paper's parameter-free shortcuts (option A); our two 1x1 conv + BN
    # shortcuts (option B) add 16*32 + 2*32 + 32*64 + 2*64 = 2,752.
    model = create_model("resnet20", (3, 32, 32), 10)
    assert n_params(model) == 272_474
    assert len(convs(model)) == 1 + 18 + 2  # stem, 9 blocks x 2, 2 shortcuts


def test_resnet32_is_deeper_than_resnet20() -> None:
    r20 = create_model("resnet20", (3, 32, 32), 10)
    r32 = create_model("resnet32", (3, 32, 32), 10)
    assert len(convs(r32)) == 1 + 30 + 2
    assert len(convs(r32)) > len(convs(r20))


def test_resnet18_cifar_form() -> None:
    model = create_model("resnet18", (3, 32, 32), 10)
    assert n_params(model) == 11_173_962  # the widely used CIFAR ResNet-18 count
    stem = convs(model)[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_vgg_cifar_form() -> None:
    model = create_model("vgg16_bn", (3, 32, 32), 100)
    assert len(convs(model)) == 13
    head = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in head] == [(512, 100)]
    # Five pools at 32x32, but only three at 8x8 (no pooling below 2x2).
    tiny = create_model("vgg16_bn", (3, 8, 8), 10, width=0.125)
    assert sum(isinstance(m, nn.MaxPool2d) for m in tiny.modules()) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5


def test_width_multiplier_scales_channels() -> None:
    full = create_model("resnet20", (3, 32, 32), 10)
    half = create_model("resnet20", (3, 32, 32), 10, width=0.5)
    assert [c.out_channels for c in convs(half)] == [c.out_channels // 2 for c in convs(full)]
    with pytest.raises(ConfigError, match="width"):
        create_model("vgg11_bn", (3, 32, 32), 10, width=0)


def test_kaiming_init_and_identity_batchnorm() -> None:
    torch.manual_seed(0)
    model = create_model("vgg11_bn", (3, 32, 32), 10)
    conv = convs(model)[-1]  # 512 x 512 x 3 x 3: fan_out = 4608, std = sqrt(2 / 4608)
    assert conv.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_torchvision_model_builds_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    model = create_model("tv:resnet18", (3, 32, 32), 7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_torchvision_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown torchvision classifier 'nope'.*alexnet"):
        create_model("tv:nope", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match=r"did you mean resnet18"):
        create_model("tv:resnet19", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="never downloaded"):
        create_model("tv:resnet18", (3, 32, 32), 10, weights="DEFAULT")
    with pytest.raises(ConfigError, match="3-channel"):
        create_model("tv:resnet18", (1, 28, 28), 10)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet21'") as info:
        create_model("resnet21", (3, 32, 32), 10)
    for name in MODELS.names():
        assert name in str(info.value)


def test_unknown_option_names_valid_options() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) widht; valid: width"):
        create_model("resnet20", (3, 32, 32), 10, widht=0.5)


def test_wrong_input_rank_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        create_model("resnet20", (1, 40), 10)
    with pytest.raises(ConfigError, match=r"\(C, L\)"):
        create_model("cnn1d", (3, 32, 32), 10)


def test_model_names() -> None:
    names = model_names()
    assert set(MODELS.names()) <= set(names)
    assert "tv:<torchvision classifier>" in names
