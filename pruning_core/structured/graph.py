"""Coupled channel groups, found with torch-pruning's ``DependencyGraph``.

A *group* is a set of channels that must be removed together: the output channels of a conv,
the BatchNorm after it, every conv whose output is added to it (residual adds), and the input
columns of every layer that reads it (the next conv, or the first Linear after a flatten, where
one channel owns ``H * W`` input features). Channel ``c`` of a group is one *node*: removing it
removes one output row of every "out" member and the matching input column(s) of every "in"
member.

We keep torch-pruning only for the tracing: its groups are converted once into plain
:class:`ChannelGroup` records (module names and index tensors), so masks, compaction, rebuilding
from stored indices and optimiser surgery never need the graph again.

Channels that reach the model's output (the classifier's output units, or any group with the
network output in it) are never grouped, so they are never pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..base.errors import ConfigError
from ..masking.criteria.base import restored_mode
from .heads import HeadLayout, attention_heads

log = logging.getLogger(__name__)

Role = Literal["out", "in"]
Kind = Literal["conv", "linear", "norm", "attention"]

#: Layer types whose channels we can slice (everything else coupled to a group is refused).
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
WEIGHT_TYPES: tuple[type[nn.Module], ...] = (*CONV_TYPES, nn.Linear)
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Member:
    """One layer's share of a group.

    ``role`` "out": positions along the layer's output dimension (weight rows, bias, BatchNorm
    parameters and buffers); "in": positions along the weight's input dimension (dim 1).
    ``index[k]`` is a position in the layer, ``channel[k]`` the group channel it belongs to.
    ``kind``: "conv", "linear", "norm" (BatchNorm) or "attention" (an
    ``nn.MultiheadAttention``: rows of its ``in_proj_weight``, see ``structured.heads``).
    """

    module: str
    role: Role
    index: torch.Tensor  # (n,) int64 positions in the layer
    channel: torch.Tensor  # (n,) int64 group channel of each position
    kind: Kind = "conv"


@dataclass(frozen=True)
class ChannelGroup:
    id: int
    size: int  # number of channels (nodes)
    members: tuple[Member, ...]

    @property
    def layers(self) -> list[str]:
        """Names of the Conv/Linear layers whose output channels this group is."""
        return [m.module for m in self.members if m.role == "out" and m.kind != "norm"]

    def __repr__(self) -> str:
        return f"ChannelGroup(id={self.id}, size={self.size}, layers={self.layers})"


def groups(model: nn.Module, input_shape: tuple[int, ...],
           ignored_layers: list[str] | None = None) -> list[ChannelGroup]:
    """The model's prunable channel groups, in torch-pruning's order.

    ``input_shape`` excludes the batch dimension. The last ``nn.Linear`` (the classifier) and
    ``ignored_layers`` (module names) are never roots; groups that reach the network output are
    skipped. The model is left as found (tracing runs one eval-mode forward with every parameter
    requiring grad, so frozen layers are traced too; modes and flags are restored).
    Raises ``ConfigError`` naming the layer if torch-pruning cannot trace the model.
    """
    names = {m: n for n, m in model.named_modules()}
    ignored = [_module(model, n) for n in (ignored_layers or [])]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        ignored.append(linears[-1])
    graph = _trace(model, input_shape)
    heads = attention_heads(model, {n for n, m in model.named_modules() if m in ignored})
    grouped = {h.out_proj for h in heads}  # run inside the fused attention: never traced
    untraced = [f"{n!r} ({type(m).__name__}) is not in the autograd graph"
                for n, m in model.named_modules()
                if isinstance(m, WEIGHT_TYPES) and m not in graph.module2node
                and n not in grouped]
    for why in untraced:
        log.warning("structured: layer %s; its channels stay unpruned", why)
    param_names = {id(p): n for n, p in model.named_parameters()}
    out: list[ChannelGroup] = []
    refused: list[str] = []
    for tp_group in graph.get_all_groups(ignored_layers=ignored):
        members, bad = _members(tp_group, graph, names, param_names)
        if bad:
            root = names.get(tp_group[0].dep.target.module, "?")
            refused.append(f"{bad} cannot be sliced (coupled to the channels of {root!r})")
            log.warning("structured: layer %s; those channels stay unpruned", refused[-1])
            continue
        if members is None:
            continue
        size = len(tp_group[0].idxs)  # the root layer: every channel once
        out.append(ChannelGroup(len(out), size, tuple(members)))
    out += [head_group(h, len(out) + i) for i, h in enumerate(heads)]
    if not out:
        why = (refused + untraced)[:1]
        raise ConfigError(
            f"prune.granularity channel: {type(model).__name__} has no prunable channel group"
            f"{': layer ' + why[0] if why else ''}; use granularity weight")
    log.debug("structured: %d channel groups, %d channels", len(out), sum(g.size for g in out))
    return out



def _trace(model: nn.Module, input_shape: tuple[int, ...]) -> Any:  # tp.DependencyGraph
    """torch-pruning's dependency graph of ``model``, traced with one random example; the
    model's modes and flags are restored. ``ConfigError`` naming the layer where it fails."""
    import torch_pruning as tp

    example = torch.randn(1, *input_shape, device=_device(model))
    # torch-pruning's tracer calls model.eval() and never switches back
    with restored_mode(model), _all_require_grad(model), _failing_layer(model) as where:
        try:
            # a plain forward first: torch-pruning's tracer swallows some forward errors and
            # returns a partial graph (seen with a Linear fed the wrong number of features)
            with torch.no_grad():
                model.eval()
                model(example)
            return tp.DependencyGraph().build_dependency(model, example_inputs=example,
                                                         verbose=False)
        except Exception as exc:  # torch-pruning and user forwards raise anything
            layer = f" at layer {where[-1]!r} ({type(_module(model, where[-1])).__name__})" \
                if where else ""
            raise ConfigError(
                f"prune.granularity channel: torch-pruning cannot trace {type(model).__name__}"
                f"{layer}: {_one_line(exc)}; use granularity weight"
            ) from None


