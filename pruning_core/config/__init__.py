"""The trial configuration (the ``config`` room): ``trial`` holds ``TrialConfig`` and its
sections, ``strict`` their strict base, ``messages`` one-line validation errors, ``files``
bounded YAML reading. Everything is importable from ``pruning_core.config`` as before the split.
"""

from __future__ import annotations

from .files import (  # noqa: F401
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    _check_duplicates,
    _check_tree,
    _children,
    flatten,
    parse_yaml,
    read_text_file,
    read_yaml_file,
    set_dotted,
)
from .messages import (  # noqa: F401
    _loc,
    _walk,
    format_validation_error,
    keys_at,
    unknown_key,
)
from .strict import (  # noqa: F401
    NoBoolNumbers,
    Strict,
    _members,
    bool_as_number,
)
from .trial import (  # noqa: F401
    _DEVICE_RE,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_PRUNE_STEPS,
    MAX_SEED,
    MAX_THREADS,
    AdversarialConfig,
    AllocationConfig,
    DataConfig,
    MetricsConfig,
    ModelConfig,
    PatternConfig,
    PruneConfig,
    ScreenConfig,
    SimilarityConfig,
    SpeedConfig,
    TimingConfig,
    TrainConfig,
    TrialConfig,
    check_device_available,
    parse_pattern,
)

__all__ = [
    "MAX_BATCH", "MAX_EPOCHS", "MAX_PRUNE_STEPS", "MAX_SEED", "MAX_THREADS",
    "MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "AdversarialConfig",
    "AllocationConfig", "DataConfig", "MetricsConfig", "ModelConfig", "NoBoolNumbers",
    "PatternConfig", "PruneConfig", "ScreenConfig", "SimilarityConfig", "SpeedConfig",
    "Strict", "TimingConfig", "TrainConfig", "TrialConfig", "bool_as_number",
    "check_device_available", "flatten", "format_validation_error", "keys_at",
    "parse_pattern", "parse_yaml", "read_text_file", "read_yaml_file", "set_dotted",
    "unknown_key",
]
