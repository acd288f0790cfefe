"""What several commands share: the console, YAML and ``--set`` reading, running one trial
with a progress bar and printing its summary. Its own module so every command module imports
it, and none imports another (the commands register onto the app in ``commands.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pruning_core.base.errors import ConfigError
from sweeps.cli.errors import fail, output_console
from sweeps.results.outputs import check_outputs

console = output_console()  # not a terminal: wide, so tables in logs are not cut at 80 columns


#: ``--allow-import PKG``: the user's own installed packages a config may name factories of
AllowImport = Annotated[list[str] | None, typer.Option(
    "--allow-import", metavar="PKG",
    help="Let configs name factories (pkg.module:build) of this installed top-level package "
         "of yours (repeatable; also PRUNETUNE_ALLOW_IMPORT=a,b). Code in the working "
         "directory is always allowed; other installed libraries never are.")]


def allow_imports(packages: list[str] | None) -> None:
    """Record ``--allow-import`` values (``pruning_core.base.code_trust``); a bad name: one line."""
    from pruning_core.base.code_trust import allow_import

    try:
        allow_import(*(packages or []))
    except ConfigError as exc:
        fail(str(exc))


_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$")


def read_yaml(path: Path, what: str = "config") -> dict[str, Any]:
    """A YAML mapping through the one guarded reader (``pruning_core.config.read_yaml_file``):
    unreadable, non-UTF-8, duplicate keys, alias bombs, not a mapping -> one line, exit 2."""
    from pruning_core.config import read_yaml_file

    try:
        return read_yaml_file(path, what)[0]
    except ConfigError as exc:
        fail(str(exc))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``--set prune.sparsity=0.95``; values parse as YAML (numbers, lists, true/false)."""
    from pruning_core.config import parse_yaml, set_dotted

    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--set {item!r}: expected dotted.key=value, e.g. --set prune.sparsity=0.95")
        if not _KEY_RE.match(key):
            fail(f"--set {item!r}: {key!r} is not a dotted key like prune.sparsity")
        try:
            value = parse_yaml(raw, f"--set {key}")[0] if raw else ""
        except ConfigError as exc:
            fail(str(exc))
        set_dotted(data, key, value)
    return data


def run_trial(data: dict[str, Any] | Any, json_out: Path | None,
              masks_out: Path | None = None, weights_out: Path | None = None,
              compact_out: Path | None = None) -> None:
    """Validate, run with a progress bar, print a summary, optionally write JSON and masks."""
    from pruning_core.config import TrialConfig, check_device_available
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config

    try:
        cfg = data if isinstance(data, TrialConfig) else load_trial_config(data)
        check_device_available(cfg.train.device)
        check_outputs({"--json": json_out, "--masks": masks_out,  # before the work, not after
                       "--weights-out": weights_out, "--export-compact": compact_out})
        # transient: an error raised inside run() (a missing dataset, a plan past the end, a
        # model that does not fit the data) erases the live bar, and a pipe never gets it, so
        # the error line is all there is; the bar's final state is printed once run() returned
        # (a Live of its own: Progress.stop writes a blank line to a pipe even when transient)
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=console, auto_refresh=False)
        with Live(get_renderable=progress.get_renderable, console=console,
                  refresh_per_second=4, transient=True):
            task = progress.add_task(f"{cfg.prune.criterion} → {cfg.prune.sparsity:g}",
                                     total=None, info="pruning / loading")

            def on_epoch(report: Any) -> None:
                m = report.metrics
                progress.update(task, completed=report.epoch, total=report.total_epochs,
                                info=f"loss {m['train_loss']:.3f}  test acc "
                                     f"{m['test_accuracy']:.4f}  sparsity {m['sparsity']:.4f}")

            result = run(cfg, on_epoch=on_epoch, masks_out=masks_out, weights_out=weights_out,
                         compact_out=compact_out)
            progress.stop_task(task)
    except ConfigError as exc:
        fail(str(exc))
    if progress.tasks[0].total is None:  # no training epoch reported
        progress.update(task, total=0, info="no training epochs")
    console.print(progress.get_renderable())
    print_summary(result)
    if json_out is not None:
        payload = {**result.to_dict(), "config": cfg.model_dump(mode="json")}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2))
        console.print(f"result written to {json_out}")
    if masks_out is not None:
        console.print(f"masks written to {masks_out} (safetensors)")
    if weights_out is not None:
        console.print(f"weights written to {weights_out} (safetensors)")
    if compact_out is not None:
        console.print(f"compact model written to {compact_out} (safetensors + rebuild spec; "
                      "load with pruning_core.structured.load_compact or model.weights)")


def print_summary(result) -> None:
    table = Table(title="trial result", show_header=False)
    rows = [
        ("status", result.status + (f" (epoch {result.diverged_epoch})"
                                    if result.diverged_epoch else "")
         + (f": {result.error.removeprefix('doomed: ')}" if result.status == "doomed" else "")),
        ("test accuracy", f"{result.test_accuracy:.4f}"),
        ("test loss (perplexity)", f"{result.test_loss:.4f} ({result.perplexity:.2f})"),
        ("train accuracy", f"{result.train_accuracy:.4f}"),
        ("sparsity (target)", f"{result.sparsity:.4f} ({result.target_sparsity:.4f})"),
        ("params kept / all", f"{result.params_kept:,} / {result.params:,}"),
        ("FLOPs effective / dense", f"{result.flops:,} / {result.flops_dense:,}"),
        *([("node sparsity (channels)", f"{result.node_sparsity:.4f}")]
          if result.node_sparsity is not None else []),
        *([("speed-up train step / inference",
            f"{result.speedup:.2f}x / {result.inference_speedup:.2f}x "
            f"({result.train_step_ms:.2f} ms vs {result.train_step_ms_dense:.2f} ms dense)")]
          if result.speedup is not None else []),
        *([("2:4 semi-structured speed-up",
            f"{result.nm_speedup:.2f}x ({result.nm_speedup_note})"
            if result.nm_speedup is not None else f"not measured: {result.nm_speedup_note}")]
          if result.nm_speedup_note is not None else []),
        *([("effective sparsity (disconnected)",
            f"{result.effective_sparsity:.4f} ({result.disconnected_weights:,} weights, "
            f"{result.dead_units:,} dead units)")]
          if result.effective_sparsity is not None else []),
        *([("gap train - test accuracy", f"{result.gap_accuracy:+.4f}")]
          if result.gap_accuracy is not None and result.gap_accuracy == result.gap_accuracy
          else []),
        *([("adversarial accuracy", f"{result.adv_accuracy:.4f} ({result.adversarial['attack']}"
            f", eps {result.adversarial['eps']:.4g}, {result.adversarial['samples']} examples)")]
          if result.adv_accuracy is not None else []),
        ("collapsed layers", ", ".join(result.collapsed_layers) or "none"),
        ("prune / train time", f"{result.prune_time_s:.2f} s / {result.train_time_s:.2f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    layers = Table(title="per-layer sparsity")
    layers.add_column("layer")
    layers.add_column("sparsity", justify="right")
    for name, s in result.layer_sparsity.items():
        layers.add_row(name, f"{s:.4f}")
    console.print(layers)


def require_outputs(files: dict[str, Path | None] | None = None,
                    directories: dict[str, Path | None] | None = None) -> None:
    """``check_outputs`` for a command: a bad path is one line on stderr and exit code 2."""
    try:
        check_outputs(files, directories)
    except ConfigError as exc:
        fail(str(exc))
