"""``prunetune similarity CONFIG A B``: layer-by-layer similarity of two trained networks, given
as weights files, or as two trials of a finished sweep (``--results RESULTS TRIAL_A TRIAL_B``,
for sweeps run with ``metrics: {keep_weights: true}``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pruning_core.base.errors import ConfigError
from sweeps.cli.errors import fail

METHODS = ("cka", "debiased_cka", "minibatch_cka", "svcca", "pwcca")


def similarity_cmd(
    targets: Annotated[list[str], typer.Argument(
        metavar="CONFIG A B | TRIAL_A TRIAL_B",
        help="a trial config YAML (the architecture, and the data whose test split is used) and "
        "the weights of networks A and B (.safetensors or state dict); with --results, two "
        "trial ids of that sweep")],
    results: Annotated[str | None, typer.Option(
        "--results", help="a finished sweep's results directory: compare two of its trials by "
        "id (their configs from the results, their weights from RESULTS/weights/, kept when the "
        "space sets metrics: {keep_weights: true})")] = None,
    config_b: Annotated[Path | None, typer.Option(
        "--config-b", help="B's trial config when its architecture differs")] = None,
    method: Annotated[str, typer.Option("--method", help=", ".join(METHODS))] = "cka",
    layers: Annotated[list[str] | None, typer.Option(
        "--layer", help="layer (module) name to compare, repeatable [default: every "
        "Conv/Linear module both networks have]")] = None,
    examples: Annotated[int, typer.Option("--examples", help="test inputs used")] = 1000,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="PNG heatmap of every layer of A against every layer of B")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the numbers here")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config key (repeatable; with --results, of both trials)")]
    = None,
) -> None:
    """Similarity of A's and B's layers on the same test inputs (docs/similarity.md).

    Layers of the same name are compared pairwise (printed); --plot draws the full layer x layer
    matrix. Save trained weights with `prunetune run CONFIG --weights-out W.safetensors`, or run
    the sweep with `metrics: {keep_weights: true}` and name trials with --results.
    """
    from sweeps.results.outputs import check_outputs

    if method not in METHODS:
        fail(f"--method: {method!r} is not one of {', '.join(METHODS)}")
    if examples < 10:
        fail(f"--examples: {examples} is too few; use at least 10")
    data_a, data_b, a, b = _inputs(targets, results, config_b, set_ or [])
    try:
        check_outputs({"--plot": plot, "--json": json_out})  # before the work
        for path in (plot, json_out):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        result = _compare(data_a, data_b, a, b, method, layers, examples, plot)
    except ConfigError as exc:
        fail(str(exc))
        return
    if results is not None:
        result["trials"] = {"a": targets[0], "b": targets[1], "results": results}
    _print_pairs(result, method)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=1))


def _inputs(targets: list[str], results: str | None, config_b: Path | None,
            sets: list[str]) -> tuple[dict[str, Any], dict[str, Any], Path, Path]:
    """A's and B's configs (``--set`` applied) and weights files, from CONFIG A B or, with
    ``--results``, from two trial ids; one ``error:`` line on bad arguments."""
    from sweeps.cli.common import apply_overrides, read_yaml

    if results is not None:
        if len(targets) != 2:
            fail(f"with --results give two trial ids (TRIAL_A TRIAL_B); got {len(targets)} "
                 "arguments")
        if config_b is not None:
            fail("--config-b does not apply with --results: each trial brings its own config")
        try:
            (data_a, a), (data_b, b) = (trial_inputs(results, tid) for tid in targets)
        except ConfigError as exc:
            fail(str(exc))
        return apply_overrides(data_a, sets), apply_overrides(data_b, sets), a, b
    if len(targets) != 3:
        fail(f"give CONFIG A B (a trial config and two weights files), or --results RESULTS "
             f"TRIAL_A TRIAL_B; got {len(targets)} arguments")
    config, a, b = (Path(t) for t in targets)
    data_a = apply_overrides(read_yaml(config), sets)
    data_b = apply_overrides(read_yaml(config_b), sets) if config_b else data_a
    return data_a, data_b, a, b


def _print_pairs(result: dict[str, Any], method: str) -> None:
    """The same-name layer pairs and their similarity, as a table."""
    table = Table(title=f"{method} similarity, {result['examples']} test inputs")
    table.add_column("layer of A")
    table.add_column("layer of B")
    table.add_column(method, justify="right")
    for row in result["pairs"]:
        table.add_row(row["a"], row["b"], f"{row['similarity']:.4f}")
    Console().print(table)


#: how many known trial ids an unknown-id error lists
_LIST_IDS = 8


def trial_inputs(results: str, trial_id: str) -> tuple[dict[str, Any], Path]:
    """(the trial's config as a dict, the path of its kept weights) from a sweep's results.

    The config is rebuilt from the trial's ``config.*`` columns (the resolved TrialConfig the
    recorder flattened); the weights are ``RESULTS/weights/<trial_id>.safetensors``. Raises
    :class:`ConfigError` (one line) for an unknown id or a trial that kept no weights.
    """

    from sweeps.results.store import TrialStore
    from sweeps.tune.location import resolve
    from sweeps.tune.trainable import WEIGHTS_DIR

    where = resolve(results)
    if where.remote:
        raise ConfigError(f"--results: {results} is on object storage; trial weights are kept "
                          "for local results only")
    root = Path(where.local)
    if not root.is_dir():
        raise ConfigError(f"--results: {root} is not a directory")
    store = TrialStore(str(root))
    if not store.has(trial_id):
        known = sorted(store.trial_ids())
        listed = ", ".join(known[:_LIST_IDS]) + (", ..." if len(known) > _LIST_IDS else "")
        raise ConfigError(f"trial {trial_id!r} is not in {root} ({len(known)} trials"
                          + (f": {listed})" if known else ")"))
    row = store.row(trial_id)
    assert row is not None  # store.has said so
    weights = root / WEIGHTS_DIR / f"{trial_id}.safetensors"
    if not weights.is_file():
        raise ConfigError(f"trial {trial_id!r} kept no weights ({weights} is missing): run the "
                          "sweep with metrics: {keep_weights: true} in its fixed config")
    return config_from_row(row), weights


def config_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The nested trial config from a results row's ``config.<dotted.key>`` columns (lists and
    dicts were stored as JSON text, empty ones and unset values as null: left to defaults)."""
    from pruning_core.config import TrialConfig

    fields = set(TrialConfig.model_fields)
    out: dict[str, Any] = {}
    for column, value in row.items():
        if not column.startswith("config.") or value is None:
            continue
        keys = column.removeprefix("config.").split(".")
        if keys[0] not in fields:  # e.g. the sampler's own ``search.*`` values
            continue
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return out


