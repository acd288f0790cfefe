"""The compact model on disk: safetensors weights plus the spec to rebuild it, no pickle.

A compact file is a plain safetensors file whose metadata carries ``format:
prunetune-compact``, the model's registry name and options, the input shape, the number of
classes and the kept channel indices (:func:`pruning_core.structured.keep_indices`, JSON).
Loading builds the dense architecture, slices it with :func:`~pruning_core.structured.rebuild`
and loads the weights strictly, so nothing in the file is ever executed. ``model.weights:
FILE`` in a trial config reads it too (the run then starts from the smaller network).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..base.errors import ConfigError
from .compact_file import (
    COMPACT_FORMAT,
    COMPACT_VERSION,
    compact_indices,
    compact_spec,
    make_compact,
    save_compact,
)

__all__ = ["COMPACT_FORMAT", "COMPACT_VERSION", "compact_indices", "compact_spec",
           "load_compact", "make_compact", "save_compact"]


def load_compact(path: str | Path, *, factory: Callable[..., nn.Module] | str | None = None,
                 model: nn.Module | None = None, input_shape: Sequence[int] | None = None,
                 num_classes: int | None = None,
                 options: Mapping[str, Any] | None = None) -> nn.Module:
    """The compact (smaller, dense) model of a file :func:`save_compact` wrote
    (``prunetune run CONFIG --export-compact FILE``), with its weights, ready to run.

    How the dense architecture is had, which is then sliced to the file's kept channels:

    - nothing: the file's own model, a built-in one (``mlp``, ``resnet20``, ``tv:resnet18``);
    - ``factory``: your model factory, ``build(input_shape, num_classes, **options)``, as the
      callable or its import path ``"my_pkg.nets:build"`` (imported through
      :func:`pruning_core.workloads.factories.resolve`: your own code only, see SECURITY.md). A file
      never chooses code to import: a file of a factory model needs this argument;
    - ``model``: the dense model already built (sliced in place and returned).

    ``input_shape``, ``num_classes`` and ``options`` (the factory's keyword arguments) default
    to the file's. Nothing in the file is executed or unpickled; a mismatch between the file
    and the architecture is one ``ConfigError`` line naming the first bad tensor.
    """
    from .compact_file import load_weights

    spec = compact_spec(path)
    shape = tuple(int(d) for d in (input_shape if input_shape is not None
                                   else spec["input_shape"]))
    classes = int(num_classes if num_classes is not None else spec["num_classes"])
    opts = dict(options if options is not None else spec["model"]["options"])
    built = _dense_model(path, spec["model"]["name"], shape, classes, opts, factory, model)
    try:
        load_weights(built, path, strict=True, field=str(path))
    except ConfigError as exc:  # the file and the architecture disagree: name the file
        msg = str(exc)
        raise ConfigError(msg if str(path) in msg else
                          f"{path}: {msg} (a compact file of another model?)") from None
    return built


def _dense_model(path: str | Path, name: str, shape: tuple[int, ...], classes: int,
                 opts: dict[str, Any], factory: Callable[..., nn.Module] | str | None,
                 model: nn.Module | None) -> nn.Module:
    """The dense architecture :func:`load_compact` slices: ``model``, built by ``factory``, or
    the file's own built-in model ``name``."""
    from ..workloads.factories import is_import_path
    from ..workloads.models import create_model

    if model is not None and factory is not None:
        raise ConfigError("load_compact: give factory= or model=, not both")
    if model is not None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"load_compact: model= is a {type(model).__name__}; give the "
                              "dense nn.Module (or factory=)")
        return model
    if factory is not None:
        return _from_factory(factory, shape, classes, opts)
    if is_import_path(name):
        raise ConfigError(
            f"{path}: model {name!r} is your own factory, and a file never chooses code to "
            f"import: pass it, load_compact(path, factory={name!r}) (or the callable, or "
            "model=<the dense model>)")
    if name.startswith("tv:"):
        opts.pop("weights", None)  # the file holds the weights: nothing to read first
    return create_model(name, shape, classes, **opts)


def _from_factory(factory: Callable[..., nn.Module] | str, shape: tuple[int, ...],
                  classes: int, opts: dict[str, Any]) -> nn.Module:
    """The dense model built by the user's ``factory`` (a callable or its import path)."""
    from ..workloads.factories import build_model, resolve

    if isinstance(factory, str):
        fn = resolve(factory, "factory")
        label = factory
    else:
        fn, label = factory, getattr(factory, "__qualname__", repr(factory))
    if not callable(fn):
        raise ConfigError(f"load_compact: factory= is a {type(fn).__name__}; give a model "
                          "factory (a callable or 'my_pkg.nets:build')")
    return build_model(label, shape, classes, opts, fn=fn)
