"""The compact model on disk: safetensors weights plus the spec to rebuild it, no pickle.

A compact file is a plain safetensors file whose metadata carries ``format:
prunetune-compact``, the model's registry name and options, the input shape, the number of
classes and the kept channel indices (:func:`pruning_core.structured.keep_indices`, JSON).
Loading builds the dense architecture, slices it with :func:`~pruning_core.structured.rebuild`
and loads the weights strictly, so nothing in the file is ever executed. ``model.weights:
FILE`` in a trial config reads it too (the run then starts from the smaller network).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .compact import rebuild
from .masks import KeepIndices

COMPACT_FORMAT = "prunetune-compact"
COMPACT_VERSION = 1


def save_compact(path: str | Path, model: nn.Module, indices: KeepIndices,
                 spec: dict[str, Any]) -> None:
    """Write ``model`` (already compact) and ``spec`` (model name/options, input_shape,
    num_classes) with its kept ``indices``."""
    from safetensors.torch import save_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={
        "format": COMPACT_FORMAT, "version": str(COMPACT_VERSION),
        "indices": json.dumps(indices), "spec": json.dumps(spec),
    })


def _metadata(path: str | Path, field: str = "model.weights") -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a bad file
        raise ConfigError(f"{field}: {path}: not a readable safetensors file ({exc})") from None


def compact_indices(path: str | Path, field: str = "model.weights") -> KeepIndices | None:
    """The kept channel indices of a compact file; ``None`` for any other safetensors file."""
    if Path(path).suffix != ".safetensors" or not Path(path).is_file():
        return None
    meta = _metadata(path, field)
    if meta.get("format") != COMPACT_FORMAT:
        return None
    if meta.get("version") != str(COMPACT_VERSION):
        raise ConfigError(f"{field}: {path} is compact-model version {meta.get('version')!r}; "
                          f"this prunetune reads version {COMPACT_VERSION}")
    try:
        return _checked_indices(json.loads(meta.get("indices", "")))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{field}: {path}: bad kept-channel indices ({exc})") from None


def _checked_indices(raw: Any) -> KeepIndices:
    """Untrusted JSON -> ``KeepIndices`` (positions and sizes are checked against the model
    by ``slice_plan``)."""
    if not isinstance(raw, dict):
        raise ValueError("not a mapping of layer names")
    out: KeepIndices = {}
    for layer, entry in raw.items():
        if not isinstance(layer, str) or not isinstance(entry, dict):
            raise ValueError(f"layer {layer!r}: not a mapping")
        clean: dict[str, list[int] | int] = {}
        for key, value in entry.items():
            if key in ("out", "in"):
                if not isinstance(value, list) or not all(
                        isinstance(i, int) and not isinstance(i, bool) for i in value):
                    raise ValueError(f"layer {layer!r} {key}: not a list of integers")
            elif key in ("out_size", "in_size"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"layer {layer!r} {key}: not an integer")
            else:
                raise ValueError(f"layer {layer!r}: unknown key {key!r}")
            clean[key] = value
        out[layer] = clean
    return out


def compact_spec(path: str | Path) -> dict[str, Any]:
    """What a compact file says about its model: ``{"model": {"name", "options"},
    "input_shape", "num_classes"}`` (checked types; ``ConfigError`` for any other file)."""
    meta = _metadata(path, "load_compact")
    if meta.get("format") != COMPACT_FORMAT:
        raise ConfigError(f"{path}: not a prunetune compact model (write one with "
                          "`prunetune run CONFIG --export-compact FILE`)")
    try:
        spec = json.loads(meta.get("spec", ""))
        name, options = str(spec["model"]["name"]), dict(spec["model"].get("options") or {})
        shape = [int(d) for d in spec["input_shape"]]
        classes = int(spec["num_classes"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{path}: bad model spec in the metadata ({exc})") from None
    return {"model": {"name": name, "options": options}, "input_shape": shape,
            "num_classes": classes}


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
      :func:`pruning_core.factories.resolve`: your own code only, see SECURITY.md). A file
      never chooses code to import: a file of a factory model needs this argument;
    - ``model``: the dense model already built (sliced in place and returned).

    ``input_shape``, ``num_classes`` and ``options`` (the factory's keyword arguments) default
    to the file's. Nothing in the file is executed or unpickled; a mismatch between the file
    and the architecture is one ``ConfigError`` line naming the first bad tensor.
    """
    from ..checkpoints import load_weights
    from ..factories import build_model, is_import_path, resolve
    from ..models import create_model

    spec = compact_spec(path)
    name = spec["model"]["name"]
    shape = tuple(int(d) for d in (input_shape if input_shape is not None
                                   else spec["input_shape"]))
    classes = int(num_classes if num_classes is not None else spec["num_classes"])
    opts = dict(options if options is not None else spec["model"]["options"])
    if model is not None and factory is not None:
        raise ConfigError("load_compact: give factory= or model=, not both")
    if model is not None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"load_compact: model= is a {type(model).__name__}; give the "
                              "dense nn.Module (or factory=)")
        built = model
    elif factory is not None:
        if isinstance(factory, str):
            fn = resolve(factory, "factory")
            label = factory
        else:
            fn, label = factory, getattr(factory, "__qualname__", repr(factory))
        if not callable(fn):
            raise ConfigError(f"load_compact: factory= is a {type(fn).__name__}; give a model "
                              "factory (a callable or 'my_pkg.nets:build')")
        built = build_model(label, shape, classes, opts, fn=fn)
    elif is_import_path(name):
        raise ConfigError(
            f"{path}: model {name!r} is your own factory, and a file never chooses code to "
            f"import: pass it, load_compact(path, factory={name!r}) (or the callable, or "
            "model=<the dense model>)")
    else:
        if name.startswith("tv:"):
            opts.pop("weights", None)  # the file holds the weights: nothing to read first
        built = create_model(name, shape, classes, **opts)
    try:
        load_weights(built, path, strict=True, field=str(path))
    except ConfigError as exc:  # the file and the architecture disagree: name the file
        msg = str(exc)
        raise ConfigError(msg if str(path) in msg else
                          f"{path}: {msg} (a compact file of another model?)") from None
    return built


@torch.no_grad()
def make_compact(model: nn.Module, indices: KeepIndices) -> None:
    """Slice ``model`` in place to ``indices`` (what loading a compact file does first)."""
    rebuild(model, indices, inplace=True)
