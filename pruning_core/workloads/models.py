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

The registry and its builders' shared checks are in ``model_registry``; the builders register
themselves on import and this module imports them all, so ``MODELS`` is complete here:
``small_models`` (``mlp``, ``cnn1d``, ``lenet5``), ``cifar_models`` (VGG, ResNets),
``transformer_builders`` (``vit_tiny``, ``gpt_tiny``; modules in ``transformer_models``), and
``torchvision_models`` (``tv:``). Every name those modules (and ``model_inits``) export is
importable from here too: pickled models name their classes and initialisers by this path.

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
from typing import Any

from torch import nn

from ..base.errors import ConfigError
from ..base.suggest import with_hint
from .cifar_models import (  # noqa: F401
    VGG_CFGS,
    BasicBlock,
    CifarResNet,
    build_resnet18,
    build_resnet20,
    build_resnet32,
    build_vgg11_bn,
    build_vgg16_bn,
)
from .factories import build_model, is_import_path
from .model_inits import (  # noqa: F401
    INIT_ATTR,
    INITS,
    Initialiser,
    ModelInit,
    check_init,
    initialise,
    open_lth_kaiming,
    synflow_cifar_resnet18,
    synflow_lottery,
    torch_default,
    with_init,
)
from .model_registry import MODELS, ModelBuilder, conv_out, image_chw, scaled_channels  # noqa: F401
from .small_models import CNN1d, build_cnn1d, build_lenet5, build_mlp  # noqa: F401
from .torchvision_models import (  # noqa: F401
    TV_PREFIX,
    _TorchvisionFresh,
    create_torchvision,
    torchvision_weights_path,
)
from .transformer_builders import build_gpt_tiny, build_vit_tiny  # noqa: F401
from .transformer_models import (  # noqa: F401
    GPTTiny,
    ViTTiny,
    nanogpt_init,
    timm_vit_init,
    torch_gpt_init,
    torch_vit_init,
)

log = logging.getLogger(__name__)


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
        model = create_torchvision(name, input_shape, num_classes, options)
    else:
        builder = MODELS.get(name)
        _check_options(name, builder, options)
        model = builder(input_shape, num_classes, **options)
    log.debug("built model %s for input %s, %d classes", name, input_shape, num_classes)
    return model


def model_names() -> list[str]:
    """Registered names plus the ``tv:`` family placeholder (for help text and validation)."""
    return [*MODELS.names(), f"{TV_PREFIX}<torchvision classifier>"]
