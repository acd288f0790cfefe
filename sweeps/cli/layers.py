"""``prunetune layers CONFIG``: what a trial config will prune (name, kind, shape, count)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pruning_core.base.errors import ConfigError
from sweeps.cli.common import AllowImport, allow_imports, apply_overrides, console, read_yaml
from sweeps.cli.errors import fail


def layers_cmd(
    config: Annotated[Path, typer.Argument(help="Trial config YAML (see configs/).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a key: --set prune.include='[\"*\"]' (repeatable).")] = None,
    allow_import: AllowImport = None,
) -> None:
    """List the weights the config will prune: name, kind, shape, count and the total
    (builds the model on CPU; reads no data, trains nothing)."""
    allow_imports(allow_import)
    from pruning_core.trials.listing import prune_targets
    from pruning_core.trials.registries import load_trial_config

    data = apply_overrides(read_yaml(config), set_ or [])
    try:
        targets = prune_targets(load_trial_config(data))
    except ConfigError as exc:
        fail(str(exc))
        return
    zero = set(targets.zero)
    table = Table(title=f"prunable weights of {config}", title_justify="left")
    for col, justify in (("layer", "left"), ("kind", "left"), ("shape", "left"),
                         ("weights", "right"), ("note", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for info in targets.layers:
        note = ""
        if info.name in zero:
            note = "all zero: left out" if targets.excluded_by_default else \
                "all zero: pruned (prune_zero_layers)"
        table.add_row(info.name, info.kind, "×".join(map(str, info.shape)) or "scalar",
                      f"{info.numel:,}", note)
    console.print(table)
    console.print(f"total: {len(targets.layers)} tensors, {targets.total:,} weights")
    if zero:
        verb = "left out of pruning" if targets.excluded_by_default else "pruned anyway"
        console.print(f"all-zero at build ({verb}): {', '.join(targets.zero)}; "
                      f"pruned: {targets.pruned_total:,} weights")


def register(app: typer.Typer) -> None:
    app.command("layers")(layers_cmd)