def _members(tp_group, graph, names: dict[nn.Module, str], param_names: dict[int, str]
             ) -> tuple[list[Member] | None, str | None]:
    """Our members of one torch-pruning group; (None, None) for an output group,
    (members, 'name (Type)') when a coupled layer cannot be sliced."""
    import torch_pruning as tp

    members: list[Member] = []
    for item in tp_group:
        target = item.dep.target
        if target.type == tp.ops.OPTYPE.OUTPUT:
            return None, None  # the channels reach the network output: never prune
        module = target.module
        if isinstance(module, nn.Parameter):
            name = param_names.get(id(module), "?")
            return members, f"{name!r} (an nn.Parameter used outside Conv/Linear/BatchNorm)"
        if not _has_state(module):
            continue  # add, flatten, concat, ...: routing only
        name = names.get(module, "?")
        if not _supported(module):
            return members, f"{name!r} ({type(module).__name__})"
        role: Role = "out" if graph.is_out_channel_pruning_fn(item.dep.handler) else "in"
        index = torch.as_tensor(list(item.idxs), dtype=torch.long)
        channel = torch.as_tensor(list(item.root_idxs), dtype=torch.long)
        kind: Kind = ("linear" if isinstance(module, nn.Linear)
                      else "conv" if isinstance(module, CONV_TYPES) else "norm")
        members.append(Member(name, role, index, channel, kind))
    return members, None


def _supported(m: nn.Module) -> bool:
    if isinstance(m, CONV_TYPES):
        if m.transposed:
            return False
        return m.groups == 1 or (m.groups == m.in_channels == m.out_channels)  # dense or depthwise
    return isinstance(m, nn.Linear | nn.modules.batchnorm._BatchNorm)


def head_group(layout: HeadLayout, gid: int) -> ChannelGroup:
    """An attention's heads as a group (``structured.heads``): node h is head h, its q/k/v
    rows of ``in_proj_weight`` ("attention", "out") and its ``out_proj`` columns ("in")."""
    rows, row_heads = layout.rows()
    cols, col_heads = layout.columns()
    return ChannelGroup(gid, layout.num_heads, (
        Member(layout.attention, "out", rows, row_heads, "attention"),
        Member(layout.out_proj, "in", cols, col_heads, "linear")))


def is_head_group(group: ChannelGroup) -> bool:
    return any(mem.kind == "attention" for mem in group.members)


def member_weight(model: nn.Module, mem: Member) -> tuple[str, torch.Tensor, int] | None:
    """(parameter name, weight, dim) that a member's positions index; ``None`` for BatchNorm
    and anything else without a sliceable weight."""
    m = model.get_submodule(mem.module)
    prefix = f"{mem.module}." if mem.module else ""
    if mem.kind == "attention" and isinstance(m, nn.MultiheadAttention):
        return f"{prefix}in_proj_weight", m.in_proj_weight, 0
    if not isinstance(m, WEIGHT_TYPES):
        return None
    return f"{prefix}weight", m.weight, 0 if mem.role == "out" or is_depthwise(m) else 1


def is_depthwise(m: nn.Module) -> bool:
    return (isinstance(m, CONV_TYPES) and m.groups > 1
            and m.groups == m.in_channels == m.out_channels)


def _has_state(m: nn.Module) -> bool:
    """Parameters or buffers (a BatchNorm with ``affine=False`` still has running stats)."""
    return isinstance(m, nn.Module) and (any(True for _ in m.parameters(recurse=False))
                                         or any(True for _ in m.buffers(recurse=False)))


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"structured: no layer named {name!r} in the model") from None


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."



@contextmanager
def _all_require_grad(model: nn.Module) -> Iterator[None]:
    """The tracer follows autograd: a frozen layer would be invisible to it."""
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


@contextmanager
def _failing_layer(model: nn.Module) -> Iterator[list[str]]:
    """Yields the stack of layer names being run, so a failed trace can name the layer."""
    stack: list[str] = []
    handles = []
    for name, m in model.named_modules():
        if not name:
            continue

        def pre(_m, _inp, name=name):
            stack.append(name)

        def post(_m, _inp, _out, name=name):
            if stack and stack[-1] == name:
                stack.pop()

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        yield stack  # non-empty after an exception raised inside a layer
    finally:
        for h in handles:
            h.remove()
