"""``prunetune schedule export`` and ``prunetune apply``: reuse a tuned schedule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pruning_core.base.errors import ConfigError
from sweeps.cli.common import (
    AllowImport,
    allow_imports,
    apply_overrides,
    console,
    require_outputs,
    run_trial,
)
from sweeps.cli.errors import fail, warn

schedule_app = typer.Typer(help="Export tuned sparsity schedules from sweep results.",
                           no_args_is_help=True)


def _trial_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A results row's ``config.*`` columns back into a nested trial config dict."""
    from pruning_core.config import TrialConfig, set_dotted

    top = set(TrialConfig.model_fields)
    data: dict[str, Any] = {}
    for col, value in row.items():
        if not col.startswith("config.") or value is None:
            continue
        key = col.removeprefix("config.")
        if key.split(".")[0] not in top:
            continue
        if isinstance(value, float) and value != value:  # NaN from a column absent here
            continue
        if isinstance(value, str) and value[:1] in "[{":
            value = json.loads(value)
        if hasattr(value, "item"):  # numpy scalar -> Python
            value = value.item()
        set_dotted(data, key, value)
    return data


def select_row(results: str | Path, trial: str | None, best: str | None, where: str | None,
               mode: str) -> dict[str, Any]:
    """One completed trial row by id, or the best by a metric among rows matching ``where``.

    Read through :class:`sweeps.results.pareto.Results`, like ``pareto``/``query``/``report``:
    the same locked-down DuckDB connection, the same one-condition check of ``--where`` and the same
    policy for an unreadable Parquet file (skipped with a warning naming it)."""
    from sweeps.results.pareto import Results, ResultsError, quote_ident, sql_string
    from sweeps.results.paths import results_dir
    from sweeps.tune.location import is_uri

    if trial is None and best is None:
        raise ConfigError("give --trial ID or --best METRIC (e.g. --best test_accuracy)")
    results = results_dir(str(results))  # RESULTS/trials reads as RESULTS
    if not is_uri(results) and not Path(results).exists():
        raise ConfigError(f"results {results}: no such directory")
    try:
        with Results(str(results)) as res:
            if "trial_id" not in res.raw_columns or "status" not in res.raw_columns:
                raise ConfigError(f"results {results}: no trial rows under {results}/trials/")
            cols = ", ".join(quote_ident(c) for c in res.raw_columns)
            if trial is not None:
                sql = f"SELECT {cols} FROM trials WHERE trial_id = {sql_string(trial)}"
            else:
                if best not in res.columns:
                    raise ConfigError(f"--best {best}: no such column; try test_accuracy, "
                                      "sparsity, flops")
                key = quote_ident(res.resolve(best))
                order = "DESC" if mode == "max" else "ASC"
                sql = (f"SELECT {cols} FROM {res.source(where)} WHERE status = 'ok' AND "
                       f"{key} IS NOT NULL ORDER BY {key} {order}, trial_id LIMIT 1")
            out = res.query(sql)
    except ResultsError as exc:
        raise ConfigError(str(exc)) from None
    if out.empty:
        what = f"trial {trial}" if trial else f"an ok trial matching {where!r}"
        raise ConfigError(f"results {results}: no {what}")
    return out.iloc[0].to_dict()


def export_schedule(results: str | Path, out: Path, trial: str | None = None,
                    best: str | None = None, where: str | None = None,
                    mode: str = "max") -> Any:
    """Write trial ``trial`` (or the best by ``best``) of ``results`` as a schedule to ``out``.

    The layers' kinds and shapes come from building the trial's model. Where a factory the
    trial names by import path is absent here (results read on a laptop without the sweep's
    code), nothing is imported: the schedule takes the layer names and sparsities of the row
    (a names-only schedule, :attr:`Schedule.names_only`) and a warning line says so."""
    from pruning_core.config import set_dotted
    from pruning_core.trials.experiment import prunable_layers
    from pruning_core.trials.registries import load_trial_config
    from pruning_core.trials.tuned import Schedule

    row = select_row(results, trial, best, where, mode)
    if row.get("status") != "ok":
        raise ConfigError(f"trial {row.get('trial_id')}: status {row.get('status')!r}, "
                          "only completed (ok) trials can be exported")
    data = _trial_dict(row)
    absent = {f"{section}.name": name for section, name in _factory_names(data).items()
              if _absent(name)}
    if absent:  # validate the rest with registered stand-ins; the real names go back after
        probe = json.loads(json.dumps(data))
        for key in absent:
            set_dotted(probe, key, _STAND_IN[key])
        cfg = load_trial_config(probe)
        layers = None
    else:
        cfg = load_trial_config(data)
        layers = prunable_layers(cfg)
    per_layer = _layer_sparsity(row)
    metrics = {k: _plain(row[k]) for k in ("test_accuracy", "test_loss", "sparsity", "flops",
                                           "flops_dense", "params_kept", "params")
               if k in row and row[k] is not None}
    names = {"model.name": cfg.model.name, "data.name": cfg.data.name, **absent}
    schedule = Schedule.from_trial(cfg, layers, per_layer, {
        "sweep": _text(row.get("sweep")), "trial_id": _text(row.get("trial_id")),
        "model": names["model.name"], "dataset": names["data.name"], "seed": cfg.seed,
        "metrics": metrics, "prunetune_version": _text(row.get("prunetune_version")),
    })
    for key, name in absent.items():
        set_dotted(schedule.trial, key, name)
    if absent:
        code = ", ".join(f"{k} {v}" for k, v in absent.items())
        warn(f"{code}: not importable here, so the schedule holds the trial's layer names and "
             "sparsities without kinds or shapes; it applies to the same model (apply --model/"
             "--data naming it); export where that code imports to map it onto another model")
    schedule.save(out)
    return schedule


