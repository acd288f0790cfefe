"""Which channels to keep: a global top-k over every group's channel scores.

``Keep`` maps a group id to a bool vector over its channels (True = kept). Selection nests (a
channel pruned before stays pruned), breaks ties by position
(``pruning_core.masking.select.top_mask``)
and never empties a group: a group left with no channel keeps its best one and a warning is
logged, as the authors' SNAP does (SNIP-it ``models/criterions/SNAP.py``, ``handle_pruning``:
"ensure not disconnecting" keeps ``argmax(grad)``). The global count may then exceed the target
by at most one channel per emptied group.

Attention heads (``structured.heads``) are ranked in a scope of their own, at the same node
sparsity as the channels, as torch-pruning ranks heads apart from channels (``ATTN_HEAD_SCOPE``
in ``torch_pruning/pruner/algorithms/base_pruner.py``): a head owns ``4 d`` rows and columns
against a neuron's two, so in one ranking the summed criteria never reach a head
(``benchmarks/vit_heads.py``).
"""

from __future__ import annotations

import logging

import torch

from ..base.errors import ConfigError
from ..masking.select import ranked, sanitize, top_mask
from .graph import ChannelGroup, is_head_group

log = logging.getLogger(__name__)

Keep = dict[int, torch.Tensor]  # group id -> (size,) bool, True = kept


def full_keep(groups: list[ChannelGroup]) -> Keep:
    """Every channel kept."""
    return {g.id: torch.ones(g.size, dtype=torch.bool) for g in groups}


def node_sparsity(groups: list[ChannelGroup], keep: Keep) -> float:
    """Fraction of prunable channels (nodes) removed."""
    total = sum(g.size for g in groups)
    kept = sum(int(keep[g.id].sum()) for g in groups)
    return 1.0 - kept / total if total else 0.0


def scopes(groups: list[ChannelGroup]) -> list[list[ChannelGroup]]:
    """The groups ranked together: the channels, then the attention heads (if any)."""
    heads = [g for g in groups if is_head_group(g)]
    rest = [g for g in groups if not is_head_group(g)]
    return [s for s in (rest, heads) if s]


def remove_to(scores: dict[int, torch.Tensor], groups: list[ChannelGroup], target: float,
              keep: Keep) -> Keep:
    """SNAP-it's step to node sparsity ``target`` in each scope: remove the
    :func:`rescaled_fraction` of what the scope still keeps."""
    out = dict(keep)
    for scope in scopes(groups):
        fraction = rescaled_fraction(target, node_sparsity(scope, keep))
        out.update(remove_fraction(scores, scope, fraction, keep))
    return out


def rescaled_fraction(target: float, pruned: float) -> float:
    """SNAP-it's step size: the fraction of the *remaining* channels to remove now so that the
    network reaches ``target`` (fraction of all channels): (s_i - pruned) / (1 - pruned).

    SNIP-it ``models/criterions/SNAPit.py``: ``prune_now = (percentage - self.pruned) /
    (self.left + 1e-8)`` with ``left = 1 - pruned``; clamped at 0 when a floor already kept more.
    """
    if pruned >= 1.0:
        return 0.0
    return max(0.0, (target - pruned) / (1.0 - pruned))


def select_channels(scores: dict[int, torch.Tensor], groups: list[ChannelGroup],
                    sparsity: float, keep: Keep | None = None) -> Keep:
    """Keep the top ``round((1 - sparsity) * total)`` channels over all groups of each scope
    (higher score = keep), among those ``keep`` still keeps."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"prune.sparsity must be in [0, 1) for channels; got {sparsity}")
    out: Keep = {}
    for scope in scopes(groups):
        total = sum(g.size for g in scope)
        out.update(keep_top(scores, scope, total - round(sparsity * total), keep))
    return out


def remove_fraction(scores: dict[int, torch.Tensor], groups: list[ChannelGroup],
                    fraction: float, keep: Keep) -> Keep:
    """Remove ``round(fraction * remaining)`` of the channels still kept (SNAP-it's step)."""
    remaining = sum(int(keep[g.id].sum()) for g in groups)
    return keep_top(scores, groups, remaining - round(fraction * remaining), keep)


def keep_top(scores: dict[int, torch.Tensor], groups: list[ChannelGroup], n_keep: int,
             keep: Keep | None = None) -> Keep:
    """The ``n_keep`` best channels overall (nesting on ``keep``), at least one per group."""
    keep = keep if keep is not None else full_keep(groups)
    missing = [g.id for g in groups if g.id not in scores]
    if missing:
        raise ValueError(f"structured scores: no scores for groups {missing}")
    flat = torch.cat([ranked(scores[g.id].cpu(), keep[g.id].cpu()) for g in groups])
    n_keep = max(0, min(n_keep, int(sum(int(keep[g.id].sum()) for g in groups))))
    chosen = top_mask(flat, n_keep).split([g.size for g in groups])
    out: Keep = {}
    for g, mask in zip(groups, chosen, strict=True):
        if not bool(mask.any()):
            s = sanitize(scores[g.id].cpu()).masked_fill(~keep[g.id].cpu(), float("-inf"))
            mask = mask.clone()
            mask[int(torch.argmax(s))] = True
            log.warning("structured: channel group %d (%s) would be emptied; keeping its best "
                        "channel", g.id, ", ".join(g.layers))
        out[g.id] = mask
    return out
