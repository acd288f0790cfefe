"""A user's options checked against the constructor they are passed to, before anything starts.

``sampler.options`` (and any other dict a user writes that becomes a dependency's keyword
arguments) goes to the constructor as given, and a constructor that only stores a value fails
much later, inside the sweep (``n_startup_trials: "ten"`` made Optuna's TPE raise a
``TypeError`` at the first suggestion). :func:`check_options` reads the public constructor's
signature and its type annotations and refuses, in one line naming the option and the type it
needs, an option it does not take and a value its annotation does not admit.

Annotations are read without importing anything the library imports only for type checkers
(Optuna's are strings naming ``Callable``, ``FrozenTrial``, ...): names found nowhere stand for
"an object of that class", which no YAML value is. Rules: a bool is not a number; an int is a
valid ``float``; a ``float`` must be finite; ``Callable`` wants a callable; ``Sequence[X]`` a
list or tuple (not a string) of X; ``X | None`` admits null; an annotation this module cannot
read admits anything (the value then reaches the constructor unchecked).
"""

from __future__ import annotations

import builtins
import collections.abc as abc
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pruning_core.base.errors import ConfigError

#: names an annotation string may use that its module imports only when type checking
_TYPING_NAMES: dict[str, Any] = {
    **{n: getattr(abc, n) for n in abc.__all__},
    **{n: getattr(typing, n) for n in ("Any", "Optional", "Union", "Literal", "Annotated",
                                        "ClassVar", "Final")},
}
#: values a YAML file can hold (an "object of class X" is none of these)
_DATA = (str, bytes, numbers.Number, list, tuple, dict, type(None))


