"""Builders of the two transformers, ``vit_tiny`` and ``gpt_tiny`` (their modules and
initialisers are in ``transformer_models``; docs/transformers.md)."""

from __future__ import annotations

from torch import nn

from ..base.errors import ConfigError
from .model_inits import INIT_ATTR, Initialiser, ModelInit, check_init, initialise
from .model_registry import MODELS, image_chw
from .transformer_models import (
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
    c, h, w = image_chw("vit_tiny", input_shape)
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
