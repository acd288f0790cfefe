"""Channel pruning from scores to ``Keep``: one shot, or iterated (SNAP-it).

SNAP-it (SNIP-it ``models/criterions/SNAPit.py``) is SNAP repeated along the SNIP-it halving
schedule (``pruning_core.masking.schedules`` "snip_it": 0.5, then halve the gap to the target),
each step
removing the fraction (s_i − pruned) / (1 − pruned) of what is left
(:func:`~pruning_core.structured.select.rescaled_fraction`), where ``pruned`` is the node
sparsity actually reached so far (a group kept alive by the one-channel floor makes it lower
than the schedule's). Every step rescores the masked network.

This runs on a private copy of the model whose removed channels are zeroed; the caller's model
is not changed. The engine integration will call the criterion and selection itself.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..masking.criteria.base import Batch, LossFn
from ..masking.schedules import sparsity_steps
from .criteria import STRUCTURED_CRITERIA, StructuredContext
from .graph import ChannelGroup
from .masks import channel_masks
from .select import Keep, full_keep, node_sparsity, remove_to, rescaled_fraction

log = logging.getLogger(__name__)


@dataclass
class ChannelPruning:
    """What :func:`prune_channels` needs besides the model and groups."""

    criterion: str
    sparsity: float  # target node sparsity (fraction of channels removed)
    schedule: str = "one_shot"  # "snip_it" for SNAP-it
    steps: int = 1
    batches: list[Batch] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()
    loss_fn: LossFn = nn.functional.cross_entropy
    options: dict = field(default_factory=dict)
    seed: int = 0


def prune_channels(model: nn.Module, groups: list[ChannelGroup], cfg: ChannelPruning,
                   keep: Keep | None = None) -> Keep:
    """Score and select channels step by step; returns the final ``Keep``."""
    crit = STRUCTURED_CRITERIA.get(cfg.criterion)
    options = crit.options.model_validate(cfg.options)
    generator = torch.Generator().manual_seed(cfg.seed)
    keep = keep if keep is not None else full_keep(groups)
    work = copy.deepcopy(model)
    for target in sparsity_steps(cfg.schedule, cfg.sparsity, cfg.steps):
        _zero_removed(work, groups, keep)
        ctx = StructuredContext(model=work, groups=groups, keep=keep,
                                batches=cfg.batches if crit.needs_data else [],
                                input_shape=cfg.input_shape, loss_fn=cfg.loss_fn,
                                generator=generator, options=options)
        pruned = node_sparsity(groups, keep)
        fraction = rescaled_fraction(target, pruned)
        keep = remove_to(crit(ctx), groups, target, keep)  # heads in their own scope
        log.info("structured %s: step to %.4f removes %.4f of the rest -> node sparsity %.4f",
                 cfg.criterion, target, fraction, node_sparsity(groups, keep))
    return keep


@torch.no_grad()
def _zero_removed(model: nn.Module, groups: list[ChannelGroup], keep: Keep) -> None:
    params = dict(model.named_parameters())
    for name, mask in channel_masks(model, groups, keep).items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))
