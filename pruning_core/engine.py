"""One pruning step: score -> allocate -> select -> apply.

``Pruner.step(sparsity)`` is all the timings (before / during / after training, IMP) call; it
neither knows nor cares which criterion, schedule or allocation is in play.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .allocation import ALLOCATIONS, AllocationContext
from .config import AllocationConfig
from .criteria import CRITERIA
from .criteria.base import Batch, LossFn, ScoreContext
from .errors import ConfigError
from .masks import MaskSet
from .select import keep_topk

log = logging.getLogger(__name__)


@dataclass
class Pruner:
    model: nn.Module
    masks: MaskSet
    criterion: str
    allocation: AllocationConfig
    final_sparsity: float
    batches: list[Batch]
    input_shape: tuple[int, ...]
    loss_fn: LossFn = nn.functional.cross_entropy
    criterion_options: dict = field(default_factory=dict)
    seed: int = 0
    #: leave out of pruning a layer whose kept weights are all zero when it is scored
    #: (``prune.prune_zero_layers: false``, the default; see ``zero_layers``)
    exclude_zero_layers: bool = True
    elapsed_s: float = 0.0
    #: the layers left out so far because their weights were all zero, in the order found
    excluded: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._criterion = CRITERIA.get(self.criterion)
        self._options = self._criterion.options.model_validate(self.criterion_options)
        self._allocation = ALLOCATIONS.get(self.allocation.name)()
        if self._allocation.needs_unsigned_scores and self._criterion.signed:
            raise ConfigError(
                f"prune.allocation: {self.allocation.name} squares scores and needs a criterion "
                f"with non-negative scores; {self.criterion} scores are signed; use allocation "
                "global, uniform or erk"
            )
        self.generator = torch.Generator().manual_seed(self.seed)

    def scores(self) -> dict[str, torch.Tensor]:
        ctx = ScoreContext(
            model=self.model, params=self.masks.params, masks=self.masks.masks,
            batches=self.batches if self._criterion.needs_data else [],
            input_shape=self.input_shape, loss_fn=self.loss_fn,
            generator=self.generator, options=self._options,
        )
        return self._criterion(ctx)

    def step(self, sparsity: float) -> None:
        """Prune to ``sparsity`` (fraction of prunable weights removed), nesting on the masks."""
        start = time.perf_counter()
        held = self._held()
        scores = self.scores()
        ctx = AllocationContext(
            shapes={n: tuple(p.shape) for n, p in self.masks.params.items()},
            kept=self.masks.kept_per_layer(), sparsity=sparsity,
            final_sparsity=self.final_sparsity, options=self.allocation,
            scores=scores, masks=self.masks.masks, held=held,
        )
        keep = self._allocation.keep_counts(ctx)
        self.masks.update({n: keep_topk(scores[n], self.masks[n], keep[n]) for n in keep})
        self.masks.apply()
        self.elapsed_s += time.perf_counter() - start
        log.info("pruned with %s to sparsity %.4f (target %.4f)", self.criterion,
                 self.masks.sparsity(), sparsity)

    def _held(self) -> frozenset[str]:
        """All-zero layers this step leaves alone (one warning each, the first time)."""
        if not self.exclude_zero_layers:
            return frozenset()
        zero = zero_layers(self.masks)
        for name in zero:
            if name not in self.excluded:
                self.excluded.append(name)
                log.warning("%s: every weight is zero at scoring time; left out of pruning "
                            "(set prune.prune_zero_layers: true to prune it anyway)", name)
        return frozenset(zero)


def zero_layers(masks: MaskSet) -> list[str]:
    """Layers that still keep weights but whose kept weights are all exactly zero.

    torchvision zero-initialises ``VisionTransformer.heads.head`` (and others zero some
    residual branches): every score with a factor |θ| (magnitude, SNIP, SynFlow) is 0 there,
    so a global threshold empties the layer first, which disconnects the network."""
    out = []
    for name, p in masks.params.items():
        m = masks[name]
        if bool(m.any()) and not bool((p.detach() * m).any()):
            out.append(name)
    return out

