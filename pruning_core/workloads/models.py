"""Model registry: builders of plain ``nn.Module`` classifiers.

Every builder has the signature ``build(input_shape, num_classes, **options) -> nn.Module``
where ``input_shape`` excludes the batch dimension: ``(1, 40)`` for MNIST-1D, ``(3, 32, 32)``
for CIFAR, ``(1, 8, 8)`` for digits, ``(64,)`` for flat vectors.

Only stock layers (``nn.Conv1d/2d``, ``nn.Linear``, ``nn.BatchNorm1d/2d``) hold parameters, so
masks, criteria and structured surgery never need to know about custom layer types. Container
modules (residual blocks, the 1-D CNN) only route tensors between those layers. The two
transformers (``vit_tiny``, ``gpt_tiny``: ``transformer_models.py``) also hold stock
``nn.LayerNorm``, ``nn.Embedding`` and ``nn.MultiheadAttention`` parameters, and the ViT its
class token and position embedding.

``create_model`` is the one entry point: registered names, plus ``tv:<name>`` for any
torchvision classifier built with random weights (weights are never downloaded).

Initialisation (``model.options.init``): pruning at initialisation ranks the *initial* weights,
so each layer's init scale decides which layer a criterion empties first. Every model therefore
takes ``init``:

- ``reference`` (default): exactly as the repository the model follows (cited in each builder's
  docstring): Synaptic-Flow's lottery VGG / ResNet (``kaiming_normal_`` fan_in on every conv and
  linear weight, biases 0, BatchNorm 1 / 0), Synaptic-Flow's CIFAR ResNet-18, open_lth's LeNets,
  the MNIST-1D repository's ConvBase (PyTorch defaults), torchvision's own constructors.
- ``torch``: PyTorch's default, every layer's ``reset_parameters()`` (what a plain
  ``nn.Module`` gets; for Conv/Linear weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))).

``create_model`` records the choice on the model (``INIT_ATTR``) so that :func:`initialise`
re-draws with the same init later (the WACV re-initialisation variants call it).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import ConfigError
from ..base.registry import Registry
from ..base.suggest import did_you_mean, with_hint
from .factories import build_model, is_import_path

log = logging.getLogger(__name__)

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")

TV_PREFIX = "tv:"


# --------------------------------------------------------------------------- helpers


def _scaled(channels: int, width: float) -> int:
    """Channel count times a width multiplier, never below one channel."""
    if width <= 0:
        raise ConfigError(f"model option width={width} must be > 0 (e.g. 0.25 for a tiny model)")
    return max(1, round(channels * width))


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) from ``input_shape``; 2-D models need a channel and two spatial dims."""
    if len(input_shape) != 3:
        raise ConfigError(f"model {name!r} needs input_shape (C, H, W); got {tuple(input_shape)}")
    c, h, w = (int(d) for d in input_shape)
    return c, h, w


def _conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution along one dimension (PyTorch's floor formula)."""
    return (size + 2 * padding - kernel) // stride + 1


# Not in-place: in-place ReLUs break module backward hooks that criteria and similarity
# probes may attach, and the memory saved is negligible at these model sizes.


# --------------------------------------------------------------------------- initialisation

INITS = ("reference", "torch")
#: attribute under which ``create_model`` stores a model's :class:`ModelInit`
INIT_ATTR = "prunetune_init"

Initialiser = Callable[[nn.Module], None]
_CONV_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def torch_default(model: nn.Module) -> None:
    """PyTorch's own init: ``reset_parameters()`` of every module that owns parameters.

    Conv/Linear: weight ``kaiming_uniform_(a=sqrt(5))`` and bias, both U(+-1/sqrt(fan_in));
    BatchNorm: weight 1, bias 0, running statistics reset. A module without a public
    ``reset_parameters`` keeps its values (none of the registered models has one).
    """
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset) and any(True for _ in m.parameters(recurse=False)):
            reset()


def _identity_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, _BN):
            m.reset_parameters()  # weight 1, bias 0, fresh running statistics