#: registered names that stand in for absent factories while the rest of the config validates
_STAND_IN = {"model.name": "mlp", "data.name": "digits"}


def _factory_names(data: dict[str, Any]) -> dict[str, str]:
    """``{"model": "pkg.nets:build", ...}``: the trial's factories named by import path."""
    from pruning_core.workloads.factories import is_import_path

    out: dict[str, str] = {}
    for section in ("model", "data"):
        part = data.get(section)
        name = part.get("name") if isinstance(part, dict) else None
        if isinstance(name, str) and is_import_path(name):
            out[section] = name
    return out


def _absent(path: str) -> bool:
    """Whether the top-level package of the factory ``path`` is absent from this Python.
    ``find_spec`` of a top-level name locates it without running any of its code; a package
    that is here (the user's own or not) goes through ``TrialConfig``'s checks as before
    (``pruning_core.base.code_trust``: a results file never makes export import other code)."""
    module = path.split(":", 1)[0]
    top = module.split(".")[0]
    if not all(part.isidentifier() for part in module.split(".")):
        return False  # not an import path: TrialConfig says so
    try:
        return importlib.util.find_spec(top) is None
    except ImportError:  # no finder can locate it: absent too
        return True
    except ValueError:  # in sys.modules without a spec: here
        return False


def _layer_sparsity(row: dict[str, Any]) -> dict[str, float]:
    """``{layer: sparsity}`` of a results row in the network's order: the row's own
    ``layer_sparsity`` map (``(layer, value)`` pairs as written), else its ``layer_sparsity.*``
    columns (results written before the map)."""
    pairs = row.get("layer_sparsity")
    if isinstance(pairs, list | tuple) and pairs:
        out: dict[str, float] = {}
        for item in pairs:
            if isinstance(item, list | tuple) and len(item) == 2:
                name, value = item
                if value is not None and value == value:
                    out[str(name)] = float(value)
        if out:
            return out
    return {c.removeprefix("layer_sparsity."): float(v) for c, v in row.items()
            if c.startswith("layer_sparsity.") and v is not None and v == v}


def _text(v: Any) -> str | None:
    """A string cell, or None for a missing one (a null reads back as NaN through pandas)."""
    return None if v is None or (isinstance(v, float) and v != v) else str(v)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


