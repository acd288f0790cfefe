"""Config files: bounded YAML reading (size, nodes, depth, duplicate keys) and dotted keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..base.errors import ConfigError
from ..base.flat import flatten  # noqa: F401  (pruning_core.config.flatten)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "prune.sparsity", 0.9)`` creating nested dicts as needed."""
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            nxt = {"name": nxt}  # "allocation: erk" then "allocation.erk_power"
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


# ----------------------------------------------------------------------------- guarded YAML
#: largest YAML file read (configs, spaces and schedules are a few KB)
MAX_YAML_BYTES = 4_000_000
#: most nodes a document may expand to once aliases are followed (alias bombs: 2 KB -> GBs)
MAX_YAML_NODES = 100_000
#: deepest nesting accepted (the parser recurses once per level)
MAX_YAML_DEPTH = 200


def read_text_file(path: str | Path, what: str = "config") -> str:
    """A UTF-8 text file's contents; ``ConfigError`` naming the file for every failure."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"{what} {p}: is a directory, expected a YAML file")
        if not p.exists():
            raise ConfigError(f"{what} {p}: no such file")
        if not p.is_file():
            raise ConfigError(f"{what} {p}: not a regular file")
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{what} {p}: {size} bytes is too large for a YAML file "
                              f"(at most {MAX_YAML_BYTES})")
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {p}: cannot read it ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                          f"{exc.start}); save the file as UTF-8") from None


def parse_yaml(text: str, source: str = "<yaml>") -> tuple[Any, yaml.Node | None]:
    """``yaml.safe_load`` with guards; returns (data, composed node tree).

    Refuses, with a one-line ``ConfigError`` naming ``source``: syntax errors, tags that are not
    plain data (``!!python/...``), duplicate mapping keys (``safe_load`` keeps the last one
    silently), documents that expand to more than ``MAX_YAML_NODES`` nodes through aliases
    (alias bombs) or that are recursive, and nesting deeper than ``MAX_YAML_DEPTH``.
    """
    try:
        # the reader checks the whole text for special characters as it is built: inside the try
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_tree(node, source)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except ConfigError:
        raise
    except yaml.reader.ReaderError as exc:  # NUL, control characters, ... (no problem_mark)
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise ConfigError(f"{source} (line {line}): not valid YAML: unacceptable character "
                          f"{what} ({exc.reason}); remove it or quote it as an escape "
                          "like \"\\x00\"") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}".replace("\n", " ")) \
            from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply for a YAML config") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a malformed !!timestamp
        raise ConfigError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from None
    return data, node


def _check_tree(root: yaml.Node, source: str) -> None:
    """Duplicate keys, expanded size and depth of a composed YAML document (no recursion)."""
    sizes: dict[int, int] = {}  # id(node) -> expanded size; -1 while being expanded
    # iterative post-order walk: (node, key path, children done?)
    stack: list[tuple[yaml.Node, tuple[str, ...], bool]] = [(root, (), False)]
    while stack:
        node, path, done = stack.pop()
        key = id(node)
        children = _children(node, path)
        if done:
            total = 1 + sum(sizes[id(c)] for c, _ in children)
            if total > MAX_YAML_NODES:
                raise ConfigError(
                    f"{source}: more than {MAX_YAML_NODES} values once aliases are expanded "
                    "(an alias bomb?); use fewer aliases or a smaller file")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if len(path) > MAX_YAML_DEPTH:
            raise ConfigError(f"{source} (line {node.start_mark.line + 1}): nested deeper than "
                              f"{MAX_YAML_DEPTH} levels")
        sizes[key] = -1
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(node, path, source)
        stack.append((node, path, True))
        for c, cpath in children:
            if sizes.get(id(c), 0) < 0:
                raise ConfigError(f"{source} (line {c.start_mark.line + 1}): a recursive "
                                  "alias (an anchor used inside itself)")
            if id(c) not in sizes:
                stack.append((c, cpath, False))


def _children(node: yaml.Node, path: tuple[str, ...]) -> list[tuple[yaml.Node, tuple[str, ...]]]:
    if isinstance(node, yaml.MappingNode):
        out = []
        for k, v in node.value:
            name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
            out += [(k, (*path, name)), (v, (*path, name))]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(c, (*path, str(i))) for i, c in enumerate(node.value)]
    return []


def _check_duplicates(node: yaml.MappingNode, path: tuple[str, ...], source: str) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            dotted = ".".join((*path, key_node.value))
            raise ConfigError(f"{source}: {dotted} (line {line}): duplicate key (first at line "
                              f"{seen[key_node.value]}); keep one")
        seen[key_node.value] = line


def read_yaml_file(path: str | Path, what: str = "config",
                   mapping: bool = True) -> tuple[Any, yaml.Node | None]:
    """Read and guard-parse a YAML file (``read_text_file`` + ``parse_yaml``).

    With ``mapping`` (the default) the document must be a mapping; an empty file is ``{}``.
    """
    source = f"{what} {path}"
    data, node = parse_yaml(read_text_file(path, what), source)
    if mapping:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping (key: value lines) at the top "
                              f"level, got {type(data).__name__}")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{source}: top-level key {bad[0]!r} is not a name")
    return data, node