def synflow_lottery(model: nn.Module) -> None:
    """Synaptic-Flow's lottery models (ganguli-lab/Synaptic-Flow ``Models/lottery_vgg.py`` and
    ``Models/lottery_resnet.py``, ``_initialize_weights``; ported from open_lth).

    ``kaiming_normal_`` with its defaults (mode fan_in, gain sqrt(2): std = sqrt(2 / fan_in)) on
    every conv **and** linear weight, every bias 0, BatchNorm weight 1 and bias 0.
    """
    for m in model.modules():
        if isinstance(m, _CONV_LINEAR):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _identity_bn(model)


def synflow_cifar_resnet18(model: nn.Module) -> None:
    """Synaptic-Flow's ResNet-18 (ganguli-lab/Synaptic-Flow ``Models/tinyimagenet_resnet.py``,
    ``_initialize_weights``, the only ResNet-18 its loader registers).

    Convs ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (std = sqrt(2 / fan_out)),
    BatchNorm 1 / 0; the final Linear keeps PyTorch's default (that file never touches it).
    """
    torch_default(model)
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _identity_bn(model)


def open_lth_kaiming(model: nn.Module) -> None:
    """open_lth's default ``model_init="kaiming_normal"`` (facebookresearch/open_lth
    ``models/initializers.py``, applied by ``models/mnist_lenet.py`` through ``self.apply``).

    ``kaiming_normal_`` (fan_in, std = sqrt(2 / fan_in)) on every conv and linear weight; the
    biases keep PyTorch's default U(+-1/sqrt(fan_in)), which that initializer never touches.
    """
    torch_default(model)
    for m in model.modules():
        if isinstance(m, _CONV_LINEAR):
            nn.init.kaiming_normal_(m.weight)


def check_init(init: object) -> str:
    """``init`` itself, or a one-line ``ConfigError`` naming the field and the valid values."""
    if init not in INITS:
        raise ConfigError(f"model.options.init: unknown init {init!r}; valid: {', '.join(INITS)}")
    return str(init)


@dataclass(frozen=True)
class ModelInit:
    """How a model's parameters are drawn; stored on the model as ``INIT_ATTR``."""

    #: ``reference`` or ``torch``
    scheme: str
    #: the initialiser of the model's reference repository
    reference: Initialiser
    #: PyTorch's default for this model (torchvision models rebuild first: ``_TorchvisionFresh``)
    torch: Initialiser = field(default=torch_default)

    def initialiser(self, scheme: str | None = None) -> Initialiser:
        return self.reference if (scheme or self.scheme) == "reference" else self.torch


def initialise(model: nn.Module, init: str | None = None, seed: int | None = None) -> None:
    """(Re-)draw every parameter of ``model`` with its own init, in place.

    ``init`` defaults to the scheme the model was built with (``create_model`` records it);
    a model not built here only knows ``torch``. With ``seed`` the draw happens under
    ``torch.manual_seed(seed)`` inside a forked RNG, leaving the caller's RNG untouched;
    without it the global RNG is used (as at construction, after ``torch.manual_seed``).
    """
    spec: ModelInit | None = getattr(model, INIT_ATTR, None)
    scheme = check_init(init) if init is not None else (spec.scheme if spec else "torch")
    if spec is None and scheme == "reference":
        raise ConfigError("model.options.init: reference needs a model built by create_model")
    fn = spec.initialiser(scheme) if spec else torch_default
    if seed is None:
        fn(model)
        return
    # torch.manual_seed also seeds every CUDA device: fork them all once CUDA is in use.
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        fn(model)


def _with_init(model: nn.Module, init: str, reference: Initialiser) -> nn.Module:
    """Record ``init`` on a freshly built model and draw its parameters with it."""
    setattr(model, INIT_ATTR, ModelInit(check_init(init), reference))
    initialise(model)
    return model


# --------------------------------------------------------------------------- MLP


