"""Initialisers (``model.options.init``) and how a model remembers its own.

Pruning at initialisation ranks the *initial* weights, so each layer's init scale decides which
layer a criterion empties first. ``reference`` draws as the repository a model follows (cited
in each initialiser), ``torch`` as PyTorch's defaults. ``with_init`` records the choice on the
model (``INIT_ATTR``) so that :func:`initialise` re-draws with the same init later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..base.errors import ConfigError

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


def with_init(model: nn.Module, init: str, reference: Initialiser) -> nn.Module:
    """Record ``init`` on a freshly built model and draw its parameters with it."""
    setattr(model, INIT_ATTR, ModelInit(check_init(init), reference))
    initialise(model)
    return model
