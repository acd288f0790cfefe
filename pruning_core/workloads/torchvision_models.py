"""``tv:<name>``: any torchvision classifier, built with random weights or read from the local
cache (weights are never downloaded)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import ConfigError
from ..base.suggest import did_you_mean
from .model_inits import INIT_ATTR, ModelInit, check_init, torch_default

log = logging.getLogger(__name__)

TV_PREFIX = "tv:"


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


def create_torchvision(
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

