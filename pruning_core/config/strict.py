"""The strict pydantic base of every config section: unknown keys, booleans given for numbers
and non-finite floats are refused."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError


def _members(annotation: Any) -> list[Any]:
    """The alternatives of an annotation (``int | None`` -> [int, None], Annotated unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


def bool_as_number(annotations: list[Any], value: Any) -> tuple[tuple[Any, ...], bool] | None:
    """A boolean in ``value`` that a field of these annotations would read as a number
    (pydantic's lax mode takes ``true`` as 1): ``(where, the boolean)``, ``where`` being ``()``
    for the value itself or the index / key path of an item; ``None`` when there is none."""
    members = [m for a in annotations for m in _members(a)]
    if isinstance(value, bool):
        takes_bool = any(m is bool or m is Any or (get_origin(m) is Literal
                                                    and any(a is value for a in get_args(m)))
                         for m in members)
        numeric = any(m in (int, float) for m in members)
        return ((), value) if numeric and not takes_bool else None
    if isinstance(value, list | tuple):
        inner = [a for m in members if get_origin(m) in (list, tuple, set, frozenset)
                 for a in get_args(m) if a is not Ellipsis]
        for i, item in enumerate(value if inner else ()):
            found = bool_as_number(inner, item)
            if found is not None:
                return (i, *found[0]), found[1]
    if isinstance(value, dict):
        inner = [get_args(m)[1] for m in members
                 if get_origin(m) is dict and len(get_args(m)) == 2]
        for key, item in (value.items() if inner else ()):
            found = bool_as_number(inner, item)
            if found is not None:
                return (key, *found[0]), found[1]
    return None


class NoBoolNumbers(BaseModel):
    """Refuses ``true`` / ``false`` where a field wants a number.

    pydantic's lax mode reads a boolean as 0 / 1, so ``epochs: true`` silently ran one epoch.
    The models of every file a user writes (configs, spaces, schedules) derive from this.
    (A model validator: a ``field_validator("*", mode="before")`` is not allowed on the
    discriminator fields of the space's params.)
    """

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        errors: list[InitErrorDetails] = []
        for name, field in cls.model_fields.items():
            if name not in data:
                continue
            found = bool_as_number([field.annotation], data[name])
            if found is not None:
                where, flag = found
                errors.append(InitErrorDetails(
                    type=PydanticCustomError(
                        "bool_as_number", "{flag} where a number is expected (true/false are "
                        "not numbers); write the number", {"flag": str(flag).lower()}),
                    loc=(name, *where), input=flag))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


class Strict(NoBoolNumbers):
    # inf / nan pass the range checks of unbounded fields (lr: .inf) and fail a trial later
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
