"""Rules that turn a valid file into malformed ones (issue 8's fuzz suite).

Nothing here is a hand-written list of bad files: every input is a *rule* applied to a valid
document (a config from ``configs/``, a space from ``search_spaces/``, an exported schedule, a
results directory, a masks file). Two families:

- **structured** rules edit the parsed document: a wrong-typed, out-of-range, huge, NaN/inf or
  null value at one dotted key, an unknown key, a deleted section;
- **text** rules edit the bytes: non-UTF-8 encodings, truncation at every k-th byte, YAML tags,
  anchors/aliases and alias bombs, duplicate keys, deep nesting, empty files, BOM, CRLF, tabs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))

#: ``set_path(doc, key, DELETE)`` removes the key
DELETE: Any = object()

#: one value per "wrong kind": each must be refused where the schema wants something else
WRONG: dict[str, Any] = {
    "str": "banana",
    "list": [1, 2],
    "dict": {"a": 1},
    "null": None,
    "bool": True,
    "neg": -1,
    "huge": 10**30,
    "nan": math.nan,
    "inf": math.inf,
    "ninf": -math.inf,
    "frac": 0.5,
    "empty": "",
    "long": "x" * 5000,
}

#: the kinds tried on each kind of schema field
KINDS_FOR: dict[str, tuple[str, ...]] = {
    "int": ("str", "list", "null", "neg", "huge", "nan", "frac", "bool"),
    "float": ("str", "dict", "null", "neg", "huge", "nan", "inf", "bool"),
    "name": ("huge", "list", "null", "empty", "long"),
    "list": ("str", "dict", "huge"),
    "section": ("str", "list", "huge", "null"),
    "flag": ("str", "list", "dict", "null", "huge", "nan"),
}


Key = str | tuple[str, ...]


def _parts(key: Key) -> list[str]:
    return list(key) if isinstance(key, tuple) else key.split(".")


def set_path(doc: dict[str, Any], key: Key, value: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with ``key`` set to ``value`` (or deleted). ``key`` is dotted
    (``a.b.c``) or a tuple (for keys that hold dots); a digit part indexes a list."""
    out = copy.deepcopy(doc)
    node: Any = out
    parts = _parts(key)
    for i, p in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[int(p)]
            continue
        nxt = node.get(p)
        nxt_part = parts[i + 1]
        if isinstance(nxt, list) and not (nxt_part.isdigit() and int(nxt_part) < len(nxt)):
            nxt = None  # a list where a mapping is addressed: replaced by one
        if not isinstance(nxt, dict | list):
            nxt = {} if not isinstance(nxt, str) else {"name": nxt}
            node[p] = nxt
        node = nxt
    if isinstance(node, list) and not (parts[-1].isdigit() and int(parts[-1]) < len(node)):
        raise ValueError(f"{key_id(key)}: no such list index")
    last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
    if value is DELETE:
        node.pop(last) if isinstance(node, list) else node.pop(last, None)
    else:
        node[last] = copy.deepcopy(value)
    return out


def key_id(key: Key) -> str:
    return ".".join(_parts(key))


def dump(doc: Any) -> bytes:
    """Block-style YAML as a user would write it (key order kept; NaN/inf as ``.nan``)."""
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=10_000).encode()


# ----------------------------------------------------------------------------- fast configs
def fast_config(path: Path) -> dict[str, Any]:
    """A config of ``configs/`` made cheap to run (0-2 epochs, 128 examples, <= 2 prune steps),
    with ``train`` then ``data`` first so that every prefix of it (truncations) that parses
    still trains for 0 epochs on a few examples. Still a valid config of the same kind."""
    d = yaml.safe_load(path.read_text())
    prune = dict(d.get("prune", {}))
    timing = prune.get("timing")
    epochs = 0
    if isinstance(timing, dict):
        timing = dict(timing)
        if "pretrain_epochs" in timing:
            timing["pretrain_epochs"] = 0
        if "prune_epochs" in timing:
            timing["prune_epochs"] = [0, 1]
            epochs = 2
        if timing.get("name") == "imp":
            epochs = 2
        prune["timing"] = timing
    if "steps" in prune:
        prune["steps"] = min(int(prune["steps"]), 2)
    train = {"epochs": epochs, **{k: v for k, v in d.get("train", {}).items() if k != "epochs"},
             "device": "cpu"}
    data = {"train_limit": 128, "test_limit": 64, **d.get("data", {}), "batch_size": 64}
    rest = {k: v for k, v in d.items() if k not in ("train", "data", "prune")}
    return {"train": train, "data": data, **rest, "prune": prune}


# ----------------------------------------------------------------------------- text rules
@dataclass(frozen=True)
class TextRule:
    """``name``: id; ``apply``: valid bytes -> mutated bytes; ``valid``: why the result is
    still a valid file (``None``: it must be refused)."""

    name: str
    apply: Callable[[bytes], bytes]
    valid: str | None = None


