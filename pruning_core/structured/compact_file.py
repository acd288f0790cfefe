"""A compact file's format: writing one, and reading its metadata (kept channel indices, model
spec) without building any model.

Below both ``checkpoints`` (``model.weights: FILE`` of a compact file slices the model first)
and :mod:`pruning_core.structured.export` (``load_compact`` builds the model and loads it), so
neither imports the other for it. ``export`` re-exports everything here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import ConfigError
from ..workloads.checkpoints import load_matching
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


@torch.no_grad()
def make_compact(model: nn.Module, indices: KeepIndices) -> None:
    """Slice ``model`` in place to ``indices`` (what loading a compact file does first)."""
    rebuild(model, indices, inplace=True)


def load_weights(model: nn.Module, path: str | Path, strict: bool = True,
                 field: str = "model.weights") -> None:
    """Copy the tensors of ``path`` into ``model`` after checking keys and shapes
    (``checkpoints.load_matching``). A compact-model file first slices ``model`` in place to the
    file's kept channels, so the smaller network is what gets loaded."""
    indices = compact_indices(path, field)
    if indices is not None:
        make_compact(model, indices)
    load_matching(model, path, strict, field)