@schedule_app.command("export")
def export_cmd(
    # str, not Path: a Path would turn "s3://bucket/x" into "s3:/bucket/x"
    results: Annotated[str, typer.Argument(
        help="A sweep's results directory (or its trials/ folder, or a results URI).",
        show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Where to write the schedule YAML.")],
    trial: Annotated[str | None, typer.Option("--trial", help="Export this trial id.")] = None,
    best: Annotated[str | None, typer.Option(
        "--best", help="Export the best ok trial by this metric.")] = None,
    where: Annotated[str | None, typer.Option(
        "--where", help='SQL filter, e.g. "sparsity >= 0.8" (with --best: the best of '
        'these).')] = None,
    minimize: Annotated[bool, typer.Option(
        "--min", help="--best picks the smallest value (e.g. flops).")] = False,
) -> None:
    """Write a versioned YAML holding everything needed to prune like one trial did."""
    require_outputs({"--out": out})  # before the work: an unwritable path is one line
    try:
        s = export_schedule(results, out, trial, best, where, "min" if minimize else "max")
    except ConfigError as exc:
        fail(str(exc))
    console.print(
        f"schedule from trial {s.provenance.trial_id} ({s.prune.criterion}, {s.prune.schedule} × "
        f"{s.prune.steps}, {s.target_text()}, "
        f"test accuracy {s.provenance.metrics.get('test_accuracy', float('nan')):.4f}) "
        f"written to {out}")


def apply_cmd(
    schedule: Annotated[Path, typer.Argument(help="A schedule YAML (prunetune schedule export).")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Model to prune (default: the schedule's own).")] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Dataset (default: the schedule's own).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a key: --set train.epochs=5 (repeatable).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result JSON.")] = None,
    masks_out: Annotated[Path | None, typer.Option(
        "--masks", help="Write the final masks (safetensors).")] = None,
    trust_schedule: Annotated[bool, typer.Option(
        "--trust-schedule", help="Let the schedule choose its dataset directory, weights file "
        "and factories (still only your own code: see --allow-import). Off by default: a "
        "schedule from someone else chooses none of them.")] = False,
    allow_import: AllowImport = None,
) -> None:
    """Prune and train with a tuned schedule; maps per-layer sparsities to a related model."""
    from pruning_core.trials.experiment import prunable_layers
    from pruning_core.trials.tuned import Schedule

    allow_imports(allow_import)
    try:
        s = Schedule.load(schedule)
        overrides: dict[str, Any] = {}
        trial_model = s.trial.get("model")
        if model:
            overrides["model.name"] = model
            if not isinstance(trial_model, dict) or model != trial_model.get("name"):
                overrides["model.options"] = {}
        if data:
            overrides["data.name"] = data
        extra = apply_overrides({}, set_ or [])
        from pruning_core.base.flat import flatten

        overrides.update(flatten(extra))
        if trust_schedule:
            _warn_trusted(schedule, s.trial, overrides)
        else:
            _guard_untrusted(schedule, s.trial, model, data, overrides)
        base = s.trial_config(overrides=overrides)
        cfg = s.trial_config(prunable_layers(base), overrides)
    except ConfigError as exc:
        fail(str(exc))
    if cfg.prune.allocation.name == "explicit" and s.prune.allocation.name != "explicit":
        console.print(f"mapped {len(s.layers)} source layers onto "
                          f"{len(cfg.prune.allocation.layer_sparsity or [])} target layers "
                          f"by kind and depth; {s.target_text()}")
    run_trial(cfg, json_out, masks_out)


def _guard_untrusted(path: Path, trial: dict[str, Any], model: str | None, data: str | None,
                     overrides: dict[str, Any]) -> None:
    """A schedule file is untrusted: it never chooses which directory ``apply`` reads or which
    code it imports (see SECURITY.md).

    - ``trial.data.root`` is refused unless the user names the data: ``--set data.root=DIR``
      (a directory they trust) replaces it; with ``--data NAME`` alone it is dropped (a dataset
      that needs files then asks for ``data.root``).
    - ``trial.model.name`` / ``trial.data.name`` written as an import path
      (``pkg.module:factory``) are refused unless ``--model`` / ``--data`` (or ``--set``)
      name the model / data.
    - ``trial.model.weights`` is refused unless ``--set model.weights=PATH`` replaces it; with
      ``--model NAME`` it is dropped (it belongs to the schedule's model).
    ``--trust-schedule`` skips this guard (``_warn_trusted``)."""
    for section, flag, given in (("model", "--model", model), ("data", "--data", data)):
        part = trial.get(section)
        name = part.get("name") if isinstance(part, dict) else None
        if (isinstance(name, str) and ":" in name and not name.startswith("tv:")
                and not given and f"{section}.name" not in overrides):
            raise ConfigError(
                f"schedule {path}: trial.{section}.name names code to import ({name}); apply "
                f"never runs code chosen by a schedule file: pass {flag} NAME")
    part = trial.get("model")
    weights = part.get("weights") if isinstance(part, dict) else None
    if weights is not None and "model.weights" not in overrides:
        if not model:
            raise ConfigError(
                f"schedule {path}: trial.model.weights names a file to read ({weights}); apply "
                "never reads a file chosen by a schedule file: pass --set model.weights=PATH (a "
                "file you trust), --set model.weights=null, or --trust-schedule")
        overrides["model.weights"] = None  # the schedule's weights belong to its own model
    section = trial.get("data")
    root = section.get("root") if isinstance(section, dict) else None
    if root is None or "data.root" in overrides:
        return
    if not data:
        raise ConfigError(
            f"schedule {path}: trial.data.root names a dataset directory ({root}); apply never "
            "reads a directory chosen by a schedule file: pass --set data.root=DIR (a directory "
            "you trust) or --data NAME")
    overrides["data.root"] = None


def _warn_trusted(path: Path, trial: dict[str, Any], overrides: dict[str, Any]) -> None:
    """``--trust-schedule``: one warning line naming what the schedule will make apply import
    and read (factories still pass ``pruning_core.base.code_trust``: your own code only)."""
    chosen = []
    for key in ("model.name", "data.name", "model.weights", "data.root"):
        section, field = key.split(".")
        part = trial.get(section)
        value = part.get(field) if isinstance(part, dict) else None
        if value is None or key in overrides:
            continue
        if field != "name" or (isinstance(value, str) and ":" in value
                               and not value.startswith("tv:")):
            chosen.append(f"{key}={value}")
    warn(f"--trust-schedule: {path} chooses " + (", ".join(chosen) if chosen else
                                                  "no code, file or directory"))


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")
    app.command("apply")(apply_cmd)
