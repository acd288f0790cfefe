"""The user's own model and data: factories named by import path, ``"my_pkg.nets:build"``.

- A **model factory** is a callable ``(input_shape, num_classes, **options) -> nn.Module`` or an
  ``nn.Module`` subclass taking the same arguments; the module must have at least one Conv or
  Linear layer (something to prune).
- A **data factory** is a callable ``(seed=..., root=..., **options)`` (it may omit ``seed`` /
  ``root``) returning a :class:`~pruning_core.workloads.data.DataBundle` or a mapping with
  ``train``,
  ``test`` (``torch.utils.data.Dataset``s of ``(x, y)``), ``input_shape`` and ``num_classes``.

Import paths are resolved with ``importlib`` on whatever process runs the trial: the driver
validates them first, Ray workers get the user's code through ``runtime_env`` (``prunetune
sweep --working-dir``). Every failure is one ``ConfigError`` line naming the config key and the
factory. A config is not trusted (see SECURITY.md): before anything is imported,
:func:`~pruning_core.base.code_trust.check_import` requires the code to lie in the user's own code
(the working directory, or a package the user allowed with ``--allow-import``), never in an
installed library or the standard library, and the callable to be defined there.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..base.code_trust import check_import
from ..base.errors import ConfigError
from .bundle import DataBundle

_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_import_path(name: str) -> bool:
    """``"pkg.module:attr"``: a colon, and not the ``tv:`` family of torchvision models (a
    registry name never contains a colon; a user package named ``tv`` is shadowed)."""
    return ":" in name and not name.startswith("tv:")


def resolve(path: str, field: str) -> Any:
    """The object ``path`` names; ``ConfigError`` naming ``field`` when it cannot be had."""
    if not _PATH_RE.match(path):
        raise ConfigError(
            f"{field}: {path!r} is not an import path; write 'package.module:attribute'"
        )
    module_name, attr = path.split(":", 1)
    top = module_name.split(".")[0]
    check_import(module_name, attr, field)  # before any of its code runs
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the user's module raises on import
        raise ConfigError(
            f"{field}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); run from "
            "the directory that holds it, install it, or pass sweep --working-dir"
        ) from None
    try:
        obj = getattr(obj, attr)
    except AttributeError:
        raise ConfigError(f"{field}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"{field}: {path!r} is a {type(obj).__name__}, not a callable")
    defined_in = str(getattr(obj, "__module__", "") or "")
    if defined_in.split(".")[0] != top:
        raise ConfigError(
            f"{field}: {path!r} is defined in {defined_in or 'another module'!r}, not in "
            f"{top!r}; name the factory where your package defines it"
        )
    return obj


def _has_prunable(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd | nn.Linear) for m in model.modules())


def build_model(path: str, input_shape: tuple[int, ...], num_classes: int,
                options: Mapping[str, Any] | None = None,
                fn: Callable[..., Any] | None = None) -> nn.Module:
    """Call the model factory ``path`` (or ``fn``) and check what it returns."""
    factory = fn if fn is not None else resolve(path, "model.name")
    try:
        model = factory(tuple(input_shape), int(num_classes), **dict(options or {}))
    except Exception as exc:
        raise ConfigError(
            f"model.name: factory {path!r} raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.name: factory {path!r} returned a {type(model).__name__}, not an nn.Module"
        )
    if not _has_prunable(model):
        raise ConfigError(
            f"model.name: the model {path!r} builds has no Conv or Linear layer to prune"
        )
    return model


def _accepted(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop ``seed`` / ``root`` if the factory does not take them (and has no ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params or k not in ("seed", "root")}


def load_data(path: str, seed: int = 0, root: str | None = None,
              options: Mapping[str, Any] | None = None,
              fn: Callable[..., Any] | None = None) -> Any:
    """Call the data factory ``path`` (or ``fn``); a checked ``DataBundle``."""
    factory = fn if fn is not None else resolve(path, "data.name")
    kwargs = _accepted(factory, {"seed": seed, "root": root, **dict(options or {})})
    try:
        out = factory(**kwargs)
    except Exception as exc:
        raise ConfigError(f"data.name: factory {path!r} raised {type(exc).__name__}: {exc}") \
            from None
    if isinstance(out, DataBundle):
        return out
    if not isinstance(out, Mapping):
        raise ConfigError(
            f"data.name: factory {path!r} returned a {type(out).__name__}; return a DataBundle "
            "or a mapping with train, test, input_shape, num_classes"
        )
    missing = [k for k in ("train", "test", "input_shape", "num_classes") if k not in out]
    if missing:
        raise ConfigError(f"data.name: factory {path!r} returned no {', '.join(missing)}")
    for split in ("train", "test"):
        if not isinstance(out[split], Dataset):
            raise ConfigError(
                f"data.name: factory {path!r}: {split} is a {type(out[split]).__name__}, not a "
                "torch.utils.data.Dataset"
            )
    try:
        shape = tuple(int(d) for d in out["input_shape"])
        classes = int(out["num_classes"])
    except (TypeError, ValueError):
        raise ConfigError(
            f"data.name: factory {path!r}: input_shape must be a sequence of ints and "
            "num_classes an int"
        ) from None
    if classes < 1 or not shape:
        raise ConfigError(f"data.name: factory {path!r}: empty input_shape or num_classes < 1")
    return DataBundle(train=out["train"], test=out["test"], input_shape=shape,
                      num_classes=classes, name=path)


def import_path_of(fn: Callable[..., Any], field: str) -> str:
    """``"module:name"`` of a factory passed from Python, checked to import back to ``fn`` (so
    every Ray worker can import it, given the code travels with ``--working-dir``)."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None)
    if not module or not name or "<" in name or "." in name:
        raise ConfigError(f"{field}: pass a module-level function or class, not {fn!r}")
    if module == "__main__":
        raise ConfigError(
            f"{field}: {name} is defined in the script being run (__main__), which Ray workers "
            "cannot import; move it into a module (e.g. my_pkg/nets.py) and import it from there"
        )
    path = f"{module}:{name}"
    if resolve(path, field) is not fn:
        raise ConfigError(f"{field}: {path} does not import back to the object given")
    return path
