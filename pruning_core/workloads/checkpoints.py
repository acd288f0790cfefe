"""Trained weights for a model: ``model.weights: PATH`` (safetensors, or a torch state dict).

Nothing here unpickles arbitrary objects: ``.safetensors`` files are read by ``safetensors``,
anything else with ``torch.load(weights_only=True)``, which refuses pickles that need code
(a whole pickled ``nn.Module``, custom classes). A state dict nested under a ``state_dict`` /
``model`` key (what training scripts often save) is unwrapped. Keys are matched to the model's
``state_dict``: a key or shape mismatch is one line naming the first bad key and both shapes;
``strict: false`` loads the matching keys and leaves the rest as initialised, with a warning.
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import ConfigError

log = logging.getLogger(__name__)

_NESTED = ("state_dict", "model_state_dict", "model")


def read_state_dict(path: str | Path, field: str = "model.weights") -> dict[str, torch.Tensor]:
    """Tensors by name from ``path``; ``ConfigError`` naming ``field`` on anything else."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{field}: no file at {str(p)!r}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConfigError(f"{field}: {str(p)!r} is not a readable safetensors file ({exc})") \
                from None
    # torch warns on some files it then refuses (a raw pickle's protocol): kept out of the
    # terminal and folded into the one-line error instead
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj: Any = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            needs = re.search(r"GLOBAL ([\w.]+)", str(exc))
            if needs is None:  # not a pickle torch can read at all
                raise ConfigError(f"{field}: {str(p)!r} is not a torch checkpoint (unreadable "
                                  f"pickle{_noted(caught)})") from None
            raise ConfigError(
                f"{field}: {str(p)!r} needs weights_only=False to load (it pickles "
                f"{needs.group(1)}, i.e. code); save model.state_dict() with torch.save or as "
                "safetensors"
            ) from None
        except Exception as exc:  # any file at all: torch's parser fails in many ways
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ConfigError(f"{field}: {str(p)!r} is not a torch checkpoint "
                              f"({type(exc).__name__}: {first}{_noted(caught)})") from None
    for w in caught:
        log.warning("%s: %s", field, w.message)
    for key in _NESTED:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ConfigError(
            f"{field}: {str(p)!r} holds a {type(obj).__name__}, not a state dict of tensors"
        )
    return obj


def _noted(caught: list[warnings.WarningMessage]) -> str:
    """torch's first warning while reading, as a short note for the error line."""
    if not caught:
        return ""
    text = str(caught[0].message).split(". ")[0].strip().splitlines()[0][:120]
    return f"; torch: {text}"


def load_matching(model: nn.Module, path: str | Path, strict: bool = True,
                  field: str = "model.weights") -> None:
    """Copy the tensors of ``path`` into ``model`` after checking keys and shapes.

    ``pruning_core.structured.compact_file.load_weights`` is what a trial calls: it slices the
    model to a compact-model file's kept channels first, then calls this."""
    state = read_state_dict(path, field)
    own = model.state_dict()
    if strict:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            first = missing[0] if missing else unexpected[0]
            what = "missing from the file" if missing else "not in the model"
            raise ConfigError(
                f"{field}: key {first!r} is {what} ({len(missing)} missing, {len(unexpected)} "
                "unexpected): a checkpoint of another architecture? set model.weights_strict: "
                "false to load the matching keys only"
            )
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise ConfigError(
                f"{field}: {k!r} has shape {tuple(v.shape)} in the file but "
                f"{tuple(own[k].shape)} in the model"
            )
    matching = {k: v for k, v in state.items() if k in own}
    if not strict:
        skipped = len(own) - len(matching)
        if skipped:
            log.warning("%s: %d of the model's %d tensors are not in %s and keep their init",
                        field, skipped, len(own), path)
    model.load_state_dict(matching, strict=False)
