"""Model registry: every builder makes a plain-layer classifier of the right output shape,
initialised as the reference repository it follows (``init: reference``) or as PyTorch's
defaults (``init: torch``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.config import AllocationConfig
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.masking.variants import VARIANTS, redraw_weights
from pruning_core.workloads.models import MODELS, create_model, initialise, model_names

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
#: transformers have their own tests (test_transformers.py): LayerNorm, Embedding and
#: MultiheadAttention own parameters there, and gpt_tiny maps token ids to (B, vocab, T)
TRANSFORMERS = {"vit_tiny", "gpt_tiny"}
CNN_MODELS = [n for n in MODELS.names() if n not in TRANSFORMERS]
# The layer types masks, criteria and surgery know about; nothing else may own a parameter.
PLAIN = {nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]


def test_every_registered_model_has_a_small_case() -> None:
    assert set(SMALL) == set(CNN_MODELS)


@pytest.mark.parametrize("name", CNN_MODELS)
def test_builds_and_forwards(name: str) -> None:
    shape, options = SMALL[name]
    model = create_model(name, shape, 7, **options)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    out.sum().backward()  # gradients reach every parameter
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", CNN_MODELS)
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


def test_torchvision_model_builds_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    model = create_model("tv:resnet18", (3, 32, 32), 7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_torchvision_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(ConfigError, match=r"unknown torchvision classifier 'nope'.*alexnet"):
        create_model("tv:nope", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match=r"did you mean resnet18"):
        create_model("tv:resnet19", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match="not in the local cache.*nothing is downloaded"):
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


# --------------------------------------------------------------------------- initialisation
# Expected statistics are written from the formulas, never read back from models.py:
#   kaiming_normal_ (fan_in, gain sqrt 2):  N(0, 2 / fan_in)
#   kaiming_normal_ (fan_out, relu):        N(0, 2 / fan_out)
#   PyTorch default (reset_parameters):     weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
# with fan_in = in_channels * prod(kernel) (in_features for Linear), fan_out = out_channels *
# prod(kernel).

# What each model's reference does: (conv weights, linear weights, biases).
#   Synaptic-Flow Models/lottery_vgg.py, lottery_resnet.py: kaiming fan_in everywhere, biases 0.
#   Synaptic-Flow Models/tinyimagenet_resnet.py (ResNet-18): convs fan_out, Linear untouched.
#   open_lth models/initializers.py kaiming_normal (LeNets): weights fan_in, biases untouched.
#   greydanus/mnist1d notebooks/models.py ConvBase: no init of its own.
LOTTERY = ("fan_in", "fan_in", "zero")
REFERENCE: dict[str, tuple[str, str, str]] = {
    "mlp": ("fan_in", "fan_in", "torch"),
    "lenet5": ("fan_in", "fan_in", "torch"),
    "cnn1d": ("torch", "torch", "torch"),
    "vgg11_bn": LOTTERY,
    "vgg16_bn": LOTTERY,
    "resnet20": LOTTERY,
    "resnet32": LOTTERY,
    "resnet18": ("fan_out", "torch", "torch"),
}
# Shapes with layers big enough for the statistics (the largest weight has >= 25k entries).
STATS: dict[str, tuple[tuple[int, ...], dict]] = {
    "mlp": ((1, 28, 28), {}),
    "cnn1d": ((1, 40), {"channels": 64}),
    "lenet5": ((1, 28, 28), {}),
    "vgg11_bn": ((3, 32, 32), {"width": 0.5}),
    "vgg16_bn": ((3, 32, 32), {"width": 0.25}),
    "resnet20": ((3, 32, 32), {}),
    "resnet32": ((3, 32, 32), {}),
    "resnet18": ((3, 32, 32), {"width": 0.25}),
}
BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def fan_in(m: nn.Module) -> int:
    if isinstance(m, nn.Linear):
        return m.in_features
    return m.in_channels // m.groups * math.prod(m.kernel_size)


def fan_out(m: nn.Module) -> int:
    return m.out_channels * math.prod(m.kernel_size)


def weighted(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)]


def check_normal(w: torch.Tensor, std: float) -> None:
    """A N(0, std^2) draw: sample std within 5 standard errors (1 / sqrt(2n) relative)."""
    n = w.numel()
    assert w.std().item() == pytest.approx(std, rel=5 / math.sqrt(2 * n) + 0.005)
    if n >= 2000:  # a normal draw exceeds 3 std somewhere; a uniform one never does
        assert w.abs().max().item() > 3 * std


def check_uniform(t: torch.Tensor, bound: float) -> None:
    """A U(-bound, bound) draw: inside the bound, std bound / sqrt(3), and not all zero."""
    assert t.abs().max().item() <= bound
    assert t.abs().max().item() > 0
    n = t.numel()
    if n >= 100:
        assert t.std().item() == pytest.approx(bound / math.sqrt(3), rel=3 / math.sqrt(n))
    if n >= 2000:  # the largest of n uniform draws is within 1 % of the bound
        assert t.abs().max().item() > 0.99 * bound


def check_identity_bn(model: nn.Module) -> None:
    for bn in (m for m in model.modules() if isinstance(m, BN)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


def check_reference(name: str, model: nn.Module) -> None:
    conv_rule, linear_rule, bias_rule = REFERENCE[name]
    for m in weighted(model):
        rule = linear_rule if isinstance(m, nn.Linear) else conv_rule
        if rule == "fan_in":
            check_normal(m.weight, math.sqrt(2 / fan_in(m)))
        elif rule == "fan_out":
            check_normal(m.weight, math.sqrt(2 / fan_out(m)))
        else:
            check_uniform(m.weight, 1 / math.sqrt(fan_in(m)))
        if m.bias is not None:
            if bias_rule == "zero":
                assert torch.all(m.bias == 0)
            else:
                check_uniform(m.bias, 1 / math.sqrt(fan_in(m)))
    check_identity_bn(model)


def check_torch(model: nn.Module) -> None:
    for m in weighted(model):
        check_uniform(m.weight, 1 / math.sqrt(fan_in(m)))
        if m.bias is not None:
            check_uniform(m.bias, 1 / math.sqrt(fan_in(m)))
    check_identity_bn(model)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def build(name: str, seed: int = 0, **options: object) -> nn.Module:
    shape, base = STATS[name]
    torch.manual_seed(seed)
    return create_model(name, shape, 100, **{**base, **options})


def test_every_registered_model_has_a_reference_init() -> None:
    assert set(REFERENCE) == set(CNN_MODELS) == set(STATS)


@pytest.mark.parametrize("name", CNN_MODELS)
def test_reference_init_is_the_reference_repositorys(name: str) -> None:
    model = build(name)  # init: reference is the default
    assert max(m.weight.numel() for m in weighted(model)) >= 25_000
    check_reference(name, model)


@pytest.mark.parametrize("name", CNN_MODELS)
def test_torch_init_is_pytorchs_default(name: str) -> None:
    torch_model = build(name, init="torch")
    check_torch(torch_model)
    reference = build(name, init="reference")
    # The MNIST-1D ConvBase has no init of its own: there the two are the same draw.
    same = REFERENCE[name] == ("torch", "torch", "torch")
    assert same_state(reference, torch_model) == same


@pytest.mark.parametrize("init", ["reference", "torch"])
@pytest.mark.parametrize("name", CNN_MODELS)
def test_init_is_deterministic_under_a_seed(name: str, init: str) -> None:
    shape, options = SMALL[name]

    def state(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return list(create_model(name, shape, 7, init=init, **options).state_dict().values())

    a, b, c = state(0), state(0), state(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("bad", ["kaiming", "Reference", None, 1])
def test_unknown_init_is_one_line_naming_the_field(bad: object) -> None:
    for name, shape in (("vgg11_bn", (3, 8, 8)), ("tv:resnet18", (3, 32, 32))):
        with pytest.raises(ConfigError) as info:
            create_model(name, shape, 10, init=bad)
        msg = str(info.value)
        assert msg == f"model.options.init: unknown init {bad!r}; valid: reference, torch"


def test_init_is_a_listed_option() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) innit; valid: hidden, init; "
                                          r"did you mean init\?$"):
        create_model("mlp", (1, 8, 8), 10, innit="torch")


def test_initialise_redraws_under_a_seed_without_touching_the_callers_rng() -> None:
    model = build("vgg11_bn")
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    initialise(model, seed=5)
    assert torch.equal(torch.get_rng_state(), rng)
    first = [p.detach().clone() for p in model.parameters()]
    assert not torch.equal(before[0], first[0])
    check_reference("vgg11_bn", model)  # the model's own init again
    initialise(model, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, model.parameters(), strict=True))
    initialise(model, init="torch", seed=5)  # an explicit scheme overrides the recorded one
    check_torch(model)


def test_a_model_not_built_here_gets_pytorchs_default() -> None:
    model = nn.Sequential(nn.Linear(300, 200), nn.BatchNorm1d(200))
    old = model[0].weight.detach().clone()
    redraw_weights(model, seed=0)
    assert not torch.equal(old, model[0].weight)
    check_torch(model)
    with pytest.raises(ConfigError, match="^model.options.init: reference needs a model built"):
        initialise(model, init="reference")


@pytest.mark.parametrize("init", ["reference", "torch"])
@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18", "mlp"])
def test_redraw_weights_uses_the_models_own_init(name: str, init: str) -> None:
    model = build(name, init=init)
    model(torch.randn(4, *STATS[name][0])).sum()  # train-mode forward: BN statistics move
    old = [m.weight.detach().clone() for m in weighted(model)]
    redraw_weights(model, seed=3)
    assert all(not torch.equal(o, m.weight) for o, m in zip(old, weighted(model), strict=True))
    if init == "reference":
        check_reference(name, model)
    else:
        check_torch(model)
    twin = build(name, init=init)
    redraw_weights(twin, seed=3)
    assert same_state(model, twin)


def test_reinit_variant_keeps_the_mask_and_the_reference_init() -> None:
    model = build("vgg11_bn")
    masks = MaskSet(prunable_parameters(model))
    Pruner(
        model=model,
        masks=masks,
        criterion="magnitude",
        allocation=AllocationConfig(name="uniform"),
        final_sparsity=0.5,
        batches=[],
        input_shape=(3, 32, 32),
    ).step(0.5)
    kept = {n: m.clone() for n, m in masks.masks.items()}
    VARIANTS.get("reinit")(model, masks, 0)
    for n, p in masks.params.items():
        assert torch.equal(masks[n], kept[n]) and torch.all(p[~kept[n]] == 0)
        # The kept half of a N(0, 2 / fan_in) draw, not of PyTorch's U(+-1/sqrt(fan_in)).
        fan = p[0].numel()
        assert p[kept[n]].std().item() > 1.0 / math.sqrt(fan)  # 1.41 vs 0.58


def test_torchvision_reference_is_its_constructor_init() -> None:
    torch.manual_seed(0)
    model = create_model("tv:resnet18", (3, 32, 32), 100)
    convs_ = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for m in convs_:  # torchvision's ResNet: kaiming_normal_(fan_out, relu) on every conv
        check_normal(m.weight, math.sqrt(2 / fan_out(m)))
    check_uniform(model.fc.weight, 1 / math.sqrt(512))  # fc left at PyTorch's default
    check_identity_bn(model)
    torch.manual_seed(0)
    check_torch(create_model("tv:resnet18", (3, 32, 32), 100, init="torch"))
    # Re-drawing rebuilds through torchvision's constructor: its init again, new values.
    old = model.conv1.weight.detach().clone()
    redraw_weights(model, seed=1)
    assert not torch.equal(old, model.conv1.weight)
    check_normal(model.conv1.weight, math.sqrt(2 / fan_out(model.conv1)))


# ------------------------------------------------- issue 7's mechanism: magnitude at init


def magnitude_collapsed(model: nn.Module, sparsity: float) -> list[str]:
    """Empty layers after one-shot global magnitude pruning at initialisation."""
    masks = MaskSet(prunable_parameters(model))
    Pruner(
        model=model,
        masks=masks,
        criterion="magnitude",
        allocation=AllocationConfig(name="global"),
        final_sparsity=sparsity,
        batches=[],
        input_shape=(3, 32, 32),
    ).step(sparsity)
    return masks.collapsed()


def uniform_collapse_sparsity(layers: list[nn.Module]) -> float:
    """Global magnitude on U(+-b_l) layers: a layer keeps n_l (1 - t / b_l) weights above a
    threshold t, so the layers with the smallest b empty once t reaches b_min, at sparsity
    1 - sum_l n_l max(0, 1 - b_min / b_l) / N."""
    bounds = [1 / math.sqrt(fan_in(m)) for m in layers]
    b_min = min(bounds)
    pairs = zip(layers, bounds, strict=True)
    kept = sum(m.weight.numel() * max(0.0, 1 - b_min / b) for m, b in pairs)
    return 1 - kept / sum(m.weight.numel() for m in layers)


@pytest.mark.slow  # full-size VGG-16-BN: about 5 s per seed on 2 cores
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vgg16_cifar100_magnitude_at_init(seed: int) -> None:
    # Reference (kaiming fan_in everywhere): at 99.7 % the layers with the smallest std
    # (3x3 convs with 512 inputs, sigma = sqrt(2 / 4608)) still keep about 46 weights each
    # by the normal tail, so no layer is empty.
    torch.manual_seed(seed)
    model = create_model("vgg16_bn", (3, 32, 32), 100)
    assert magnitude_collapsed(model, 0.997) == []
    # PyTorch's default: the five 512-input 3x3 convs have the smallest bound 1 / sqrt(4608)
    # and all empty together at s* = 0.93094 (computed from the formula above).
    torch.manual_seed(seed)
    model = create_model("vgg16_bn", (3, 32, 32), 100, init="torch")
    layers = weighted(model)
    s_star = uniform_collapse_sparsity(layers)
    assert s_star == pytest.approx(0.93094, abs=1e-5)
    names = [n for n, m in model.named_modules() if m in layers]
    smallest = [f"{n}.weight" for n, m in zip(names, layers, strict=True) if fan_in(m) == 4608]
    assert len(smallest) == 5
    assert magnitude_collapsed(model, s_star - 0.001) == []
    assert magnitude_collapsed(model, s_star + 0.001) == smallest
