"""YAML with line numbers: a map from key paths to source lines, so errors can say where.

``load_with_lines(text)`` returns the plain data (``yaml.safe_load``) and a dict
``{("params", "prune.sparsity", "low"): 14, ...}`` built from the composed node tree. Duplicate
mapping keys (which ``safe_load`` silently collapses) are reported as errors.
"""

from __future__ import annotations

from typing import Any

import yaml

from pruning_core.errors import ConfigError

Path_ = tuple[str | int, ...]


def load_with_lines(text: str, source: str = "<yaml>") -> tuple[Any, dict[Path_, int]]:
    """Parse ``text``; return (data, line map with 1-based lines). Raises ``ConfigError``."""
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}") from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(str(p) for p in (*path, key))
                raise ConfigError(
                    f"{dotted} (line {line}): duplicate key (first at line {seen[key]})"
                )
            seen[key] = line
            _walk(value_node, (*path, key), lines)
            lines[(*path, key)] = line  # the key's line reads better than the value's
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
