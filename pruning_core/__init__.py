"""prunetune's pruning engine, in rooms along the flow (map: ``pruning_core/README.md``).

A sweep or script written before the rooms names the old flat modules (``pruning_core.masks``,
``pruning_core.experiment``, ...), and a pickled sweep names them too; :data:`MOVED` maps each to
its room, and :class:`_MovedModules` gives the module at its new place when something imports the
old name, so both still work. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: flat module names of the old layout -> their room now
MOVED: dict[str, str] = {
    **{m: f"base.{m}" for m in ("errors", "suggest", "registry", "rng", "code_trust", "record")},
    **{m: f"workloads.{m}" for m in (
        "bundle", "factories", "data", "models", "augment", "loader", "checkpoints")},
    **{m: f"masking.{m}" for m in (
        "targets", "masks", "select", "criteria", "schedules", "allocation", "engine",
        "variants")},
    **{m: f"measure.{m}" for m in ("metrics", "effective", "adversarial")},
    "training": "trials.loop",
    **{m: f"trials.{m}" for m in (
        "timing", "dense_cache", "experiment", "reference", "registries", "tuned")},
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import pruning_core.<old name>[.sub]`` gives the module at its new place (the same
    object, so pickles and ``isinstance`` agree)."""

    def find_spec(self, name: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        prefix, _, rest = name.partition(".")
        head = rest.partition(".")[0]
        if prefix == "pruning_core" and head in MOVED:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        head, _, tail = spec.name.partition(".")[2].partition(".")
        module = importlib.import_module(
            f"pruning_core.{MOVED[head]}" + (f".{tail}" if tail else ""))
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed at its new place


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    # first: ``pruning_core.criteria.snip`` must not be found again through the moved package's
    # ``__path__`` as a second copy under the old name
    sys.meta_path.insert(0, _MovedModules())
