"""What a trial config will prune, without data or training: ``prunetune layers``."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import TrialConfig
from ..masking.engine import zero_layers
from ..masking.masks import MaskSet
from ..masking.targets import LayerInfo, layer_infos, prunable_parameters
from ..structured.compact_file import load_weights
from ..workloads.data import dataset_spec
from ..workloads.models import create_model


@dataclass(frozen=True)
class PruneTargets:
    """The prunable layers of ``cfg``'s model, and those left out for all-zero weights."""

    layers: list[LayerInfo]
    #: all-zero at build time (after ``model.weights`` loads): left out of a prune step that
    #: scores them so, unless ``prune.prune_zero_layers``
    zero: list[str]
    excluded_by_default: bool

    @property
    def total(self) -> int:
        return sum(i.numel for i in self.layers)

    @property
    def pruned_total(self) -> int:
        left_out = set(self.zero) if self.excluded_by_default else set()
        return sum(i.numel for i in self.layers if i.name not in left_out)


def prune_targets(cfg: TrialConfig) -> PruneTargets:
    """Build ``cfg``'s model on CPU (its init, or ``model.weights``) and list its targets."""
    input_shape, num_classes = dataset_spec(cfg.data.name, root=cfg.data.root, seed=cfg.seed,
                                            **cfg.data.options)
    model = create_model(cfg.model.name, input_shape, num_classes, **cfg.model.options)
    if cfg.model.weights is not None:
        load_weights(model, cfg.model.weights, cfg.model.weights_strict)
    p = cfg.prune
    layers = layer_infos(model, p.include, p.exclude)
    zero = zero_layers(MaskSet(prunable_parameters(model, p.include, p.exclude)))
    return PruneTargets(layers, zero, not p.prune_zero_layers)