@MODELS.register("mlp")
def build_mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    hidden: Sequence[int] = (300, 100),
    init: str = "reference",
) -> nn.Module:
    """LeNet-300-100 (LeCun et al. 1998): flattens any input; ``hidden`` sets the widths.

    Follows open_lth's ``mnist_lenet_300_100`` (facebookresearch/open_lth
    ``models/mnist_lenet.py``, the lottery-ticket LeNet), whose default ``model_init`` is
    ``kaiming_normal`` (``models/initializers.py``): see :func:`open_lth_kaiming`.
    (Synaptic-Flow's ``Models/mlp.py`` ``fc`` is a different MLP, 6 layers of 100, and keeps
    PyTorch's defaults.)
    """
    layers: list[nn.Module] = [nn.Flatten()]  # (B, *input_shape) -> (B, D)
    fan_in = math.prod(int(d) for d in input_shape)
    for width in hidden:
        layers += [nn.Linear(fan_in, int(width)), nn.ReLU()]
        fan_in = int(width)
    layers.append(nn.Linear(fan_in, num_classes))  # (B, num_classes)
    return _with_init(nn.Sequential(*layers), init, open_lth_kaiming)


# --------------------------------------------------------------------------- 1-D CNN


class CNN1d(nn.Module):
    """Greydanus (2020) MNIST-1D CNN: three strided Conv1d + ReLU, then one Linear.

    The published ``ConvBase`` (greydanus/mnist1d ``notebooks/models.py``) uses kernels 5, 3, 3
    (stride 2, padding 1) with 25 channels: length 40 -> 19 -> 10 -> 5, so the classifier sees
    25 * 5 = 125 features. It sets no init of its own: PyTorch's defaults are its reference.
    """

    def __init__(
        self,
        in_channels: int,
        length: int,
        num_classes: int,
        channels: int = 25,
        kernel_sizes: Sequence[int] = (5, 3, 3),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = in_channels, length
        for k in kernel_sizes:
            size = _conv_out(size, int(k), stride=2, padding=1)
            if size < 1:
                raise ConfigError(f"model 'cnn1d': sequence length {length} too short")
            layers += [nn.Conv1d(c_in, channels, int(k), stride=2, padding=1), nn.ReLU()]
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (B, L): plain sequences get a channel axis
            x = x.unsqueeze(1)  # (B, 1, L)
        h = self.features(x)  # (B, channels, L')
        return self.classifier(h)  # (B, num_classes)


@MODELS.register("cnn1d")
def build_cnn1d(
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: int = 25,
    kernel_sizes: Sequence[int] = (5, 3, 3),
    init: str = "reference",
) -> nn.Module:
    """MNIST-1D baseline CNN; input ``(C, L)`` or ``(L,)``.

    Follows greydanus/mnist1d ``notebooks/models.py`` ``ConvBase``, which keeps PyTorch's
    default init, so ``reference`` and ``torch`` draw the same weights.
    """
    if len(input_shape) == 1:
        c, length = 1, int(input_shape[0])
    elif len(input_shape) == 2:
        c, length = int(input_shape[0]), int(input_shape[1])
    else:
        raise ConfigError(f"model 'cnn1d' needs input_shape (C, L) or (L,); got {input_shape}")
    model = CNN1d(c, length, num_classes, channels=int(channels), kernel_sizes=kernel_sizes)
    return _with_init(model, init, torch_default)


# --------------------------------------------------------------------------- LeNet-5


@MODELS.register("lenet5")
def build_lenet5(
    input_shape: tuple[int, ...], num_classes: int, init: str = "reference"
) -> nn.Module:
    """LeNet-5 (conv 6, conv 16, fc 120-84-classes) with ReLU and max pooling.

    The first conv pads by 2 so 28x28 MNIST gets the classic 32x32 geometry; an adaptive max
    pool to 5x5 replaces the second pool so any H, W >= 8 reaches the classic 16*5*5 features
    (exactly ``MaxPool2d(2)`` at 28x28). The second conv pads only where the map is too small.

    Init: none of the anchor repositories ships this LeNet-5 (SNIP's is LeNet-5-Caffe, 20-50-500;
    SNIP-it's adds BatchNorm and leaky ReLUs), so it follows the LeNet of the lottery-ticket
    reference, open_lth (``models/mnist_lenet.py`` with ``models/initializers.py``
    ``kaiming_normal``), like ``mlp``: see :func:`open_lth_kaiming`.
    """
    c, h, w = _image_shape("lenet5", input_shape)
    if min(h, w) < 8:
        raise ConfigError(f"model 'lenet5' needs H, W >= 8; got input_shape {input_shape}")
    pad2 = tuple(0 if s // 2 >= 5 else 2 for s in (h, w))  # pooled map smaller than the kernel
    model = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2),  # (B, 6, H, W)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 6, H/2, W/2)
        nn.Conv2d(6, 16, 5, padding=pad2),  # (B, 16, H/2-4, W/2-4) for large inputs
        nn.ReLU(),
        nn.AdaptiveMaxPool2d((5, 5)),  # (B, 16, 5, 5)
        nn.Flatten(),  # (B, 400)
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),  # (B, num_classes)
    )
    return _with_init(model, init, open_lth_kaiming)


