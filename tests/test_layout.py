"""No import circle anywhere, and no room importing one above it (issue 17, item 2).

The import graph of every module of ``pruning_core/`` and ``sweeps/`` is read statically (``ast``):
every ``import`` / ``from ... import``, at the top of a module and inside functions alike (a lazy
import is still a dependency), relative ones resolved; an import under ``if TYPE_CHECKING:`` is an
edge too (a type-only import still ties the two modules: neither can be read or replaced alone; the
shared checker ``../shared/tools/import_circles.py`` counts them as well). ``from pkg import name``
where ``name`` is a submodule is an edge to that
submodule. Its strongly connected components (Tarjan) with more than one module are the circles.

``KNOWN_CYCLES`` is a ratchet: the circles not yet broken, each a frozenset of module names. It
may only shrink: a circle not in it fails, and so does a listed circle that no longer exists (take
it off the list).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pruning_core", "sweeps")

#: circles not broken yet; may only shrink
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()

#: pruning_core's rooms along the flow (pruning_core/README.md), bottom to top
_ENGINE_ROOMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("pruning_core.base",)),
    ("config", ("pruning_core.config",)),
    ("workloads", ("pruning_core.workloads",)),
    ("masking", ("pruning_core.masking",)),
    ("structured", ("pruning_core.structured",)),
    ("measure", ("pruning_core.measure",)),
    ("similarity", ("pruning_core.similarity",)),
    ("trials", ("pruning_core.trials",)),
    ("packing", ("pruning_core.packing",)),
)

#: rooms, each ``(name, module prefixes)``, listed bottom to top within one stack: a module of a
#: room may not import a module of any room above it (a prefix covers its submodules too)
LAYERS: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...] = (
    # inside the engine: making masks never needs training or the experiment
    _ENGINE_ROOMS,
    # the data flow: the engine, reading results, running sweeps, the command line
    (("engine", ("pruning_core",)), ("results", ("sweeps.results",)),
     ("tune", ("sweeps.tune",)), ("cli", ("sweeps.cli",))),
)

Graph = dict[str, dict[str, int]]  # module -> {imported module: first line}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _known(name: str, modules: Iterable[str]) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules`` (``a.b.c`` -> ``a.b``)."""
    mods = set(modules)
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _edges(name: str, path: Path, modules: set[str]) -> dict[str, int]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is not None and target != name:
            out.setdefault(target, line)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_known(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            attributes = False
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:  # ``from pkg import submodule``
                    add(sub, node.lineno)
                else:
                    attributes = True
            if attributes:
                add(_known(source, modules), node.lineno)
        else:
            visit(node)

    visit(ast.parse(path.read_text(), str(path)))
    return out


def import_graph(root: Path, packages: Sequence[str] = PACKAGES) -> Graph:
    """The import graph of every module under ``root/<package>`` (edges inside it only)."""
    paths = {_module_name(root, p): p for pkg in packages
             for p in sorted((root / pkg).rglob("*.py"))}
    modules = set(paths)
    return {name: _edges(name, path, modules) for name, path in sorted(paths.items())}


def cycles(graph: Mapping[str, Mapping[str, int]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(graph) + 100))

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def describe(cycle: frozenset[str], graph: Mapping[str, Mapping[str, int]]) -> str:
    """A circle's modules and the imports that close it (``a -> b (line n)``)."""
    edges = [f"{a} -> {b} (line {line})" for a in sorted(cycle)
             for b, line in sorted(graph[a].items()) if b in cycle]
    return "{" + ", ".join(sorted(cycle)) + "}: " + "; ".join(edges)


def _room(module: str, rooms: Sequence[tuple[str, tuple[str, ...]]]) -> int | None:
    """The highest room of ``rooms`` whose prefixes cover ``module``."""
    hits = [i for i, (_, prefixes) in enumerate(rooms)
            if any(module == p or module.startswith(p + ".") for p in prefixes)]
    return max(hits) if hits else None


def upward_imports(graph: Mapping[str, Mapping[str, int]],
                   layers: Sequence[Sequence[tuple[str, tuple[str, ...]]]] = LAYERS) -> list[str]:
    """Every import from a room into a room above it in the same stack."""
    bad = []
    for rooms in layers:
        for a, targets in sorted(graph.items()):
            ra = _room(a, rooms)
            if ra is None:
                continue
            for b, line in sorted(targets.items()):
                rb = _room(b, rooms)
                if rb is not None and rb > ra:
                    bad.append(f"{a} ({rooms[ra][0]}) imports {b} ({rooms[rb][0]}), line {line}")
    return bad


# --------------------------------------------------------------------------- the project


def test_no_import_circle_but_the_known_ones() -> None:
    graph = import_graph(REPO)
    assert len(graph) > 100 and "pruning_core.trials.experiment" in graph
    found = cycles(graph)
    new = [describe(c, graph) for c in found if c not in KNOWN_CYCLES]
    assert not new, "import circles:\n" + "\n".join(new)
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"circles broken: take them off KNOWN_CYCLES: {gone}"


def test_no_room_imports_one_above_it() -> None:
    graph = import_graph(REPO)
    for rooms in LAYERS:  # every prefix names real modules (a typo would check nothing)
        for _, prefixes in rooms:
            for p in prefixes:
                assert any(m == p or m.startswith(p + ".") for m in graph), p
    bad = upward_imports(graph)
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------- the checker


def _package(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_planted_circle(tmp_path: Path) -> None:
    """A circle closed only by a lazy, relative import inside a function is still found, and so
    is one closed only under ``TYPE_CHECKING``; ``from pkg import submodule`` is an edge."""
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg.c import x\n    return x\n",
        "pkg/c.py": "import os\n\ndef x():\n    if True:\n        from . import a\n",
        "pkg/d.py": ("from typing import TYPE_CHECKING\nfrom pkg import e\n"
                     "if TYPE_CHECKING:\n    from pkg.a import helper\n"),
        "pkg/e.py": "import typing\nif typing.TYPE_CHECKING:\n    import pkg.d\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/f.py": "from ..sub import g\n",
        "pkg/sub/g.py": "class G:\n    def m(self):\n        import pkg.sub.f as f\n",
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.c"] == {"pkg.a": 5}
    assert graph["pkg.d"] == {"pkg.e": 2, "pkg.a": 4} and graph["pkg.e"] == {"pkg.d": 3}
    found = cycles(graph)
    assert sorted(sorted(c) for c in found) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.e"],
                                                ["pkg.sub.f", "pkg.sub.g"]]
    text = describe(frozenset({"pkg.a", "pkg.b", "pkg.c"}), graph)
    assert "pkg.b -> pkg.c (line 2)" in text and "pkg.c -> pkg.a (line 5)" in text


def test_the_checker_finds_an_upward_import(tmp_path: Path) -> None:
    _package(tmp_path, {
        "eng/__init__.py": "",
        "eng/masks.py": "def f():\n    from eng.training import fit\n",
        "eng/training.py": "from .masks import f\n",
        "eng/other.py": "from . import training\n",
    })
    layers = ((("mask-making", ("eng.masks",)), ("training", ("eng.training",))),)
    graph = import_graph(tmp_path, ["eng"])
    assert upward_imports(graph, layers) == [
        "eng.masks (mask-making) imports eng.training (training), line 2"]
    assert [sorted(c) for c in cycles(graph)] == [["eng.masks", "eng.training"]]
