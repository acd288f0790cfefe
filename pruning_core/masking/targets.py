"""Which parameters are prunable.

Default: the ``weight`` of every Conv and Linear layer, and the bare projection Parameters of
``nn.MultiheadAttention`` (``in_proj_weight``, or ``q_proj_weight``/``k_proj_weight``/
``v_proj_weight`` when the key/value widths differ; its ``out_proj`` is an ``nn.Linear``).
Biases and norm layers are off by default. ``include``/``exclude`` glob patterns on parameter
names narrow or widen the set: an ``include`` pattern that matches some default weight filters
the defaults; one that matches none of them names extra parameters to prune (an embedding
table ``*.embedding.weight``, a ``pos_embedding``, any named Parameter). ``exclude`` always wins.
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

#: the bare Parameters ``nn.MultiheadAttention`` projects queries, keys and values with
ATTENTION_PARAMS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


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


def _default_targets(model: nn.Module) -> dict[str, tuple[nn.Parameter, str]]:
    """``{parameter name: (parameter, kind)}`` prunable by default, in module order."""
    out: dict[str, tuple[nn.Parameter, str]] = {}
    attention_linears = set()
    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(mod, nn.MultiheadAttention):
            for attr in ATTENTION_PARAMS:
                p = getattr(mod, attr, None)
                if isinstance(p, nn.Parameter):
                    out[prefix + attr] = (p, "attention")
            attention_linears.add(id(mod.out_proj))
        elif isinstance(mod, PRUNABLE_TYPES) and getattr(mod, "weight", None) is not None:
            kind = "attention" if id(mod) in attention_linears else next(
                k for t, k in _KIND.items() if isinstance(mod, t))
            out[prefix + "weight"] = (mod.weight, kind)
    return out


def _targets(model: nn.Module, include: list[str] | None, exclude: list[str] | None
             ) -> dict[str, tuple[nn.Parameter, str]]:
    include = include or ["*"]
    exclude = exclude or []
    defaults = _default_targets(model)
    # a pattern matching no default weight names extra parameters (embeddings, any Parameter)
    extra = [p for p in include if not any(fnmatch.fnmatchcase(n, p) for n in defaults)]
    out: dict[str, tuple[nn.Parameter, str]] = {}
    seen: set[int] = set()
    # every name of a tied Parameter is looked at: the first that is chosen names it
    for name, p in model.named_parameters(remove_duplicate=False):
        if name in defaults:
            chosen, kind = _matches(name, include), defaults[name][1]
        else:
            chosen, kind = _matches(name, extra), _extra_kind(model, name)
        if chosen and not _matches(name, exclude) and id(p) not in seen:
            seen.add(id(p))
            out[name] = (p, kind)
    if not out:
        raise ConfigError(
            "prune.include/exclude: no prunable Conv/Linear/attention weights matched "
            f"(include={include}, exclude={exclude}); widen the patterns"
        )
    return out


def _extra_kind(model: nn.Module, name: str) -> str:
    mod_name, _, _ = name.rpartition(".")
    mod = model.get_submodule(mod_name) if mod_name else model
    return "embedding" if isinstance(mod, nn.Embedding | nn.EmbeddingBag) else "parameter"


def prunable_parameters(
    model: nn.Module,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, nn.Parameter]:
    """Ordered ``{parameter name: parameter}`` of prunable weights, in parameter order."""
    return {n: p for n, (p, _) in _targets(model, include, exclude).items()}


def layer_infos(model: nn.Module, include: list[str] | None = None,
                exclude: list[str] | None = None) -> list[LayerInfo]:
    """Prunable layers with kind (conv, linear, attention, embedding, parameter) and normalised
    depth (first 0.0, last 1.0)."""
    targets = _targets(model, include, exclude)
    n = len(targets)
    return [
        LayerInfo(name, kind, tuple(p.shape), p.numel(), i / (n - 1) if n > 1 else 0.0)
        for i, (name, (p, kind)) in enumerate(targets.items())
    ]
