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


def load_compact(path: str | Path) -> nn.Module:
    """The compact model of a file :func:`save_compact` wrote (a registered built-in model;
    for the user's own factory build the dense model yourself and use ``model.weights``)."""
    from ..checkpoints import load_weights
    from ..factories import is_import_path
    from ..models import create_model

    meta = _metadata(path)
    if meta.get("format") != COMPACT_FORMAT:
        raise ConfigError(f"{path}: not a prunetune compact model (write one with "
                          "`prunetune run CONFIG --export-compact FILE`)")
    try:
        spec = json.loads(meta.get("spec", ""))
        name, options = str(spec["model"]["name"]), dict(spec["model"].get("options") or {})
        shape = tuple(int(d) for d in spec["input_shape"])
        classes = int(spec["num_classes"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path}: bad model spec in the metadata ({exc})") from None
    if is_import_path(name) or name.startswith("tv:"):
        raise ConfigError(f"{path}: model {name!r} is not a built-in one; build it yourself "
                          "and load the file with model.weights (or load_weights)")
    model = create_model(name, shape, classes, **options)
    load_weights(model, path, strict=True, field=str(path))
    return model


@torch.no_grad()
def make_compact(model: nn.Module, indices: KeepIndices) -> None:
    """Slice ``model`` in place to ``indices`` (what loading a compact file does first)."""
    rebuild(model, indices, inplace=True)
