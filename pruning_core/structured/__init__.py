"""Structured (channel) pruning: coupled groups, channel criteria, masks, physical compaction.

Pipeline: ``groups(model, input_shape)`` -> ``STRUCTURED_CRITERIA.get(name)(ctx)`` channel
scores -> ``select_channels(scores, groups, sparsity)`` keep -> either ``channel_masks`` (for
``MaskSet``: the engine's metrics work unchanged) or ``compact`` (a smaller dense model).
``prune_channels`` runs the whole loop, one shot or SNAP-it. See docs/structured.md.
"""

from .compact import compact, rebuild, slice_plan
from .criteria import STRUCTURED_CRITERIA, StructuredContext, StructuredCriterion
from .export import load_compact, save_compact
from .graph import ChannelGroup, Member, groups
from .iterate import ChannelPruning, prune_channels
from .masks import KeepIndices, channel_masks, keep_indices, weight_sparsity
from .optim import compact_optimizer_state
from .select import (
    Keep,
    full_keep,
    keep_top,
    node_sparsity,
    remove_fraction,
    remove_to,
    rescaled_fraction,
    scopes,
    select_channels,
)
from .speed import SpeedReport, latency_ms, measure_speed, train_step_ms

__all__ = [
    "STRUCTURED_CRITERIA", "ChannelGroup", "ChannelPruning", "Keep", "KeepIndices", "Member",
    "SpeedReport", "StructuredContext", "StructuredCriterion", "channel_masks", "compact",
    "compact_optimizer_state", "full_keep", "groups", "keep_indices", "keep_top",
    "latency_ms", "load_compact", "measure_speed", "node_sparsity", "prune_channels", "rebuild",
    "remove_fraction", "remove_to", "rescaled_fraction", "save_compact", "scopes",
    "select_channels", "slice_plan",
    "train_step_ms",
    "weight_sparsity",
]
