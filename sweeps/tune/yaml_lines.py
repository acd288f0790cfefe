"""YAML with line numbers: a map from key paths to source lines, so errors can say where.

``load_with_lines(text)`` returns the plain data and a dict
``{("params", "prune.sparsity", "low"): 14, ...}`` built from the composed node tree. Parsing is
``pruning_core.config.parse_yaml`` (the one guarded reader): duplicate mapping keys, alias bombs,
non-data tags and runaway nesting are one-line ``ConfigError``s.
"""

from __future__ import annotations

from typing import Any

import yaml

from pruning_core.config import parse_yaml

Path_ = tuple[str | int, ...]


def load_with_lines(text: str, source: str = "<yaml>") -> tuple[Any, dict[Path_, int]]:
    """Parse ``text``; return (data, line map with 1-based lines). Raises ``ConfigError``."""
    data, node = parse_yaml(text, source)
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _walk(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1  # reads better than the value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines)


def locate(loc: Path_, lines: dict[Path_, int], skip: frozenset[str] = frozenset()) -> str:
    """Render an error location as ``a.b.c (line N)``.

    Elements of ``loc`` absent from the YAML (pydantic union tags, listed in ``skip``) are
    dropped from the text; the line is that of the deepest path found in the YAML.
    """
    matched: Path_ = ()
    shown: list[str] = []
    for elem in loc:
        candidate = (*matched, elem)
        if candidate in lines:
            matched = candidate
            shown.append(str(elem))
        elif str(elem) not in skip:
            shown.append(str(elem))
    text = ".".join(shown) or "<root>"
    line = lines.get(matched)
    return f"{text} (line {line})" if line is not None and matched else text
