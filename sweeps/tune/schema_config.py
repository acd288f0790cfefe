"""The ``config.*`` columns of a sweep's rows: what a trial's config becomes, and their types.

:func:`config_columns` is the one place a trial's config is flattened into columns (the
recorder writes them; :func:`space_config_types` types them from the search space before any
trial runs, so every file of the sweep has the same config columns with the same types).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pruning_core.base.errors import ConfigError
from pruning_core.trials.registries import load_trial_config
from sweeps.results.schema import common_type, value_type
from sweeps.tune.space import SEARCH_KEY, ChoiceParam, FloatParam, IntParam, trial_dict

if TYPE_CHECKING:
    from sweeps.tune.space import SearchSpace

log = logging.getLogger(__name__)

#: config fields kept as one JSON column rather than one column per key
JSON_CONFIG = ("prune.allocation.layer_sparsity",)
#: how many configs :func:`space_config_types` samples (plus one per choice value)
SAMPLES = 24


def config_columns(base: Mapping[str, Any],
                   sampled: Mapping[str, Any]) -> tuple[dict[str, Any], int | None]:
    """(``config.*`` columns, seed) of one trial: the fixed settings merged with what was
    sampled, resolved through ``TrialConfig`` (defaults filled in), then flattened; the
    ``search.*`` parameters that are not config fields come on top."""
    data = trial_dict(dict(base), dict(sampled))
    try:
        resolved = load_trial_config(data).model_dump()
    except ConfigError:
        resolved = data
    cols = {f"config.{k}": v for k, v in flatten(resolved).items()}
    for k, v in flatten(sampled.get(SEARCH_KEY, {}), SEARCH_KEY).items():
        cols[f"config.{k}"] = v
    seed = resolved.get("seed")
    return cols, seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys; lists and the :data:`JSON_CONFIG` dicts become JSON text,
    an empty dict or list null."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v and key not in JSON_CONFIG:
            out.update(flatten(v, key))
        elif isinstance(v, dict | list):
            out[key] = json.dumps(v) if v else None
        else:
            out[key] = v
    return out


def types_of(rows: list[Mapping[str, Any]]) -> dict[str, pa.DataType | None]:
    """Column -> one Arrow type for the values the rows hold (see :func:`common_type`); None
    for a column that is null in every row."""
    seen: dict[str, list[pa.DataType | None]] = {}
    for row in rows:
        for k, v in row.items():
            seen.setdefault(k, []).append(value_type(v))
    return {k: common_type(ts) if any(t is not None for t in ts) else None
            for k, ts in seen.items()}


def space_config_types(space: SearchSpace, base: Mapping[str, Any]) -> dict[str, pa.DataType]:
    """The ``config.*`` columns of ``space``'s trials and their types.

    Columns come from sampled configs (every choice value drawn at least once, so every
    ``when`` branch shows); a searched param's column takes its declared type: ``double`` for
    a float param, ``int64`` for an int param, and for a choice the common type of its values
    (strings: ``string``). A column a trial may lack (a conditional param) is null there."""
    try:
        samples = space.sample(SAMPLES, seed=0)
    except Exception as exc:  # a space that cannot be sampled still records
        log.warning("could not sample the space to type its config columns (%s); types "
                    "come from the fixed config alone", exc)
        samples = [{}]
    types = types_of([config_columns(base, s)[0] for s in samples])
    for key, p in space.params.items():
        col = f"config.{key}"
        declared: pa.DataType | None = None
        if isinstance(p, FloatParam):
            declared = pa.float64()
        elif isinstance(p, IntParam):
            declared = pa.int64()
        elif isinstance(p, ChoiceParam):
            declared = common_type([value_type(v) for v in p.values])
        if declared is not None:
            seen = types.get(col)
            types[col] = declared if seen is None else common_type([declared, seen])
    return {k: pa.string() if t is None else t for k, t in types.items()}
