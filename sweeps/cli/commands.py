"""The ``prunetune`` command. Only this layer prints; the library logs."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sweeps.cli.common import (
    AllowImport,
    allow_imports,
    apply_overrides,
    console,
    read_yaml,
    run_trial,
)
from sweeps.cli.errors import OneLineUsageGroup

app = typer.Typer(
    cls=OneLineUsageGroup,  # click's usage errors as one `error:` line, exit 2
    name="prunetune",
    help="Sweeps that answer how to prune a network (criteria, schedules, layer-wise allocation).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    """The installed prunetune's version (its distribution metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prunetune")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"prunetune {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print prunetune's version and exit.")] = False,
) -> None:
    pass


@app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Argument(help="Trial config YAML (see configs/).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a key: --set prune.sparsity=0.95 (repeatable).")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the result (metrics, per-layer sparsity, config) as JSON.")] = None,
    masks_out: Annotated[Path | None, typer.Option(
        "--masks", help="Write the final masks (safetensors) here.")] = None,
    weights_out: Annotated[Path | None, typer.Option(
        "--weights-out", help="Write the trained, pruned weights (safetensors) here: "
        "model.weights and `prunetune similarity` read them.")] = None,
    compact_out: Annotated[Path | None, typer.Option(
        "--export-compact", help="prune.granularity channel: write the compact network "
        "(safetensors weights + the spec that rebuilds it, no pickle) here.")] = None,
    allow_import: AllowImport = None,
) -> None:
    """Run one trial: prune and train a model as the config says."""
    allow_imports(allow_import)
    data = apply_overrides(read_yaml(config), set_ or [])
    run_trial(data, json_out, masks_out, weights_out, compact_out)


@app.command("names")
def names_cmd() -> None:
    """List the registered criteria (weight and channel), schedules, allocations, timings,
    variants, models and datasets."""
    from pruning_core.trials import registries

    table = Table(show_header=True)
    table.add_column("axis")
    table.add_column("names")
    for axis, names in registries.catalogue().items():
        table.add_row(axis, ", ".join(names))
    console.print(table)


def _register_extensions(target: typer.Typer = app) -> None:
    """Add the schedule, sweep and results commands to ``target``.

    Their dependencies (Ray, Optuna, pandas, DuckDB, ...) are required ones: a module that does
    not import is a broken install, so the error propagates instead of a CLI without commands.
    """
    import importlib

    for module in ("schedule", "sweep", "results", "similarity"):
        importlib.import_module(f"sweeps.cli.{module}").register(target)


_register_extensions()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The user's factories ("my_pkg.nets:build") import from the directory prunetune runs in,
    # as with `python -m`; appended, so a file there never shadows an installed module.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    app()


if __name__ == "__main__":
    sys.exit(main())
