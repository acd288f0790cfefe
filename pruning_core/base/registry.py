"""A tiny generic registry: one per extensible axis (criteria, schedules, models, ...).

Registries double as test parameter lists: ``for name in CRITERIA.names()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError
from .suggest import with_hint

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object. ``get`` on an unknown name raises ``ConfigError`` listing the valid names
    (and the nearest ones: ``did you mean ...?``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(with_hint(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}",
                name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
