"""Small classifiers for MNIST-scale inputs: ``mlp`` (LeNet-300-100), ``cnn1d`` (MNIST-1D),
``lenet5``.

Only stock layers hold parameters. ReLUs are not in-place: in-place ReLUs break module backward
hooks that criteria and similarity probes may attach, and the memory saved is negligible here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..base.errors import ConfigError
from .model_inits import open_lth_kaiming, torch_default, with_init
from .model_registry import MODELS, conv_out, image_chw

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
    return with_init(nn.Sequential(*layers), init, open_lth_kaiming)


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
            size = conv_out(size, int(k), stride=2, padding=1)
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
    return with_init(model, init, torch_default)


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
    c, h, w = image_chw("lenet5", input_shape)
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
    return with_init(model, init, open_lth_kaiming)