class _UnresolvedMeta(type):
    """Metaclass of the stand-ins for names an annotation uses but no namespace holds."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_"):  # typing's own probes (__origin__, _is_protocol, ...)
            raise AttributeError(name)
        return _unresolved(f"{cls.__name__}.{name}")

    def __getitem__(cls, item: Any) -> Any:
        return cls


def _unresolved(name: str) -> type:
    return _UnresolvedMeta(name, (), {})


class _Names(dict[str, Any]):
    """``eval`` locals: the constructor's module, then builtins, then ``typing`` names, then a
    stand-in class."""

    def __init__(self, module: Mapping[str, Any]) -> None:
        super().__init__()
        self.module = module

    def __missing__(self, key: str) -> Any:
        if key in self.module:
            return self.module[key]
        if hasattr(builtins, key):
            return getattr(builtins, key)
        if key in _TYPING_NAMES:
            return _TYPING_NAMES[key]
        return _unresolved(key)


def _resolve(annotation: Any, module: Mapping[str, Any]) -> Any:
    if annotation is inspect.Parameter.empty:
        return Any
    if not isinstance(annotation, str):
        return annotation
    try:
        # what typing.get_type_hints does with the installed library's own annotation text
        # (never the user's input), with names only type checkers import made stand-ins
        return eval(annotation, {"__builtins__": builtins}, _Names(module))
    except Exception:  # an annotation this module cannot read: unchecked
        return Any


def _function_of(target: Callable[..., Any]) -> Any:
    fn = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    return inspect.unwrap(fn)


def option_types(target: Callable[..., Any]) -> tuple[dict[str, Any], bool]:
    """The keyword arguments ``target`` (a class or a function) takes, each with its resolved
    annotation (``Any`` when it has none), and whether it also takes ``**kwargs``."""
    sig = inspect.signature(target)
    module = getattr(_function_of(target), "__globals__", {})
    out: dict[str, Any] = {}
    var_kw = False
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            out[name] = _resolve(p.annotation, module)
    return out, var_kw


def accepts(value: Any, tp: Any) -> bool:
    """Whether ``value`` is one ``tp`` admits (see the module's rules)."""
    if tp is Any or tp is object:
        return True
    if tp is None or tp is type(None):
        return value is None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return any(accepts(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is typing.Annotated or origin is typing.ClassVar or origin is typing.Final:
        return accepts(value, args[0]) if args else True
    if isinstance(tp, _UnresolvedMeta):
        return not isinstance(value, _DATA)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and math.isfinite(value))
    if tp is complex:
        return isinstance(value, numbers.Number) and not isinstance(value, bool)
    if tp is abc.Callable or origin is abc.Callable:
        return callable(value)
    if origin is not None and isinstance(origin, type):
        return _accepts_generic(value, origin, args)
    if tp is tuple or tp is list:  # YAML has no tuples: a list stands for one
        return isinstance(value, list | tuple)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # a TypeVar, a NewType, a forward reference: unchecked


def _accepts_generic(value: Any, origin: type, args: tuple[Any, ...]) -> bool:
    if issubclass(origin, abc.Mapping):
        if not isinstance(value, abc.Mapping):
            return False
        key, val = (*args, Any, Any)[:2]
        return all(accepts(k, key) and accepts(v, val) for k, v in value.items())
    if issubclass(origin, abc.Iterable) and not issubclass(origin, str | bytes):
        if origin in (list, tuple, set, frozenset):
            shape: type = origin
        elif issubclass(origin, abc.Set):
            shape = abc.Set
        elif issubclass(origin, abc.Sequence):
            shape = abc.Sequence
        else:
            shape = abc.Collection
        if isinstance(value, str | bytes | abc.Mapping):
            return False
        if origin is tuple and isinstance(value, list):
            pass  # YAML has no tuples: a list stands for one
        elif not isinstance(value, shape):
            return False
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(
                accepts(v, a) for v, a in zip(value, args, strict=True))
        item = args[0] if args else Any
        return all(accepts(v, item) for v in value)
    if origin is type:
        return isinstance(value, type)
    return isinstance(value, origin)


def python_only(tp: Any) -> bool:
    """Whether ``tp`` admits no value but null that a YAML file can hold (a callable, an
    object of a library class)."""
    if tp is Any or tp is object:
        return False
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        arms = [a for a in args if a is not type(None)]
        return bool(arms) and all(python_only(a) for a in arms)
    if isinstance(tp, _UnresolvedMeta) or tp is abc.Callable or origin is abc.Callable:
        return True
    return (isinstance(tp, type) and origin is None
            and not issubclass(tp, (*_DATA, set, frozenset)))


def describe(tp: Any) -> str:
    """``tp`` in words, as an error message's "needs ...": ``an int``, ``a number or null``."""
    if tp is Any or tp is object:
        return "any value"
    if tp is None or tp is type(None):
        return "null"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        words = list(dict.fromkeys(describe(a) for a in args if a is not type(None)))
        if type(None) in args:
            words.append("null")
        return " or ".join(words)
    if origin is typing.Literal:
        return "one of " + ", ".join(_shown(a) for a in args)
    if origin is typing.Annotated or origin is typing.ClassVar or origin is typing.Final:
        return describe(args[0]) if args else "any value"
    simple = {bool: "true or false", int: "an int", float: "a number", str: "a string",
              complex: "a number"}
    if tp in simple:
        return simple[tp]
    if tp is abc.Callable or origin is abc.Callable:
        return "a Python callable"
    if origin is not None and isinstance(origin, type):
        if issubclass(origin, abc.Mapping):
            return "a mapping"
        if issubclass(origin, abc.Iterable) and not issubclass(origin, str | bytes):
            return "a list" + (f" (each item {describe(args[0])})"
                               if args and args[0] is not Any and len(args) == 1 else "")
    name = getattr(tp, "__name__", None) or str(tp)
    return f"a {name} object"


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def refusal(value: Any) -> str:
    """What ``value`` is, the start of an error message refusing it (no field name)."""
    if value is None:
        return "null is not accepted"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_shown(value)} is not a finite number"
    return f"{_shown(value)} is {_kind(value)}"


def check_options(target: Callable[..., Any], options: Mapping[str, Any], *, where: str,
                  owner: str, reserved: Mapping[str, str] | None = None) -> None:
    """Refuse (``ConfigError``, one line) the first option ``target`` does not take, and the
    first value its annotation does not admit.

    ``where``: the options' place in the user's file (``sampler.options``); ``owner``: what
    takes them, in words (``tpe``); ``reserved``: options set elsewhere -> where
    (``{"seed": "sampler.seed"}``).
    """
    types_, var_kw = option_types(target)
    for name, value in options.items():
        shown = name if isinstance(name, str) and name.isprintable() else repr(name)
        field = f"{where}.{shown if len(shown) <= 60 else shown[:57] + '...'}"
        if reserved and name in reserved:
            raise ConfigError(f"{field}: set by {reserved[name]}; remove it from {where}")
        if name not in types_:
            if var_kw:
                continue
            known = ", ".join(sorted(n for n in types_ if not (reserved and n in reserved)))
            raise ConfigError(f"{field}: {owner} takes no option {_shown(name)}; its options: "
                              f"{known or 'none'}")
        tp = types_[name]
        if not accepts(value, tp):
            hint = ""
            if python_only(tp):
                hint = " (set it from Python: YAML cannot hold one)"
            elif value is None:
                hint = " (leave the option out for its default)"
            raise ConfigError(f"{field}: {refusal(value)}; {owner} needs "
                              f"{describe(tp)}{hint}")
