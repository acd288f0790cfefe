"""Trial-config dicts of a search space: dotted keys, the fixed settings merged with one sampled
config (``trial_dict``), and the nested dict Ray passes, flat and back (``unflatten``).

No pydantic, no Optuna: the trainable, the schedulers and the recorder build a trial's config
dict from these alone.
"""

from __future__ import annotations

import copy
from typing import Any

#: the TrialConfig key the layer-wise forms fill in
LAYERWISE_KEY = "prune.allocation.layer_sparsity"
#: top-level trial-config key for search parameters that are not TrialConfig fields
SEARCH_KEY = "search"
#: fields that accept a plain string meaning ``{name: ...}``
_NAME_SHORTHAND = ("prune.allocation", "prune.timing")


class Missing:
    """A key neither sampled nor fixed (``fixed_value``'s answer; ``None`` is a value)."""


MISSING = Missing()


def canonical_key(key: str) -> str:
    """``prune.allocation`` -> ``prune.allocation.name`` (the string shorthand's field)."""
    return f"{key}.name" if key in _NAME_SHORTHAND else key


def optuna_name(key: str) -> str:
    return key.replace(".", "/")


def dotted_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.extend(dotted_keys(v, key))
        elif f"{key}" in _NAME_SHORTHAND and isinstance(v, str):
            out.append(f"{key}.name")
        else:
            out.append(key)
    return out


def fixed_value(fixed: dict[str, Any], key: str) -> Any:
    node: Any = fixed
    for part in key.split("."):
        if isinstance(node, str) and part == "name":
            return node
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node




def unflatten(flat: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(sep)
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def expand_dotted(d: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> nested dicts: ``{"train.lr": 1}`` -> ``{"train": {"lr": 1}}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        v = expand_dotted(v) if isinstance(v, dict) else v
        parts = str(k).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if isinstance(node.get(parts[-1]), dict) and isinstance(v, dict):
            merge_into(node[parts[-1]], v)
        else:
            node[parts[-1]] = v
    return out


def merge_into(base: dict[str, Any], over: dict[str, Any]) -> None:
    """Deep-merge ``over`` into ``base``; a string meets a dict as ``{name: string}``."""
    for k, v in over.items():
        cur = base.get(k)
        if isinstance(v, dict):
            if isinstance(cur, str):
                cur = base[k] = {"name": cur}
            if isinstance(cur, dict):
                merge_into(cur, v)
                continue
            base[k] = copy.deepcopy(v)
        elif isinstance(v, str) and isinstance(cur, dict) and k in ("allocation", "timing"):
            cur["name"] = v
        else:
            base[k] = copy.deepcopy(v)


def trial_dict(base: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """Fixed settings + one sampled config (nested, as Ray passes it) -> TrialConfig dict."""
    out = copy.deepcopy(base)
    merge_into(out, {k: v for k, v in sampled.items() if k != SEARCH_KEY})
    return out



def flat_drawn(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A sampled config (nested, Ray's ``/`` keys) -> ``{dotted.key: value}`` (for messages)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flat_drawn(v, key))
        else:
            out[key.replace("/", ".")] = v
    return out
