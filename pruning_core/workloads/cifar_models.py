"""CIFAR-form convolutional networks: VGG with BatchNorm and ResNets (20, 32, 18).

Only stock layers hold parameters; residual blocks only route tensors between them. ReLUs are
not in-place (in-place ReLUs break the module backward hooks criteria and probes attach).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .model_inits import Initialiser, synflow_cifar_resnet18, synflow_lottery, with_init
from .model_registry import MODELS, image_chw, scaled_channels

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
    c, h, w = image_chw(name, input_shape)
    layers: list[nn.Module] = []
    for v in VGG_CFGS[name]:
        if v == "M":
            # Pool only while there is something to halve, so 8x8 inputs keep all convs.
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            continue
        out = scaled_channels(int(v), width)
        layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out)]
        layers.append(nn.ReLU())
        c = out
    model = nn.Sequential(
        *layers,  # (B, 512w, h, w)
        nn.AdaptiveAvgPool2d(1),  # (B, 512w, 1, 1); identity at 32x32
        nn.Flatten(),  # (B, 512w)
        nn.Linear(c, num_classes),  # (B, num_classes)
    )
    return with_init(model, init, synflow_lottery)


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
    c, _, _ = image_chw(name, input_shape)
    model = CifarResNet(c, num_classes, [scaled_channels(ch, width) for ch in channels], blocks)
    return with_init(model, init, reference)


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

