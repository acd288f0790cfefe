"""Nearest valid names to a misspelt one ("did you mean ...?"), for one-line errors.

Every unknown key, registry name (criterion, model, dataset, ...), metric and results column is
reported through :func:`did_you_mean`, so the hint reads the same everywhere:
``prune.sparsty: unknown key; did you mean prune.sparsity?``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: how close a name must be (``difflib``'s similarity ratio, 0..1) to be suggested
CUTOFF = 0.6
#: at most this many suggestions
MAX_SUGGESTIONS = 3
#: suggestions other than the nearest must be at most this much less similar to the name
MARGIN = 0.1


def close_names(name: str, valid: Iterable[str], n: int = MAX_SUGGESTIONS,
                cutoff: float = CUTOFF) -> list[str]:
    """The valid names nearest to ``name``, best first (case-insensitive; empty if none is
    close; others only when about as near as the best; ties in the order of ``valid``). A
    name cut short (at least three letters) suggests the names it starts."""
    by_lower: dict[str, str] = {}
    for v in valid:
        by_lower.setdefault(str(v).lower(), str(v))
    word = str(name).lower()
    near = difflib.get_close_matches(word, list(by_lower), n=n, cutoff=cutoff)
    if not near:  # a name cut short: "temp" -> temperature
        return [v for k, v in by_lower.items() if len(word) >= 3 and k.startswith(word)][:n]
    ratio = {v: difflib.SequenceMatcher(None, word, v).ratio() for v in near}
    order = list(by_lower)
    near.sort(key=lambda v: (-ratio[v], order.index(v)))  # ties in the order given
    # a clear winner alone: "pretrain_epoch" -> pretrain_epochs, not also rewind_epoch
    return [by_lower[v] for v in near if ratio[v] >= ratio[near[0]] - MARGIN]


def did_you_mean(name: str, valid: Iterable[str], prefix: str = "") -> str:
    """``"did you mean a?"`` / ``"did you mean a, b?"`` naming the valid names nearest to
    ``name`` (each with ``prefix``, e.g. a dotted key's parent), or ``""`` when none is close."""
    near = close_names(name, valid)
    return f"did you mean {', '.join(prefix + v for v in near)}?" if near else ""


def with_hint(message: str, name: str, valid: Iterable[str], prefix: str = "") -> str:
    """``message`` followed by ``; did you mean ...?`` when a valid name is close."""
    hint = did_you_mean(name, valid, prefix)
    return f"{message}; {hint}" if hint else message
