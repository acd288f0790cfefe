"""All registries in one place: the catalogue that ``load_trial_config`` checks names against."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..base.errors import ConfigError
from ..base.registry import Registry
from ..base.suggest import with_hint
from ..config import TrialConfig, format_validation_error
from ..masking.allocation import ALLOCATIONS, check_signed
from ..masking.compare import COMPARISONS
from ..masking.criteria import CRITERIA
from ..masking.engine import Pruner, PruneStep
from ..masking.schedules import SCHEDULES
from ..masking.variants import VARIANTS
from ..structured.pruner import ChannelPruner
from ..workloads.data import DATASETS
from ..workloads.factories import is_import_path, resolve
from ..workloads.models import MODELS
from .timing import TIMINGS

__all__ = ["ALLOCATIONS", "COMPARISONS", "CRITERIA", "DATASETS", "GRANULARITIES", "MODELS",
           "SCHEDULES", "TIMINGS", "VARIANTS"]

#: timings that end their pruning phase with a variant hook
_VARIANT_TIMINGS = ("before", "after")


#: what ``prune.granularity: channel`` supports (channel selection is a global top-k over groups)
_CHANNEL_TIMINGS = ("before", "during", "after")


def load_trial_config(data: dict[str, Any]) -> TrialConfig:
    """Validate a dict into a :class:`TrialConfig`: the schema, then every registry name;
    raise ``ConfigError`` with a one-line message naming the field(s)."""
    try:
        cfg = TrialConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, TrialConfig)) from None
    check_names(cfg)
    return cfg


def catalogue() -> dict[str, list[str]]:
    """Every registry's names by axis, as ``prunetune names`` lists them (channel criteria are
    those of ``prune.granularity: channel``)."""
    return {
        "criteria": CRITERIA.names(),
        "channel criteria": ChannelPruner.registry.names(),
        "schedules": SCHEDULES.names(),
        "allocations": ALLOCATIONS.names(),
        "comparisons": COMPARISONS.names(),
        "timings": TIMINGS.names(),
        "variants": VARIANTS.names(),
        "models": [*MODELS.names(), "tv:<torchvision classifier>"],
        "datasets": DATASETS.names(),
    }


#: ``prune.granularity`` -> its prune step (which names its own criteria registry)
GRANULARITIES: Registry[type[PruneStep]] = Registry("granularity")
GRANULARITIES.add("weight", Pruner)
GRANULARITIES.add("channel", ChannelPruner)


def criteria_for(granularity: str) -> Registry[Any]:
    """The criteria registry of a granularity: weight criteria, or channel criteria."""
    return GRANULARITIES.get(granularity).registry


def check_names(cfg: TrialConfig) -> None:
    """Raise ``ConfigError`` naming the field for any unknown registry name."""
    criteria = criteria_for(cfg.prune.granularity)
    checks = [
        ("prune.criterion", criteria, cfg.prune.criterion),
        ("prune.schedule", SCHEDULES, cfg.prune.schedule),
        ("prune.allocation.name", ALLOCATIONS, cfg.prune.allocation.name),
        ("prune.timing.name", TIMINGS, cfg.prune.timing.name),
        ("prune.variant", VARIANTS, cfg.prune.variant),
    ]
    if cfg.prune.compare is not None:
        checks.append(("prune.compare", COMPARISONS, cfg.prune.compare))
    if not is_import_path(cfg.data.name):
        checks.append(("data.name", DATASETS, cfg.data.name))
    if not cfg.model.name.startswith("tv:") and not is_import_path(cfg.model.name):
        checks.append(("model.name", MODELS, cfg.model.name))
    for field, name in (("model.name", cfg.model.name), ("data.name", cfg.data.name)):
        if is_import_path(name):  # the user's factory: importable here, or one line naming it
            resolve(name, field)
    for field, registry, name in checks:
        try:
            registry.get(name)
        except ConfigError as exc:
            raise ConfigError(f"{field}: {exc}") from None
    if cfg.prune.granularity == "channel":
        _check_channel(cfg)
    options = criteria.get(cfg.prune.criterion).options
    try:
        options.model_validate(cfg.prune.criterion_options)
    except ValueError as exc:
        msg = (f"prune.criterion_options: invalid for {cfg.prune.criterion!r} "
               f"(accepted: {sorted(options.model_fields) or 'none'}): "
               + str(exc).splitlines()[1 if len(str(exc).splitlines()) > 1 else 0].strip())
        errors = exc.errors() if isinstance(exc, ValidationError) else []
        misspelt = [str(e["loc"][-1]) for e in errors
                    if e["type"] == "extra_forbidden" and e["loc"]]
        if misspelt:  # an option name: the nearest accepted one
            msg = with_hint(msg, misspelt[0], options.model_fields,
                            "prune.criterion_options.")
        raise ConfigError(msg) from None
    check_signed(cfg.prune.allocation.name, cfg.prune.criterion,
                 criteria.get(cfg.prune.criterion).signed)
    if cfg.prune.variant != "none" and cfg.prune.timing.name not in _VARIANT_TIMINGS:
        raise ConfigError(
            f"prune.variant: {cfg.prune.variant!r} needs prune.timing before or after, "
            f"not {cfg.prune.timing.name!r}"
        )


def _check_channel(cfg: TrialConfig) -> None:
    """``prune.granularity: channel`` limits: one line naming the field and what works."""
    p = cfg.prune
    if p.allocation.name != "global":
        raise ConfigError(f"prune.allocation: {p.allocation.name!r} is for weights; channel "
                          "pruning ranks channels globally (SNAP): use allocation global")
    if p.timing.name not in _CHANNEL_TIMINGS:
        raise ConfigError(f"prune.timing.name: {p.timing.name!r} is not supported with "
                          f"prune.granularity channel; use one of {list(_CHANNEL_TIMINGS)}")
    if p.variant != "none":
        raise ConfigError(f"prune.variant: {p.variant!r} is for weight masks; with "
                          "prune.granularity channel use variant none")
