"""Which configs may share a pack: the one declared rule.

Members of a pack run one batched model, so they must agree on everything that fixes the
computation's shapes and its loop. :data:`PACK_FIELDS` lists those fields (dotted config
paths); :func:`pack_key` reads them, and configs with equal keys may share a pack. Everything
else may differ per member: criterion and its options, schedule, steps, sparsity, allocation,
variant, include/exclude, seed, lr and its schedule, weight decay, momentum, label noise,
augmentation, the end metrics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..config import TrialConfig

#: the fields members of one pack share
PACK_FIELDS: tuple[str, ...] = (
    # the network: its shapes and its code
    "model.name", "model.options", "model.weights",
    # the batches: dataset, its size and shapes, the batch size
    "data.name", "data.root", "data.options", "data.train_limit", "data.batch_size",
    # the loop: how many epochs, in which phases, with which optimiser's maths
    "train.epochs", "train.optimizer",
    "prune.timing.name", "prune.timing.pretrain_epochs", "prune.timing.rewind_epoch",
    # where and how it computes
    "train.device", "train.amp", "train.channels_last", "train.compile", "train.threads",
    # channel pruning rebuilds each member's network to its own, smaller shapes
    "prune.granularity", "prune.compact",
)


def _get(cfg: TrialConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def pack_key(cfg: TrialConfig) -> str | None:
    """The values of :data:`PACK_FIELDS` (a canonical JSON string), or ``None`` for a config
    that always runs alone (a channel-pruned network that is compacted: its shapes become its
    own after the last prune event)."""
    if cfg.prune.granularity == "channel" and cfg.prune.compact:
        return None
    return json.dumps({f: _get(cfg, f) for f in PACK_FIELDS}, sort_keys=True, default=str)


def split_packs(cfgs: Sequence[TrialConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped into compatible packs, in order of first appearance;
    a config of key ``None`` is a pack of its own. Every index is in exactly one pack."""
    groups: dict[str, list[int]] = {}
    packs: list[list[int]] = []
    for i, cfg in enumerate(cfgs):
        key = pack_key(cfg)
        if key is None:
            packs.append([i])
        elif key in groups:
            groups[key].append(i)
        else:
            groups[key] = [i]
            packs.append(groups[key])
    return packs
