"""``ChannelPruner``: the engine's prune step for ``prune.granularity: channel``.

The same contract as :class:`pruning_core.masking.engine.Pruner` (``step(sparsity)``, ``generator``,
``elapsed_s``), so every timing drives it unchanged: score channels with a structured
criterion, remove the SNAP-it fraction (s_i − pruned) / (1 − pruned) of the channels still kept
(SNIP-it ``models/criterions/SNAPit.py``), and expand the kept channels back to weight masks on
the engine's :class:`~pruning_core.masking.masks.MaskSet`, so metrics, schedules and checkpoints
keep
working on the full-size network until :func:`pruning_core.structured.compact` shrinks it.
``sparsity`` here is node sparsity (the fraction of channels removed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..base.registry import Registry
from ..masking.criteria import CRITERIA
from ..masking.criteria.base import ScoreContext, forward, restored_mode
from ..masking.engine import PruneStep
from ..masking.masks import MaskSet
from ..masking.select import ranked, top_mask
from ..masking.targets import prunable_parameters
from .criteria import STRUCTURED_CRITERIA, StructuredContext
from .graph import WEIGHT_TYPES, ChannelGroup, groups
from .masks import channel_masks
from .select import (
    Keep,
    full_keep,
    keep_top,
    node_sparsity,
    remove_to,
)

log = logging.getLogger(__name__)


def ignored_layers(model: nn.Module, include: list[str], exclude: list[str]) -> list[str]:
    """Conv/Linear modules whose weight ``prune.include`` / ``prune.exclude`` leave out: their
    output channels are never pruned (their inputs may still shrink with a pruned producer)."""
    chosen = set(prunable_parameters(model, include, exclude))
    out = []
    for name, m in model.named_modules():
        weight = f"{name}.weight" if name else "weight"
        if isinstance(m, WEIGHT_TYPES) and weight not in chosen:
            out.append(name)
        elif isinstance(m, nn.MultiheadAttention) and f"{name}.in_proj_weight" not in chosen:
            out.append(name)  # its heads (structured.heads) stay
    return out


def channel_maskset(model: nn.Module, gs: list[ChannelGroup]) -> MaskSet:
    """A ``MaskSet`` over every Conv/Linear weight of ``model``, all kept: channel masks touch
    the group members' weights, and weight sparsity is counted over all of them."""
    params = prunable_parameters(model)
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
    for name in channel_masks(model, gs, full_keep(gs)):
        if name not in params:  # a member weight outside the default targets (never expected)
            params[name] = model.get_parameter(name)
            masks[name] = torch.ones_like(params[name], dtype=torch.bool)
    return MaskSet(params, masks)


