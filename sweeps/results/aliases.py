"""Short names for the results' long column names, for queries and for display."""

from __future__ import annotations

import re
from collections.abc import Sequence

_ALIAS_PREFIXES = ("config.prune.", "config.")


def short_aliases(columns: Sequence[str]) -> dict[str, str]:
    """Short names for ``config.*`` columns: alias -> full column name.

    ``config.prune.criterion`` -> ``criterion``; ``config.model.name`` -> ``model.name`` and
    ``model_name``; ``config.prune.allocation.name`` -> ``allocation.name`` and
    ``allocation_name``. An alias is offered only when exactly one column yields it and no real
    column has that name (so ``sparsity`` stays the measured sparsity, and the configured target
    is ``target_sparsity`` or ``"config.prune.sparsity"``).
    """
    real = set(columns)
    cands: dict[str, set[str]] = {}
    for col in columns:
        for prefix in _ALIAS_PREFIXES:
            if col.startswith(prefix) and len(col) > len(prefix):
                rest = col[len(prefix):]
                for alias in {rest, rest.replace(".", "_")}:
                    cands.setdefault(alias, set()).add(col)
    return {a: next(iter(src)) for a, src in sorted(cands.items())
            if len(src) == 1 and a not in real}


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def display_name(col: str, aliases: dict[str, str] | None = None) -> str:
    """Shortest alias of a column for display (``config.prune.criterion`` -> ``criterion``)."""
    if aliases:
        short = [a for a, full in aliases.items() if full == col and _IDENT.match(a)]
        if short:
            return min(short, key=len)
    return col
