"""Nested mappings as dotted keys: ``{"prune": {"sparsity": 0.9}}`` -> ``{"prune.sparsity": 0.9}``.

The one flatten of prunetune: a config into a results row's ``config.*`` columns, a drawn
configuration into names, overrides into dotted keys (``pruning_core.config.flatten`` is this).
Callers differ only in what they descend into and how a leaf is stored, which they pass in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def nonempty_mapping(key: str, value: Any) -> bool:
    """The default descent: into every non-empty dict (an empty one is a leaf)."""
    return isinstance(value, dict) and bool(value)


def flatten(d: Mapping[str, Any], prefix: str = "", *, sep: str = ".",
            descend: Callable[[str, Any], bool] = nonempty_mapping,
            leaf: Callable[[str, Any], Any] | None = None) -> dict[str, Any]:
    """``d`` with nested mappings as ``a<sep>b`` keys (after ``prefix``, when given).

    ``descend(key, value)``: whether a value is flattened further (default: a non-empty
    mapping); everything else is a leaf, stored as ``leaf(key, value)`` (default: as is).
    Lists are leaves unless ``descend`` says otherwise."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if descend(key, v):
            out.update(flatten(v, key, sep=sep, descend=descend, leaf=leaf))
        else:
            out[key] = v if leaf is None else leaf(key, v)
    return out