# --------------------------------------------------------------------------- VGG


VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11_bn": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16_bn": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                 512, 512, 512, "M", 512, 512, 512, "M"],
}  # fmt: skip


def _vgg(
    name: str, input_shape: tuple[int, ...], num_classes: int, width: float, init: str
) -> nn.Module:
    """CIFAR-form VGG: 3x3 conv + BN + ReLU stacks, global average pool, one Linear.

    Follows Synaptic-Flow's lottery VGG (ganguli-lab/Synaptic-Flow ``Models/lottery_vgg.py``,
    from open_lth's ``models/cifar_vgg.py``), init :func:`synflow_lottery`. Differences: no conv
    biases (each conv feeds a BatchNorm; Synaptic-Flow's are zero at init), and a fifth max pool
    plus adaptive average pool instead of its single ``AvgPool2d(2)`` (the same 1x1 at 32x32).
    open_lth differs in init only by drawing BatchNorm weights U(0, 1) and leaving biases at
    PyTorch's default.
    """
    c, h, w = _image_shape(name, input_shape)
    layers: list[nn.Module] = []
    for v in VGG_CFGS[name]:
        if v == "M":
            # Pool only while there is something to halve, so 8x8 inputs keep all convs.
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            continue
        out = _scaled(int(v), width)
        layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out)]
        layers.append(nn.ReLU())
        c = out
    model = nn.Sequential(
        *layers,  # (B, 512w, h, w)
        nn.AdaptiveAvgPool2d(1),  # (B, 512w, 1, 1); identity at 32x32
        nn.Flatten(),  # (B, 512w)
        nn.Linear(c, num_classes),  # (B, num_classes)
    )
    return _with_init(model, init, synflow_lottery)


@MODELS.register("vgg11_bn")
def build_vgg11_bn(
    input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, init: str = "reference"
) -> nn.Module:
    """VGG-11 with BatchNorm, CIFAR form (Linear(512, classes) head); Synaptic-Flow's
    ``Models/lottery_vgg.py`` ``vgg11_bn`` and its init (see ``_vgg``)."""
    return _vgg("vgg11_bn", input_shape, num_classes, width, init)


@MODELS.register("vgg16_bn")
def build_vgg16_bn(
    input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, init: str = "reference"
) -> nn.Module:
    """VGG-16 with BatchNorm, CIFAR form (Linear(512, classes) head); Synaptic-Flow's
    ``Models/lottery_vgg.py`` ``vgg16_bn`` and its init (see ``_vgg``)."""
    return _vgg("vgg16_bn", input_shape, num_classes, width, init)


# --------------------------------------------------------------------------- ResNets


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut; a 1x1 conv-BN (option B) when shapes change.

    Option B rather than the paper's parameter-free option A (zero padding), so that every
    layer is a stock conv and structured pruning can treat the shortcut like any other conv.
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W)
        out = self.relu1(self.bn1(self.conv1(x)))  # (B, C_out, H/s, W/s)
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))  # (B, C_out, H/s, W/s)


