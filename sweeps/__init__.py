"""prunetune's sweeps, along the data flow: ``tune`` runs them on Ray, ``results`` reads what
they wrote (without Ray), ``cli`` is the ``prunetune`` command.

A sweep started before this layout pickled its searcher, callbacks and scheduler under the old
flat module names (``sweeps.study``, ``sweeps.recorder``, ...); :class:`_MovedModules` maps
those names to the new modules when something imports them, so such a sweep still resumes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: flat module names of the old layout -> their place now
MOVED: dict[str, str] = {
    **{m: f"sweeps.tune.{m}" for m in (
        "space", "yaml_lines", "launch", "trainable", "recorder", "wandb_log", "ray_env",
        "code_env", "preflight", "schedulers", "study", "warm_start", "dense_store", "progress",
        "schema_config")},
    **{m: f"sweeps.results.{m}" for m in (
        "store", "pareto", "hypervolume", "compaction", "schema", "schema_read", "report",
        "report_columns", "report_figures", "report_flags", "report_html", "report_importance",
        "report_png", "report_style", "jsonable", "paths", "flags", "outputs")},
    "cli_errors": "sweeps.cli.errors", "cli_results": "sweeps.cli.results",
    "cli_schedule": "sweeps.cli.schedule", "cli_similarity": "sweeps.cli.similarity",
    "cli_sweep": "sweeps.cli.sweep",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import sweeps.<old name>`` gives the module at its new place (the same object)."""

    def find_spec(self, name: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        prefix, _, short = name.partition(".")
        if prefix == "sweeps" and short in MOVED:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name.partition(".")[2]])
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed at its new place


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
