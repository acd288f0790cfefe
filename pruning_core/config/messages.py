"""Validation errors as one line per problem, naming the dotted field and, for a misspelt key,
the nearest valid ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from .strict import _members


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<root>"


def keys_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The keys the mapping holding ``loc``'s last part may have, ``model`` being the root
    (``loc`` is a validation error's location: ``("prune", "sparsty")`` -> PruneConfig's
    fields); ``None`` where that mapping is not one model's fields (a free dict)."""
    return _walk(model, loc)[0]


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[list[str] | None, list[str]]:
    """``keys_at`` and the path to that mapping as the user wrote it (without the tags
    pydantic adds to the location of a tagged union's member)."""
    candidates: list[Any] = [model]
    path: list[str] = []
    for part in loc[:-1]:
        nxt: list[Any] = []
        tag = False
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                field = c.model_fields.get(str(part))
                if field is not None:
                    nxt.extend(_members(field.annotation))
                elif any(part in get_args(m) for f in c.model_fields.values()
                         for m in _members(f.annotation) if get_origin(m) is Literal):
                    nxt.append(c)  # a tagged union's tag: pydantic puts it in the location
                    tag = True
            elif get_origin(c) is dict and len(get_args(c)) == 2:
                nxt.extend(_members(get_args(c)[1]))
            elif get_origin(c) in (list, tuple) and isinstance(part, int) and get_args(c):
                nxt.extend(_members(get_args(c)[0]))
        candidates = nxt
        if not tag:
            path.append(str(part))
    models = {c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)}
    return (list(models.pop().model_fields) if len(models) == 1 else None), path


def unknown_key(loc: Sequence[Any], model: type[BaseModel] | None) -> str:
    """The message of a misspelt key at ``loc``: ``unknown key; did you mean a.b?`` naming
    the nearest valid keys of that mapping (``pruning_core.base.suggest``)."""
    from ..base.suggest import did_you_mean

    if model is None or not loc:
        return "unknown key (check the spelling)"
    valid, path = _walk(model, loc)
    if not valid:
        return "unknown key (check the spelling)"
    hint = did_you_mean(str(loc[-1]), valid, "".join(f"{p}." for p in path))
    if hint:
        return f"unknown key; {hint}"
    return f"unknown key (check the spelling); valid: {', '.join(valid)}"


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field.path: message``. ``model``: the model validated, for
    the nearest valid names of a misspelt key."""
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = unknown_key(tuple(err["loc"]), model)
        parts.append(f"{_loc(err)}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)
