"""Which parameters are prunable.

Default: the ``weight`` of every Conv and Linear layer. Biases and norm layers are off by default;
``include``/``exclude`` glob patterns on parameter names narrow or widen the set.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

from ..base.errors import ConfigError

#: Layer types whose weights are prunable by default. Structured pruning will add node/channel
#: granularity on top of the same list.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
)

_KIND = {nn.Linear: "linear", nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv"}


@dataclass(frozen=True)
class LayerInfo:
    """A prunable parameter: name, layer kind, size and normalised depth in [0, 1]."""

    name: str
    kind: str
    shape: tuple[int, ...]
    numel: int
    depth: float


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def prunable_parameters(
    model: nn.Module,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, nn.Parameter]:
    """Ordered ``{parameter name: parameter}`` of prunable weights, in module order."""
    include = include or ["*"]
    exclude = exclude or []
    out: dict[str, nn.Parameter] = {}
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, PRUNABLE_TYPES) or getattr(mod, "weight", None) is None:
            continue
        name = f"{mod_name}.weight" if mod_name else "weight"
        if _matches(name, include) and not _matches(name, exclude):
            out[name] = mod.weight
    if not out:
        raise ConfigError(
            "prune.include/exclude: no prunable Conv/Linear weights matched "
            f"(include={include}, exclude={exclude}); widen the patterns"
        )
    return out


def layer_infos(model: nn.Module, include: list[str] | None = None,
                exclude: list[str] | None = None) -> list[LayerInfo]:
    """Prunable layers with kind and normalised depth (first 0.0, last 1.0)."""
    params = prunable_parameters(model, include, exclude)
    kinds = {f"{n}.weight" if n else "weight": _KIND[type(m)]
             for n, m in model.named_modules() if type(m) in _KIND}
    n = len(params)
    return [
        LayerInfo(name, kinds.get(name, "other"), tuple(p.shape), p.numel(),
                  i / (n - 1) if n > 1 else 0.0)
        for i, (name, p) in enumerate(params.items())
    ]