@dataclass(kw_only=True)
class ChannelPruner(PruneStep):
    """The channel granularity (SNAP-it): ``step(sparsity)`` to node sparsity."""

    groups: list[ChannelGroup]
    registry: ClassVar[Registry[Any]] = STRUCTURED_CRITERIA
    compacts: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.keep: Keep = full_keep(self.groups)

    def structure_state(self) -> dict[str, Any]:
        return {"keep": {str(g): k.clone() for g, k in self.keep.items()}}

    def restore_structure(self, state: dict[str, Any]) -> bool:
        if "keep" not in state:
            return False
        self.set_keep({int(g): k for g, k in state["keep"].items()})
        self.masks.replace(state["masks"])  # CNIP: weights pruned inside kept channels
        return True

    def size_metrics(self) -> dict[str, float]:
        return {"node_sparsity": self.node_sparsity()}

    @classmethod
    def for_model(cls, model: nn.Module, input_shape: tuple[int, ...], include: list[str],
                  exclude: list[str], **kwargs: object) -> ChannelPruner:
        """Trace ``model``'s channel groups and bind a fresh ``MaskSet`` to its weights."""
        gs = groups(model, input_shape, ignored_layers(model, include, exclude))
        return cls(model=model, masks=channel_maskset(model, gs), groups=gs,
                   input_shape=input_shape, **kwargs)  # type: ignore[arg-type]

    def node_sparsity(self) -> float:
        return node_sparsity(self.groups, self.keep)

    def set_keep(self, keep: Keep) -> None:
        """Restore a selection (a checkpoint's) and re-derive the weight masks from it."""
        self.keep = {g.id: keep[g.id].to(torch.bool).cpu().clone() for g in self.groups}
        self.masks.replace({**{n: torch.ones_like(m) for n, m in self.masks.masks.items()},
                            **channel_masks(self.model, self.groups, self.keep)})

    def step(self, sparsity: float) -> None:
        """Prune to node sparsity ``sparsity``, nesting on the channels already removed
        (CNIP: to ``sparsity`` of weights and nodes ranked together)."""
        start = time.perf_counter()
        ctx = StructuredContext(
            model=self.model, groups=self.groups, keep=self.keep,
            batches=self.batches if self._criterion.needs_data else [],
            input_shape=self.input_shape, loss_fn=self.loss_fn, generator=self.generator,
            options=self._options,
        )
        if self._criterion.joint_weights is not None:
            self._joint_step(sparsity, self._criterion(ctx))
        else:
            self.keep = remove_to(self._criterion(ctx), self.groups, sparsity, self.keep)
        self.masks.update(channel_masks(self.model, self.groups, self.keep))
        self.masks.apply()
        self.elapsed_s += time.perf_counter() - start
        log.info("pruned channels with %s to node sparsity %.4f (target %.4f; weight sparsity "
                 "%.4f)", self.criterion, self.node_sparsity(), sparsity, self.masks.sparsity())

    def _joint_step(self, sparsity: float, node: dict[int, torch.Tensor]) -> None:
        """CNIP (SNIP-it ``models/criterions/CNIP.py``): one threshold over weight and node
        scores keeps ``(1 - sparsity)`` of all of them (removed ones count as removed); each
        half then keeps its share (nodes with the one-per-group floor)."""
        weights = joint_weight_scores(self, self._criterion.joint_weights or "snip")
        names = list(self.masks.masks)
        node_flat = torch.cat([ranked(node[g.id].double().cpu(), self.keep[g.id])
                               for g in self.groups])
        weight_flat = torch.cat([ranked(weights[n].double().cpu(), self.masks[n].cpu())
                                 for n in names])
        total = node_flat.numel() + weight_flat.numel()
        chosen = top_mask(torch.cat([node_flat, weight_flat]), total - round(sparsity * total))
        n_nodes, n_weights = int(chosen[:node_flat.numel()].sum()), \
            int(chosen[node_flat.numel():].sum())
        self.keep = keep_top(node, self.groups, n_nodes, self.keep)
        kept = top_mask(weight_flat, n_weights).split([self.masks[n].numel() for n in names])
        self.masks.update({n: k.view_as(self.masks[n]) for n, k in zip(names, kept, strict=True)})


def joint_weight_scores(pruner: ChannelPruner, name: str) -> dict[str, torch.Tensor]:
    """A weight criterion's scores on the same footing as SNAP's node scores: the authors'
    SNIP elasticity |ḡ ⊙ w| / |L̄| (mean gradient and mean loss over the scoring batches, eval
    mode). Our ``snip`` sums the batches' gradients, so it is divided by B·|L̄|."""
    weight_criterion = CRITERIA.get(name)
    ctx = ScoreContext(model=pruner.model, params=pruner.masks.params,
                       masks=pruner.masks.masks, batches=pruner.batches,
                       input_shape=pruner.input_shape, loss_fn=pruner.loss_fn,
                       generator=pruner.generator,
                       options=weight_criterion.options.model_validate({}))
    scores = weight_criterion(ctx)
    with restored_mode(pruner.model), torch.no_grad():
        pruner.model.eval()
        losses = [pruner.loss_fn(forward(pruner.model, x), y) for x, y in pruner.batches]
    n = max(len(losses), 1)
    mean_loss = abs(float(sum(losses) / n)) if losses else 1.0
    return {k: v / (n * mean_loss + 1e-12) for k, v in scores.items()}