def _model(data: dict[str, Any], weights: Path) -> tuple[Any, Any]:
    from pruning_core.structured.compact_file import load_weights
    from pruning_core.trials.registries import load_trial_config
    from pruning_core.trials.trial import load_bundle
    from pruning_core.workloads.models import create_model

    cfg = load_trial_config(data)
    bundle = load_bundle(cfg)
    model = create_model(cfg.model.name, bundle.input_shape, bundle.num_classes,
                         **cfg.model.options)
    load_weights(model, weights, cfg.model.weights_strict, field=str(weights))
    return model.eval(), bundle


def _compare(data_a: dict[str, Any], data_b: dict[str, Any], a: Path, b: Path, method: str,
             layers: list[str] | None, examples: int, plot: Path | None) -> dict[str, Any]:
    import torch

    from pruning_core.similarity import compare_models, prunable_layers, similarity_matrix

    model_a, bundle = _model(data_a, a)
    model_b, _ = _model(data_b, b)
    xs, seen = [], 0
    for i in range(min(examples, len(bundle.test))):
        xs.append(bundle.test[i][0])
        seen += 1
    batches = [torch.stack(xs[i:i + 250]) for i in range(0, seen, 250)]
    pairs = None if not layers else [(name, name) for name in layers]
    out = compare_models(model_a, model_b, batches, method=method, pairs=pairs)
    result: dict[str, Any] = {
        "method": method, "examples": seen, "a": str(a), "b": str(b),
        "pairs": [{"a": la, "b": lb, "similarity": v} for (la, lb), v in out.items()],
    }
    if plot is not None:
        la, lb = prunable_layers(model_a), prunable_layers(model_b)
        matrix = similarity_matrix(model_a, model_b, batches, la, lb, method=method)
        _heatmap(matrix.numpy(), la, lb, method, plot)
        result["matrix"] = {"layers_a": la, "layers_b": lb, "values": matrix.tolist()}
    return result


def _heatmap(values: Any, rows: list[str], cols: list[str], method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(cols), 1.0 + 0.5 * len(rows)))
    im = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("layers of B")
    ax.set_ylabel("layers of A")
    fig.colorbar(im, ax=ax, label=method)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def register(app: typer.Typer) -> None:
    app.command("similarity")(similarity_cmd)
