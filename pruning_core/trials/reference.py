"""The dense reference of a trial, and the trial's layer similarity to it (WACV 2020).

The reference is the same architecture, seed, data and training as the trial with nothing
pruned (``prune.sparsity: 0``, timing ``before``), trained for ``train.epochs``. A sweep trains it
once: its weights live in the sweep's dense cache (``dense_cache.py``) under a key of everything
it depends on, so every trial of the same model/data/train/seed shares one. Without a cache (a
single ``prunetune run``) it is trained in place.

``metrics.similarity`` = {method, layers, examples}: activations of the first ``examples`` test
inputs, compared layer by layer (module names present in both networks; ``layers: all`` = every
Conv/Linear) with ``pruning_core.similarity.compare_models``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..config import TrialConfig
from .dense_cache import DenseCache, cache_key

if TYPE_CHECKING:
    from .trial import Trial

log = logging.getLogger(__name__)


class MemoryCache:
    """A per-process cache: what a single run uses when no sweep cache is given."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def get_or_create(self, key: str, create: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if key not in self.entries:
            self.entries[key] = create()
        return self.entries[key]


def dense_config(cfg: TrialConfig) -> TrialConfig:
    """The trial's dense twin: nothing pruned, no variant, no extra metrics."""
    dense = cfg.model_copy(deep=True)
    dense.prune.sparsity = 0.0
    dense.prune.timing.name = "before"
    dense.prune.variant = "none"
    dense.metrics.similarity = None
    dense.tags = {}
    return dense


def dense_reference(cfg: TrialConfig, cache: DenseCache | None,
                    trial_type: type[Trial]) -> nn.Module:
    """The trained dense twin of ``cfg`` (trained here once per cache key), a ``trial_type``
    (``experiment.Trial``, passed in: the experiment calls this module, not the reverse)."""
    twin = trial_type(dense_config(cfg))

    def create() -> dict[str, Any]:
        log.info("training the dense reference (%d epochs)", twin.total_epochs)
        while twin.done < len(twin.plan):
            twin.execute(twin.plan[twin.done], None)
            twin.done += 1
        return {"model": {k: v.detach().cpu().clone() for k, v in twin.model.state_dict().items()}}

    key = "reference-" + cache_key(twin.cfg, twin.plan, len(twin.plan))
    state = (cache or MemoryCache()).get_or_create(key, create)
    twin.model.load_state_dict(state["model"])
    return twin.model


def similarity_to_dense(trial: Trial, cache: DenseCache | None) -> dict[str, float]:
    """``{layer: similarity}`` of the trial's network to its dense reference."""
    from ..similarity import compare_models

    spec = trial.cfg.metrics.similarity
    assert spec is not None
    reference = dense_reference(trial.cfg, cache, type(trial)).to(trial.device)
    pairs = None if spec.layers == "all" else [(name, name) for name in spec.layers]
    batches, seen = [], 0
    for x, _y in trial.test_loader:
        batches.append(x[: spec.examples - seen])
        seen += len(batches[-1])
        if seen >= spec.examples:
            break
    with torch.random.fork_rng(devices=[]):
        out = compare_models(trial.model, reference, batches, method=spec.method, pairs=pairs)
    return {a: float(v) for (a, _b), v in out.items()}
