"""Which code a config, space or schedule file may make prunetune import: the user's own only.

A received file is data. When it names a factory (``model.name: "my_pkg.nets:build"``), the
name is honoured only if the code lies in what the *user* (never the file) declared their own:

- **code roots**: the current working directory (on a Ray worker: the shipped
  ``--working-dir``), plus the directories in ``PRUNETUNE_CODE_ROOTS`` (``os.pathsep``-separated;
  ``prunetune sweep --working-dir DIR`` adds ``DIR``). Installed packages (``site-packages``,
  ``dist-packages``) and the standard library never count as a root, even inside one (a
  project's ``.venv``);
- **allowed packages**: top-level packages named in ``PRUNETUNE_ALLOW_IMPORT`` (comma-separated;
  ``--allow-import PKG`` on the command line, :func:`allow_import` from Python). Use it for your
  own *installed* package.

The check runs **before anything is imported**: ``importlib.util.find_spec`` locates the top-level
package without executing it; its location must be inside a code root. Then the module's source
is read (not run) and must define the attribute with ``def`` or ``class`` (or import it from
its own package), so a re-export such as ``from os import system`` is refused before the
module's import-time code runs. Only then is the module imported. The standard library and
prunetune's own dependencies are refused whatever the user allows.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import site
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError

ALLOW_ENV = "PRUNETUNE_ALLOW_IMPORT"
ROOTS_ENV = "PRUNETUNE_CODE_ROOTS"

#: installed libraries a config may never call into, allowed or not (not model factories)
REFUSED = frozenset({"torch", "torchvision", "numpy", "ray", "optuna", "wandb", "pandas",
                     "pyarrow", "duckdb", "yaml", "safetensors", "sklearn", "pruning_core",
                     "sweeps", "typer", "rich", "pydantic", "setuptools", "pip"})

#: how many ``from .x import name`` hops the source check follows
_MAX_HOPS = 8


def allowed_packages() -> frozenset[str]:
    """Top-level packages the user allowed (``PRUNETUNE_ALLOW_IMPORT``)."""
    raw = os.environ.get(ALLOW_ENV, "")
    return frozenset(p.strip() for p in raw.replace(os.pathsep, ",").split(",") if p.strip())


def allow_import(*packages: str) -> None:
    """Allow configs to name factories of these installed top-level packages (the user says
    so; a received file never can). Kept in ``PRUNETUNE_ALLOW_IMPORT`` so that Ray's workers
    and subprocesses inherit it."""
    for p in packages:
        if not p.isidentifier():
            raise ConfigError(f"--allow-import: {p!r} is not a top-level package name "
                              "(write e.g. my_pkg)")
    os.environ[ALLOW_ENV] = ",".join(sorted(allowed_packages() | set(packages)))


def add_code_root(path: str | os.PathLike[str]) -> None:
    """Count ``path`` (a directory of the user's code) as a code root, for this process and
    its children (``PRUNETUNE_CODE_ROOTS``)."""
    p = str(Path(path).resolve())
    roots = [r for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r]
    if p not in roots:
        os.environ[ROOTS_ENV] = os.pathsep.join([*roots, p])


def code_roots() -> list[Path]:
    """The working directory and the declared roots, resolved."""
    extra = [r for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r]
    return [Path(r).resolve() for r in [os.getcwd(), *extra]]


def _installed_dirs() -> list[Path]:
    """Where installed packages and the standard library live (never a code root)."""
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    paths.add(site.getusersitepackages() if hasattr(site, "getusersitepackages") else None)
    return [Path(p).resolve() for p in paths if p]


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def is_own_code(location: str | os.PathLike[str]) -> bool:
    """Whether a file or directory lies in a code root and outside installed packages."""
    p = Path(location).resolve()
    if {"site-packages", "dist-packages"} & set(p.parts):
        return False
    if any(_inside(p, d) for d in _installed_dirs()):
        return False
    return any(_inside(p, r) for r in code_roots())


def _hint(top: str) -> str:
    return (f"a config may name only your own code (in the working directory); if {top!r} is "
            f"yours, allow it with --allow-import {top} or {ALLOW_ENV}={top}")


def _locations(spec: importlib.machinery.ModuleSpec) -> list[str]:
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)
    return [spec.origin] if spec.origin and spec.has_location else []


def check_import(module_name: str, attr: str, field: str) -> None:
    """Raise ``ConfigError`` naming ``field`` unless importing ``module_name`` and taking
    ``attr`` stays inside the user's own code. Runs no code outside the code roots."""
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top in REFUSED:
        raise ConfigError(f"{field}: '{module_name}:{attr}' names the {top!r} library; a "
                          "factory must be your own code (a module of your package)")
    if top in allowed_packages():
        return  # the user said so; factories.resolve still checks where attr is defined
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: searched, not executed
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{field}: cannot find {top!r} ({exc})") from None
    if spec is None:
        raise ConfigError(
            f"{field}: cannot import {module_name!r} (no module {top!r}); run from the directory "
            "that holds it, pass sweep --working-dir, or allow your installed package with "
            "--allow-import")
    outside = [loc for loc in _locations(spec) if not is_own_code(loc)]
    if outside or not _locations(spec):
        where = outside[0] if outside else "a built-in or frozen module"
        raise ConfigError(f"{field}: '{module_name}:{attr}' is not your code ({top!r} is at "
                          f"{where}); {_hint(top)}")
    _check_defined(module_name, attr, field, hops=0)


def _source_spec(module_name: str, field: str) -> importlib.machinery.ModuleSpec:
    """The spec of a submodule of an already-checked top-level package (finding it imports its
    parent packages, which lie in the code root)."""
    try:
        spec = importlib.util.find_spec(module_name)
    except Exception as exc:  # the user's package __init__ raised: their code, their error
        raise ConfigError(f"{field}: cannot import {module_name!r} ({type(exc).__name__}: "
                          f"{exc})") from None
    if spec is None:
        raise ConfigError(f"{field}: cannot import {module_name!r}: no such module in your code")
    if not spec.origin or not spec.origin.endswith(".py") or not is_own_code(spec.origin):
        raise ConfigError(f"{field}: {module_name!r} is not Python source in your code "
                          f"({spec.origin}); {_hint(module_name.split('.')[0])}")
    return spec


def _check_defined(module_name: str, attr: str, field: str, hops: int) -> None:
    """Every module-level binding of ``attr`` in the module's source is a ``def``/``class``,
    an assignment of a computed value, or an import from a module of the same top-level package
    (followed, at most ``_MAX_HOPS`` times). An import from elsewhere, or ``name = lib.attr``,
    is a re-export: refused before the module runs."""
    spec = _source_spec(module_name, field)
    origin = str(spec.origin)
    try:
        tree = ast.parse(Path(origin).read_bytes(), filename=origin)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"{field}: cannot read {origin} ({type(exc).__name__}: {exc})") \
            from None
    package = module_name if spec.submodule_search_locations else module_name.rpartition(".")[0]
    top = module_name.split(".")[0]
    found = False
    for node in _module_level(tree.body):
        for kind, source, name in _bindings(node, attr, package):
            found = True
            if kind == "import" and source is not None and source.split(".")[0] == top \
                    and hops < _MAX_HOPS:
                _check_defined(source, name, field, hops + 1)
            elif kind != "defined":
                raise ConfigError(
                    f"{field}: '{module_name}:{attr}' is not defined in {origin} but taken from "
                    f"{source or 'elsewhere'} (a re-export of another library's callable is "
                    "refused before import); name the factory where your code defines it")
    if not found:
        raise ConfigError(f"{field}: module {module_name!r} has no attribute {attr!r}")


