"""``prunetune validate SPACE`` and ``prunetune sweep SPACE``: registered onto the main app."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pruning_core.base.errors import ConfigError
from sweeps.cli.common import AllowImport, allow_imports
from sweeps.cli.errors import fail, output_console

if TYPE_CHECKING:
    from sweeps.tune.launch import SweepOutcome
    from sweeps.tune.progress import Progress
    from sweeps.tune.space import SearchSpace

SpaceArg = Annotated[Path, typer.Argument(help="search-space YAML (see search_spaces/)")]


def validate_cmd(
    space_path: SpaceArg,
    samples: Annotated[int, typer.Option("--samples", help="configs to sample and check")] = 32,
    screen: Annotated[int, typer.Option(
        "--screen", metavar="N", help="also build N sampled configs' masks without training "
        "and print the share that is doomed (no input->output path), by criterion and "
        "sparsity")] = 0,
    allow_import: AllowImport = None,
) -> None:
    """Load a search space, sample configurations and validate each as a TrialConfig."""
    allow_imports(allow_import)
    if screen < 0:
        fail(f"--screen {screen}: give a number of configs (0: no screen)")
    from sweeps.tune.space import load_space, validate_space

    try:
        space = load_space(space_path)
        configs = validate_space(space, n=samples)
    except ConfigError as exc:
        fail(str(exc))
        return
    console = output_console()
    table = Table(title=f"search space {space.name}", show_header=False, title_justify="left")
    table.add_row("objectives", ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives))
    table.add_row("sampler", f"{space.sampler.name} (seed {space.sampler.seed})")
    table.add_row("budget", f"{space.budget.num_samples} trials, "
                            f"{space.budget.max_concurrent or 'unlimited'} at once")
    table.add_row("resources", f"cpu {space.resources.cpu:g}, gpu {space.resources.gpu:g}")
    if space.scheduler:
        table.add_row("scheduler", space.scheduler.describe())
    for key, p in space.params.items():
        when = f"  when {p.when}" if p.when else ""
        table.add_row(f"param {key}", f"{p.type}{when}")
    if space.layers:
        table.add_row("prunable layers", ", ".join(n for n, _ in space.layers))
    table.add_row("results", space.results_dir)
    console.print(table)
    console.print(f"ok: {len(configs)} sampled configurations are valid TrialConfigs")
    if screen:
        _print_screen(space, screen, console)


def _print_screen(space: object, n: int, console: Console) -> None:
    """``validate --screen N``: the doomed share of the space, by criterion and sparsity."""
    from sweeps.tune.screen import doomed_share, screen_space

    try:
        rows = screen_space(space, n)
    except ConfigError as exc:
        fail(str(exc))
    table = Table(title=f"screen: {len(rows)} configs, masks built without training",
                  title_justify="left")
    for col in ("criterion", "sparsity", "screened", "doomed", "share"):
        table.add_column(col, justify="left" if col == "criterion" else "right")
    for criterion, sparsity, screened, doomed in doomed_share(rows):
        table.add_row(criterion, f"{sparsity:g}", str(screened), str(doomed),
                      f"{doomed / screened:.0%}")
    console.print(table)
    doomed = sum(r["verdict"] == "doomed" for r in rows)
    later = sum(r["verdict"] == "unscreened" for r in rows)
    console.print(f"doomed: {doomed} of {len(rows) - later} screened configs"
                  + (f"; {later} prune after training starts (not screened)" if later else ""))


def sweep_cmd(
    space_path: SpaceArg,
    address: Annotated[str | None, typer.Option(
        "--address", help="join a Ray cluster: auto, host:port or ray://host:port")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="sweep name (and results directory) instead of the space's")] = None,
    num_samples: Annotated[int | None, typer.Option(
        "--num-samples", help="number of trials instead of budget.num_samples")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="finish a sweep that was interrupted or killed")] = False,
    num_cpus: Annotated[int | None, typer.Option(
        "--num-cpus", help="CPUs of the embedded Ray (default: all)")] = None,
    warm_start: Annotated[list[str] | None, typer.Option(
        "--warm-start", help="earlier RESULTS whose Pareto front seeds the study "
                             "(repeatable)")] = None,
    working_dir: Annotated[str | None, typer.Option(
        "--working-dir", help="your code for every Ray worker (model/data factories): shipped "
        "with the job, results/.venv/.git left out [default: the current directory]",
        show_default=False)] = None,
    allow_import: AllowImport = None,
    log_interval_s: Annotated[float | None, typer.Option(
        "--log-interval", metavar="SECONDS",
        help="where the output is not a terminal (a log, a pipe): a plain status line this "
        "often, besides one line per finished trial; 0: none (default: PRUNETUNE_LOG_INTERVAL, "
        "else 30)", show_default=False)] = None,
) -> None:
    """Run a sweep: Ray Tune + OptunaSearch; one Parquet row per trial; Pareto front at the end."""
    finish = resume_command(space_path, name=name, num_samples=num_samples, address=address,
                            working_dir=working_dir, allow_import=allow_import,
                            num_cpus=num_cpus)
    working_dir = _prepare_driver(working_dir, allow_import, address)
    from sweeps.tune.driver_log import driver_log_path
    from sweeps.tune.launch import ray_trials, results_root
    from sweeps.tune.progress import Progress

    space, interval = _load_checked(space_path, name, num_samples, address, num_cpus,
                                    log_interval_s)
    console = output_console()  # not a terminal (a log): wide, the front table is not cut
    # where the live table cannot draw (a log, a pipe): plain lines, one per finished trial;
    # with budget.pack the live table counts Ray trials (packs) (docs/sweeps.md, "Packs")
    progress = Progress(space.name, ray_trials(space), space.metrics, space.modes,
                        emit=None if console.is_terminal else typer.echo, interval=interval)
    log_path = driver_log_path(results_root(space), space.name)
    outcome = _run_live(space, progress, console, log_path, address=address, resume=resume,
                        working_dir=working_dir, num_cpus=num_cpus, warm_start=warm_start)
    _print_outcome(console, space, outcome, progress, finish, log_path)


def _prepare_driver(working_dir: str | None, allow_import: list[str] | None,
                    address: str | None) -> str:
    """The user's code directory (default: here) on the driver's path and trusted, and Ray's
    auth defaults set before Ray is imported; returns the directory."""
    import os
    import sys

    from pruning_core.base.code_trust import add_code_root

    working_dir = working_dir or os.getcwd()
    if not os.path.isdir(working_dir):
        fail(f"--working-dir: {working_dir!r} is not a directory")
    allow_imports(allow_import)
    # the shipped code is the user's: the driver validates factories against the same files
    add_code_root(working_dir)
    if os.path.abspath(working_dir) not in sys.path:
        sys.path.append(os.path.abspath(working_dir))
    from sweeps.tune.ray_env import client_auth_defaults, embedded_auth_defaults

    if address is not None:
        client_auth_defaults()  # before Ray is imported: it reads RAY_AUTH_MODE once
    else:
        embedded_auth_defaults()
    return working_dir


def _load_checked(space_path: Path, name: str | None, num_samples: int | None,
                  address: str | None, num_cpus: int | None,
                  log_interval_s: float | None) -> tuple[SearchSpace, float]:
    """The space with the command's overrides, validated as ``prunetune validate`` does, and
    the status-line interval; a problem: one line, exit 2."""
    from sweeps.tune.launch import environment_defaults, with_overrides
    from sweeps.tune.preflight import check_address
    from sweeps.tune.progress import log_interval
    from sweeps.tune.space import load_space, validate_space

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    environment_defaults()
    if num_cpus is not None and num_cpus < 1:
        fail(f"--num-cpus {num_cpus}: give at least 1 (trials need a CPU)")
    try:
        interval = log_interval(log_interval_s)
        space = with_overrides(load_space(space_path), name=name, num_samples=num_samples)
        validate_space(space)  # the checks `prunetune validate` runs, before anything starts
        check_address(address)
    except ConfigError as exc:
        fail(str(exc))
    return space, interval


def _run_live(space: SearchSpace, progress: Progress, console: Console, log_path: Path, *,
              address: str | None, resume: bool, working_dir: str, num_cpus: int | None,
              warm_start: list[str] | None) -> SweepOutcome:
    """``run_sweep`` under the live table and the driver log; Ray's start-up failures (no
    cluster, refused, another Ray or Python) become one line and exit 2."""
    from sweeps.tune.driver_log import driver_log
    from sweeps.tune.launch import run_sweep
    from sweeps.tune.preflight import connect_deadline

    try:
        # transient: an error leaves nothing but its one line; the final table is printed below
        # driver_log: messages about trials a stop cut short go to the log file only
        with connect_deadline(address), driver_log(log_path, lambda: progress.stopped_on_purpose), \
                Live(get_renderable=progress.renderable, console=console, refresh_per_second=2,
                     transient=True):
            return run_sweep(space, address=address, resume=resume, callbacks=[progress],
                             working_dir=working_dir,
                             num_cpus=num_cpus, warm_start=warm_start or ())
    except ConfigError as exc:
        fail(str(exc))
    except ConnectionError as exc:  # ray.init: no cluster at --address auto, refused, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if address:  # the port answered (check_address probed it): a refusal, most often auth
            fail(f"--address {address}: {first.rstrip('.')}; the cluster answered but refused "
                 "this driver: give it the cluster's token (RAY_AUTH_TOKEN or "
                 "RAY_AUTH_TOKEN_PATH; infra/README.md) and the same Ray version")
        fail(f"Ray did not start: {first}")
    except RuntimeError as exc:  # ray.init on a cluster of another Ray / Python version
        if not str(exc).startswith("Version mismatch"):
            raise
        fail(version_mismatch(address, str(exc)))


def _print_outcome(console: Console, space: SearchSpace, outcome: SweepOutcome,
                   progress: Progress, finish: str, log_path: Path) -> None:
    """The final table, the front and where the results are; an incomplete sweep says how to
    finish it (exit 130 when stopped short, 0 when its time budget ran out)."""
    from sweeps.results.store import TrialStore

    counts = ", ".join(f"{v} {k}" for k, v in sorted(outcome.counts.items())) or "none"
    interrupted = outcome.counts.get("interrupted", 0)
    if progress.user_stopped and (not outcome.complete or interrupted):
        # Ctrl-C: what was saved and how to go on, in one line
        logged = f"; Ray's and W&B's messages: {log_path}" if log_path.is_file() else ""
        console.print(f"[yellow]incomplete[/] (stopped with Ctrl-C): {outcome.rows} trial rows "
                      f"saved ({counts}) in {outcome.results_dir}/trials; finish with: "
                      f"{finish}{logged}", soft_wrap=True)
        raise typer.Exit(130)
    console.print(progress.renderable())
    console.print()
    rows = TrialStore(outcome.results_dir).dataframe().to_dict("records")
    _print_front(console, rows, space.metrics, space.modes)
    console.print(f"trials: {outcome.rows}/{outcome.num_samples} recorded ({counts})")
    if outcome.warm_started:
        console.print(f"warm start: the study began with {outcome.warm_started} known front "
                      "trials")
    console.print(f"results: {outcome.results_dir}/trials/*.parquet")
    if space.wandb.mode == "offline":
        console.print(f"W&B (offline): wandb sync {outcome.results_dir}/wandb/offline-run-*")
    if not outcome.complete or interrupted:
        budget_s = space.budget.time_budget_s
        if budget_s is not None and not progress.user_stopped:
            # the sweep did what it was told: stop when its time budget is spent (exit 0)
            console.print(f"[yellow]time budget reached[/] (budget.time_budget_s = "
                          f"{budget_s:g} s): {finish} runs the rest, with a new budget")
            return
        console.print(f"[yellow]incomplete[/]: finish with {finish}", soft_wrap=True)
        raise typer.Exit(130 if outcome.rows - interrupted < outcome.num_samples else 0)


def resume_command(space_path: Path, *, name: str | None, num_samples: int | None,
                   address: str | None, working_dir: str | None,
                   allow_import: list[str] | None, num_cpus: int | None) -> str:
    """The exact command that finishes this sweep: the same space, name, budget, cluster,
    code and allowances (shell-quoted), plus ``--resume``."""
    import shlex

    args = ["prunetune", "sweep", str(space_path), "--resume"]
    for flag, value in (("--name", name), ("--num-samples", num_samples),
                        ("--address", address), ("--working-dir", working_dir),
                        ("--num-cpus", num_cpus)):
        if value is not None:
            args += [flag, str(value)]
    for package in allow_import or ():
        args += ["--allow-import", package]
    return shlex.join(args)


def _print_front(console: Console, rows: list[dict], metrics: list[str],
                 modes: list[str]) -> None:
    import pandas as pd

    from sweeps.results.flags import LEGEND, NOTE_COLUMN
    from sweeps.results.flags import notes as flag_notes
    from sweeps.results.pareto import pareto_front

    done = [r for r in rows if r.get("status") == "ok"]
    df = pd.DataFrame(done)
    if not done or any(m not in df.columns for m in metrics):
        front = []
    elif len(metrics) == 1:
        front = df.sort_values(metrics[0], ascending=modes[0] == "min").head(1).to_dict("records")
    else:
        front = pareto_front(df, [f"{m}:{o}" for m, o in zip(metrics, modes, strict=True)]
                             ).to_dict("records")
    notes = flag_notes(front)
    table = Table(title=f"Pareto front ({len(front)} of {len(done)} ok trials)",
                  title_justify="left", caption=LEGEND if notes else None,
                  caption_justify="left")
    cols = ["trial_id", *metrics, "config.prune.criterion", "config.prune.allocation.name",
            "config.prune.timing.name", "config.prune.schedule"]
    cols = [c for c in dict.fromkeys(cols) if any(c in r for r in front)]
    for c in cols:  # fold, never "…": a cut trial id or value is worse than a wrapped one
        table.add_column(c.removeprefix("config.prune."), overflow="fold")
    if notes:
        table.add_column(NOTE_COLUMN, overflow="fold")
    for i, r in enumerate(front):
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c)) for c in cols]
        table.add_row(*cells, *([notes[i]] if notes else []))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``validate`` and ``sweep`` to the ``prunetune`` app."""
    app.command("validate")(validate_cmd)
    app.command("sweep")(sweep_cmd)


def version_mismatch(address: str | None, message: str) -> str:
    """Ray's multi-line "Version mismatch" error as one line: both sides' versions and the
    fix. Ray refuses a driver whose Ray version or Python version (to the patch level, by
    default) differs from the cluster's."""
    found = re.findall(r"Ray:\s*(\S+)\s*Python:\s*(\S+)", message)
    where = f"--address {address}" if address else "Ray"
    if len(found) != 2:
        return f"{where}: {message.strip().splitlines()[0]}"
    (ray_c, py_c), (ray_d, py_d) = found
    return (f"{where}: version mismatch: the cluster runs Ray {ray_c} on Python {py_c}, this "
            f"driver Ray {ray_d} on Python {py_d}; run the driver with the cluster's Ray and "
            "Python (the image pins both: infra/README.md, Versions)")