class CifarResNet(nn.Module):
    """CIFAR-form ResNet: 3x3 stem (no max pool), stages of BasicBlocks, global pool, Linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        stage_channels: Sequence[int],
        blocks_per_stage: Sequence[int],
    ) -> None:
        super().__init__()
        c = stage_channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        for i, (c_out, n) in enumerate(zip(stage_channels, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2  # the first stage keeps the resolution
            blocks = [BasicBlock(c, c_out, stride)]
            blocks += [BasicBlock(c_out, c_out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        h = self.stages(self.stem(x))  # (B, C_last, H/2^(S-1), W/2^(S-1))
        return self.fc(self.flatten(self.pool(h)))  # (B, num_classes)


def _resnet(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: Sequence[int],
    blocks: Sequence[int],
    width: float,
    init: str,
    reference: Initialiser,
) -> nn.Module:
    c, _, _ = _image_shape(name, input_shape)
    model = CifarResNet(c, num_classes, [_scaled(ch, width) for ch in channels], blocks)
    return _with_init(model, init, reference)


@MODELS.register("resnet20")
def build_resnet20(
    input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, init: str = "reference"
) -> nn.Module:
    """ResNet-20 (He et al. 2016, CIFAR): 3 stages x 3 blocks, 16/32/64 channels.

    Follows Synaptic-Flow's lottery ResNet (ganguli-lab/Synaptic-Flow
    ``Models/lottery_resnet.py``, from open_lth's ``models/cifar_resnet.py``; 1x1 conv + BN
    shortcuts as there), init :func:`synflow_lottery`.
    """
    return _resnet(
        "resnet20", input_shape, num_classes, (16, 32, 64), (3, 3, 3), width, init, synflow_lottery
    )


@MODELS.register("resnet32")
def build_resnet32(
    input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, init: str = "reference"
) -> nn.Module:
    """ResNet-32 (He et al. 2016, CIFAR): 3 stages x 5 blocks, 16/32/64 channels.

    Synaptic-Flow's ``Models/lottery_resnet.py`` ``resnet32`` and its init, as ``resnet20``.
    """
    return _resnet(
        "resnet32", input_shape, num_classes, (16, 32, 64), (5, 5, 5), width, init, synflow_lottery
    )


@MODELS.register("resnet18")
def build_resnet18(
    input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, init: str = "reference"
) -> nn.Module:
    """ResNet-18, CIFAR form: 3x3 stem, no max pool, 4 stages x 2 blocks, 64..512 channels.

    Follows Synaptic-Flow's ResNet-18 (ganguli-lab/Synaptic-Flow
    ``Models/tinyimagenet_resnet.py``, the same CIFAR form), init
    :func:`synflow_cifar_resnet18`: convs kaiming fan_out, the Linear at PyTorch's default.
    """
    return _resnet(
        "resnet18",
        input_shape,
        num_classes,
        (64, 128, 256, 512),
        (2, 2, 2, 2),
        width,
        init,
        synflow_cifar_resnet18,
    )


# --------------------------------------------------------------------------- entry points


def _check_options(name: str, builder: ModelBuilder, options: dict[str, Any]) -> None:
    """Name the unknown option and the valid ones, instead of a bare TypeError from Python."""
    params = list(inspect.signature(builder).parameters.values())[2:]  # after shape, classes
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    valid = [p.name for p in params]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(with_hint(
            f"model {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(valid) or '(none)'}", unknown[0], valid))


def _torchvision_classifiers() -> list[str]:
    import torchvision  # deferred: importing torchvision costs ~1 s and most runs never need it

    return list(torchvision.models.list_models(module=torchvision.models))


@dataclass(frozen=True)
class _TorchvisionFresh:
    """Re-draw a torchvision model: build a fresh one (its constructor's init is the reference)
    and copy its parameters and buffers in; ``then_reset`` applies PyTorch's default on top.

    Rebuilding, rather than resetting layer by layer, also re-draws parameters of modules that
    have no public ``reset_parameters`` (ViT's class token, ``nn.MultiheadAttention``).
    """

    arch: str
    num_classes: int
    options: tuple[tuple[str, Any], ...]
    then_reset: bool = False

    def __call__(self, model: nn.Module) -> None:
        import torchvision

        fresh = torchvision.models.get_model(
            self.arch, weights=None, num_classes=self.num_classes, **dict(self.options)
        )
        if self.then_reset:
            torch_default(fresh)
        model.load_state_dict(fresh.state_dict())


def _create_torchvision(
    name: str, input_shape: tuple[int, ...], num_classes: int, options: dict[str, Any]
) -> nn.Module:
    """A torchvision classifier with random weights; ``weights`` options are refused.

    ``init: reference`` keeps what torchvision's constructor drew (that is these models' own
    reference); ``init: torch`` applies ``reset_parameters()`` on top.
    """
    import torchvision

    options = dict(options)
    init = check_init(options.pop("init", "reference"))

    arch = name[len(TV_PREFIX) :]
    valid = _torchvision_classifiers()
    if arch not in valid:
        hint = did_you_mean(arch, valid)
        hint = f"{hint} " if hint else ""
        shown = ", ".join(valid[:20]) + (", …" if len(valid) > 20 else "")
        raise ConfigError(
            f"unknown torchvision classifier {arch!r}; {hint}{len(valid)} available: {shown}"
        )
    pretrained = options.pop("weights", None)
    if "weights_backbone" in options:
        raise ConfigError(f"model.options.weights_backbone: not supported for {name!r}; use "
                          "weights (read from the local TORCH_HOME cache)")
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ConfigError(
            f"model {name!r} expects 3-channel images (3, H, W); got input_shape {input_shape}"
        )
    try:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **options)
    except (TypeError, ValueError) as exc:  # torchvision's own option validation
        raise ConfigError(f"model {name!r}: {exc}") from exc
    if pretrained is not None:
        _load_torchvision_weights(model, arch, str(pretrained))
        return model  # trained weights: there is no init to record or re-draw
    frozen = tuple(sorted(options.items()))
    spec = ModelInit(
        init,
        reference=_TorchvisionFresh(arch, num_classes, frozen),
        torch=_TorchvisionFresh(arch, num_classes, frozen, then_reset=True),
    )
    setattr(model, INIT_ATTR, spec)
    if init == "torch":  # the model is fresh: resetting its layers is the torch init
        torch_default(model)
    return model


def torchvision_weights_path(arch: str, weights: str) -> Path:
    """Where torchvision's cache keeps ``weights`` of ``arch``: ``$TORCH_HOME/hub/checkpoints``."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
        entry = enum[weights.split(".")[-1]] if weights != "DEFAULT" else enum.DEFAULT
    except (KeyError, ValueError):
        valid = [w.name for w in torchvision.models.get_model_weights(arch)]
        raise ConfigError(
            f"model.options.weights: {weights!r} is not a weights name of {arch}; valid: "
            f"{', '.join(valid)}"
        ) from None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name


def _load_torchvision_weights(model: nn.Module, arch: str, weights: str) -> None:
    """Load torchvision weights from the local cache only; a classifier of another size keeps
    its fresh init (the usual fine-tuning start)."""
    from .checkpoints import read_state_dict

    path = torchvision_weights_path(arch, weights)
    if not path.is_file():
        raise ConfigError(
            f"model.options.weights: {weights} for {arch} is not in the local cache: expected "
            f"{path} (set TORCH_HOME or copy the file there; nothing is downloaded)"
        )
    state = read_state_dict(path, "model.options.weights")
    own = model.state_dict()
    fresh = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if fresh:
        log.warning("%s: %s keep their fresh init (shapes differ from %s)", arch,
                    ", ".join(fresh), path.name)
    missing = [k for k in own if k not in state]
    if missing:
        raise ConfigError(f"model.options.weights: {path} lacks {missing[0]!r} for {arch}")
    model.load_state_dict({k: v for k, v in state.items() if k not in fresh}, strict=False)


def create_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> nn.Module:
    """Build a model by registry name, ``tv:<torchvision classifier>`` or the import path of the
    user's own factory (``"my_pkg.nets:build"``, see ``factories.py``)."""
    input_shape = tuple(int(d) for d in input_shape)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1; got {num_classes}")
    if is_import_path(name):
        model = build_model(name, input_shape, num_classes, options)
    elif name.startswith(TV_PREFIX):
        model = _create_torchvision(name, input_shape, num_classes, options)
    else:
        builder = MODELS.get(name)
        _check_options(name, builder, options)
        model = builder(input_shape, num_classes, **options)
    log.debug("built model %s for input %s, %d classes", name, input_shape, num_classes)
    return model


def model_names() -> list[str]:
    """Registered names plus the ``tv:`` family placeholder (for help text and validation)."""
    return [*MODELS.names(), f"{TV_PREFIX}<torchvision classifier>"]


# --------------------------------------------------------------------------- transformers
# (modules and initialisers in transformer_models.py; docs/transformers.md)

from .transformer_models import (  # noqa: E402  (kept apart from the CNNs above)
    GPTTiny,
    ViTTiny,
    nanogpt_init,
    timm_vit_init,
    torch_gpt_init,
    torch_vit_init,
)


def _transformer_init(model: nn.Module, init: str, reference: Initialiser,
                      torch_init: Initialiser) -> nn.Module:
    setattr(model, INIT_ATTR, ModelInit(check_init(init), reference, torch_init))
    initialise(model)
    return model


def _check_heads(name: str, width: int, heads: int) -> None:
    if width < 1 or heads < 1 or width % heads:
        raise ConfigError(f"model {name!r}: width {width} must be a positive multiple of heads "
                          f"{heads} (e.g. width 128, heads 4)")


@MODELS.register("vit_tiny")
def build_vit_tiny(
    input_shape: tuple[int, ...], num_classes: int, patch: int = 4, depth: int = 4,
    heads: int = 4, width: int = 128, mlp: int = 256, dropout: float = 0.0,
    init: str = "reference",
) -> nn.Module:
    """A small pre-norm ViT at CIFAR shapes (torchvision's ``VisionTransformer`` layout:
    ``nn.MultiheadAttention`` with its ``in_proj_weight``); init timm's
    (``transformer_models.timm_vit_init``, head included: never zeros)."""
    c, h, w = _image_shape("vit_tiny", input_shape)
    _check_heads("vit_tiny", width, heads)
    if patch < 1 or h % patch or w % patch:
        raise ConfigError(f"model.options.patch: {patch} must divide the image size {h}x{w}")
    model = ViTTiny(c, (h, w), num_classes, patch, depth, heads, width, mlp, dropout)
    return _transformer_init(model, init, timm_vit_init, torch_vit_init)


@MODELS.register("gpt_tiny")
def build_gpt_tiny(
    input_shape: tuple[int, ...], num_classes: int, n_layer: int = 2, n_head: int = 4,
    n_embd: int = 64, dropout: float = 0.0, tie_weights: bool = False, sdpa: bool = False,
    init: str = "reference",
) -> nn.Module:
    """A nanoGPT-style decoder-only LM (karpathy/nanoGPT ``model.py``): ``input_shape`` is
    ``(block_size,)``, ``num_classes`` the vocabulary; logits ``(B, vocab, T)``."""
    if len(input_shape) != 1 or input_shape[0] < 1:
        raise ConfigError(f"model 'gpt_tiny' needs input_shape (block_size,) of token ids; got "
                          f"{tuple(input_shape)} (use a text dataset such as stdlib_text)")
    _check_heads("gpt_tiny", n_embd, n_head)
    model = GPTTiny(num_classes, int(input_shape[0]), n_layer, n_head, n_embd, dropout,
                    tie_weights, sdpa)
    return _transformer_init(model, init, nanogpt_init, torch_gpt_init)