def bomb(levels: int = 9, width: int = 9, key: str = "lol") -> bytes:
    """Billion laughs under ``key``: ``width ** levels`` values from a few hundred bytes."""
    lines = [f"{key}0: &a0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"{key}{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return ("\n".join(lines) + "\n").encode()


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _first_key_line(text: bytes) -> bytes:
    return next(line for line in text.splitlines() if line and not line.startswith(b"#"))


def _dup_first(text: bytes) -> bytes:
    """The first top-level key written twice (last-wins would be silently wrong)."""
    key = _first_key_line(text).split(b":")[0]
    return text + key + b": {}\n"


def _dup_nested(text: bytes) -> bytes:
    """An indented (nested) key repeated right after itself."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(b"  ") and b":" in line and not line.strip().startswith(b"-"):
            return b"".join([*lines[: i + 1], line, *lines[i + 1:]])
    raise AssertionError("no nested key to duplicate")


TEXT_RULES: list[TextRule] = [
    TextRule("latin1_byte", lambda t: t + "# café\n".encode("latin-1")),
    TextRule("utf16", lambda t: t.decode().encode("utf-16")),
    TextRule("utf32", lambda t: t.decode().encode("utf-32")),
    TextRule("lone_continuation_byte", lambda t: t[:10] + b"\x80" + t[10:]),
    TextRule("invalid_start_byte", lambda t: b"\xff" + t),
    TextRule("overlong_nul", lambda t: t + b"# \xc0\x80\n"),
    TextRule("nul_byte", lambda t: t + b"extra: \x00\n"),
    TextRule("control_char", lambda t: t + b"extra: \x07bell\n"),
    TextRule("bom", lambda t: b"\xef\xbb\xbf" + t, valid="a UTF-8 BOM is still UTF-8 text"),
    TextRule("crlf", lambda t: t.replace(b"\n", b"\r\n"), valid="CRLF line ends are YAML"),
    TextRule("trailing_comment", lambda t: t + b"# a comment\n", valid="comments are ignored"),
    TextRule("empty", lambda t: b""),
    TextRule("whitespace_only", lambda t: b"   \n\n  \n"),
    TextRule("list_top", lambda t: b"- " + _first_key_line(t) + b"\n"),
    TextRule("scalar_top", lambda t: b"just a string\n"),
    TextRule("int_top", lambda t: b"42\n"),
    TextRule("two_documents", lambda t: t + b"---\n" + t),
    TextRule("tab_indent", lambda t: t.replace(b"\n  ", b"\n\t", 1)),
    TextRule("unclosed_flow", lambda t: t + b"extra: [1, 2\n"),
    TextRule("python_object_apply",
             lambda t: t + b"extra: !!python/object/apply:os.system ['echo pwned']\n"),
    TextRule("python_name", lambda t: t + b"extra: !!python/name:os.system\n"),
    TextRule("python_module", lambda t: t + b"extra: !!python/module:os\n"),
    TextRule("python_tag_top", lambda t: b"!!python/object/new:os.system [echo pwned]\n"),
    TextRule("custom_tag", lambda t: t + b"extra: !Ref something\n"),
    TextRule("bad_timestamp", lambda t: t + b"extra: !!timestamp 2020-13-45\n"),
    TextRule("bad_float_tag", lambda t: t + b"extra: !!float abc\n"),
    TextRule("bad_binary", lambda t: t + b"extra: !!binary '%%%'\n"),
    TextRule("undefined_alias", lambda t: t + b"extra: *nowhere\n"),
    TextRule("recursive_alias", lambda t: t + b"extra: &r [*r]\n"),
    TextRule("alias_bomb", lambda t: t + bomb(9)),
    TextRule("alias_bomb_wide", lambda t: t + bomb(6, 20, "wide")),
    TextRule("duplicate_top_key", _dup_first),
    TextRule("duplicate_nested_key", _dup_nested),
    TextRule("deep_nesting_flow", lambda t: t + f"extra: {nested(5000)}\n".encode()),
    TextRule("deep_nesting_250", lambda t: t + f"extra: {nested(250)}\n".encode()),
    TextRule("unknown_top_key", lambda t: t + b"surprise: 1\n"),
    TextRule("complex_key", lambda t: t + b"? [a, b]\n: 1\n"),
    TextRule("int_top_key", lambda t: t + b"7: seven\n"),
]


def truncations(text: bytes, every: int) -> Iterator[tuple[int, bytes]]:
    """Every ``every``-th proper prefix of ``text`` (offset, bytes), the empty one excluded."""
    for k in range(every, len(text), every):
        yield k, text[:k]


def leaves(doc: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every scalar/list leaf of a nested mapping."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                yield from leaves(v, key)
            else:
                yield key, v