def _bindings(node: ast.stmt, attr: str, package: str
              ) -> Iterable[tuple[str, str | None, str]]:
    """``(kind, source module, source name)`` for each way ``node`` binds ``attr``: kind
    ``defined`` (def, class, computed value), ``import`` or ``alias`` (``x = lib.attr``)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        if node.name == attr:
            yield "defined", None, attr
    elif isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if (alias.asname or alias.name) == attr:
                yield "import", _absolute(node, package), alias.name
    elif isinstance(node, ast.Import):
        for alias in node.names:
            if (alias.asname or alias.name.split(".")[0]) == attr:
                yield "alias", alias.name, attr  # a module object: never a factory
    elif isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == attr for t in targets):
            aliased = isinstance(node.value, ast.Name | ast.Attribute)
            yield ("alias", ast.unparse(node.value), attr) if aliased else ("defined", None, attr)


def _module_level(body: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements run at import: the body, and the branches of top-level if/try blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            handlers = [s for h in node.handlers for s in h.body]
            yield from _module_level([*node.body, *handlers, *node.orelse, *node.finalbody])


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The absolute module an ``ImportFrom`` reads from."""
    if node.level == 0:
        return node.module
    parts = package.split(".")
    if node.level - 1 > len(parts) - 1:
        return None
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)
