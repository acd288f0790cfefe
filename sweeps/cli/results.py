"""``prunetune pareto``, ``prunetune query`` and ``prunetune report``: registered onto the app.

Bad input (unknown column, bad objective, wrong objective count, missing results, SQL error)
prints one ``error: ...`` line naming the problem and the fix, and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from sweeps.cli.common import require_outputs
from sweeps.cli.errors import fail, output_console
from sweeps.results.aliases import display_name
from sweeps.results.errors import ResultsError
from sweeps.results.flags import add_note
from sweeps.results.jsonable import json_scalar
from sweeps.results.objectives import parse_objectives, parse_ref
from sweeps.results.paths import results_dirs
from sweeps.results.reader import Results
from sweeps.results.statuses import DONE_STATUSES
from sweeps.results.statuses import STATUSES as ALL_STATUSES

# str, not Path: a Path would turn "s3://bucket/x" into "s3:/bucket/x"
ResultsArg = Annotated[list[str], typer.Argument(
    help="results dir(s) (with trials/), dirs of .parquet files or .parquet files",
    show_default=False)]
ObjectiveOpt = Annotated[list[str] | None, typer.Option(
    "--objective", "-o", help="COLUMN:max|min, 2 or 3 times "
    "[default: test_accuracy:max, sparsity:max]", show_default=False)]
WhereOpt = Annotated[str | None, typer.Option(
    "--where", help="one DuckDB SQL condition (no statements); short names work: "
    "\"sparsity >= 0.9 AND criterion = 'snip'\"")]
ByOpt = Annotated[str | None, typer.Option("--by", help="one front per value of this column")]
StatusOpt = Annotated[list[str] | None, typer.Option(
    "--include-status", help="also use trials with this status: error, diverged, "
    "stopped_early or all (repeatable); default: ok only")]
RefOpt = Annotated[str | None, typer.Option(
    "--ref", help="hypervolume reference point, one number per objective: --ref 0.0,0.0 "
    "[default: worst value of each objective, 1% of its range further out]")]
FORMATS = ("table", "csv", "json")
DEFAULT_OBJECTIVES = ["test_accuracy:max", "sparsity:max"]
TABLE_EXTRA = ("trial_id", "config.prune.criterion", "config.prune.schedule",
               "config.prune.steps")


def _statuses(include: list[str] | None) -> tuple[str, ...]:
    out = list(DONE_STATUSES)
    for s in include or []:
        for part in s.split(","):
            part = part.strip()
            if part == "all":
                out.extend(ALL_STATUSES)
            elif part in ALL_STATUSES:
                out.append(part)
            else:
                fail(f"--include-status {part!r}: expected one of "
                      f"{', '.join(ALL_STATUSES)} or all")
    return tuple(dict.fromkeys(out))


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _plain(v: Any) -> Any:
    """A cell as JSON data: nested cells (``history``: a list of per-epoch dicts; a per-layer
    map: ``{layer: value}``) recursively, scalars through :func:`json_scalar`."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        if v and all(isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], str) for e in v):
            return {k: _plain(x) for k, x in v}  # an Arrow map cell: [(key, value), ...]
        return [_plain(e) for e in v]
    return json_scalar(v)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    cols = list(df.columns)
    return [{c: _plain(v) for c, v in zip(cols, row, strict=True)}
            for row in df.itertuples(index=False, name=None)]


def _text_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Nested cells as JSON text (for CSV)."""
    nested = [c for c in df.columns if df[c].dtype == object
              and df[c].map(lambda v: isinstance(v, list | tuple | dict | np.ndarray)).any()]
    if not nested:
        return df
    df = df.copy()
    for c in nested:
        df[c] = df[c].map(lambda v: None if v is None else json.dumps(_plain(v)))
    return df


def _print_table(df: pd.DataFrame, title: str | None = None, caption: str | None = None,
                 limit: int | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for c in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[c])
        table.add_column(str(c), justify="right" if numeric else "left", overflow="fold")
    shown = df if limit is None else df.head(limit)
    for row in shown.itertuples(index=False, name=None):
        table.add_row(*(_cell(v) for v in row))
    output_console().print(table)
    if limit is not None and len(df) > limit:
        typer.echo(f"({len(df) - limit} more rows; use --format csv or json for all)")


def _cell(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, list | dict):
        return json.dumps(v)
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _emit(df: pd.DataFrame, fmt: str, **table_kw: Any) -> None:
    if fmt == "csv":
        typer.echo(_text_cells(df).to_csv(index=False), nl=False)
    elif fmt == "json":
        typer.echo(json.dumps(_records(df), indent=2))
    else:
        _print_table(df, **table_kw)


def pareto_cmd(
    results: ResultsArg,
    objective: ObjectiveOpt = None,
    where: WhereOpt = None,
    by: ByOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="also draw the front: front.png (matplotlib) or front.html")] = None,
    include_status: StatusOpt = None,
    ref: RefOpt = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="comma-separated columns to output (csv/json default: all)")] = None,
) -> None:
    """Non-dominated completed trials for 2 or 3 objectives (one front per --by group)."""
    from sweeps.results.front_summary import front_summary

    _check_format(fmt)
    results = results_dirs(results)
    statuses = _statuses(include_status)
    if plot is not None and plot.suffix.lower() not in (".png", ".html", ".svg", ".pdf"):
        fail(f"--plot {plot}: expected a .png, .svg, .pdf or .html file name")
    require_outputs({"--plot": plot})  # before the work: an unwritable path is one line
    try:
        got = front_summary(
            results, objective or DEFAULT_OBJECTIVES, where=where, by=by, statuses=statuses,
            ref=ref, notes=fmt == "table",
            columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
            present_columns=TABLE_EXTRA if fmt == "table" else ())
    except ResultsError as exc:
        fail(str(exc))
        return
    _print_front(got, fmt, by, where, statuses)
    if plot is not None and len(got.front):
        _plot_front(plot, results, got.objectives, where, by, statuses, got.ref_given)
        typer.echo(f"plot written to {plot}", err=True)


def _print_front(got: Any, fmt: str, by: str | None, where: str | None,
                 statuses: tuple[str, ...]) -> None:
    """A :class:`~sweeps.results.front_summary.FrontSummary` as JSON, CSV (full column names)
    or a table (short names, the hypervolumes in its caption)."""
    out, hv, ref_arr = got.front, got.hypervolume, got.ref
    if fmt == "json":
        typer.echo(json.dumps({
            "objectives": [str(o) for o in got.objectives], "by": by, "where": where,
            "statuses": list(statuses), "reference_point": None if ref_arr is None else
            [float(x) for x in ref_arr], "hypervolume": hv, "rows": _records(out)}, indent=2))
    elif fmt == "csv":
        _emit(out, "csv")
    else:
        ref_txt = ",".join(f"{x:.6g}" for x in ref_arr) if ref_arr is not None else "n/a"
        caption = f"hypervolume (ref {ref_txt}): " + ", ".join(
            f"{g} {v:.6g}" for g, v in hv.items()) if hv else None
        out = out.rename(columns={c: display_name(c, got.aliases) for c in out.columns})
        _print_table(out, title=f"Pareto front: {len(out)} trial(s), "
                     + ", ".join(str(o) for o in got.objectives), caption=caption)


def _plot_front(plot: Path, results: list[str], objs: Any, where: str | None,
                by: str | None, statuses: tuple[str, ...], ref: list[float] | None) -> None:
    from sweeps.results.report import build_report, render_html, write_pngs

    with Results(results) as res:
        data = build_report(res, objs, by=by, where=where, statuses=statuses, ref=ref)
    plot.parent.mkdir(parents=True, exist_ok=True)
    if plot.suffix.lower() == ".html":
        plot.write_text(render_html(data), encoding="utf-8")
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        name = "fronts_by_group.png" if by else "front.png"
        write_pngs(data, Path(tmp))
        if plot.suffix.lower() == ".png":
            Path(tmp, name).replace(plot)
            return
    _front_figure(data, plot)


def _front_figure(data: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pts = np.array([p["v"] for p in data.points])
    fr = np.array([p["f"] for p in data.points], dtype=bool)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(pts[~fr, 1], pts[~fr, 0], s=8, c="#bbbbbb")
    f = pts[fr][np.argsort(pts[fr][:, 1])]
    ax.plot(f[:, 1], f[:, 0], "o-", ms=4, c="#d62728")
    ax.set_xlabel(data.labels[1])
    ax.set_ylabel(data.labels[0])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def query_cmd(
    results: Annotated[list[str], typer.Argument(
        help="results path(s), then the SQL as the last argument", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """Ad-hoc read-only SQL (one SELECT) over the view `trials` (all statuses; short names for
    config.* columns). No COPY, ATTACH, INSTALL or file access outside the results.

    Example: prunetune query results/s1 "SELECT criterion, max(test_accuracy) FROM trials
    WHERE status = 'ok' GROUP BY ALL ORDER BY 2 DESC"
    """
    _check_format(fmt)
    if len(results) < 2:
        fail("expected RESULTS... SQL, e.g. prunetune query results/s1 "
              "\"SELECT count(*) FROM trials\"")
    sql = str(results[-1])
    results = [*results_dirs(results[:-1]), sql]
    try:
        with Results(results[:-1]) as res:
            df = res.query(sql)
            df = add_note(df, res) if fmt == "table" else df
    except ResultsError as exc:
        fail(str(exc))
        return
    _emit(df, fmt, title=None, limit=200)


def report_cmd(
    results: ResultsArg,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("report.html"),
    objective: ObjectiveOpt = None,
    where: WhereOpt = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="group for per-group fronts [default: criterion when recorded]")] = None,
    png_dir: Annotated[Path | None, typer.Option(
        "--png-dir", help="also write the main plots as PNG here (for papers)")] = None,
    include_status: StatusOpt = None,
    ref: RefOpt = None,
    title: Annotated[str | None, typer.Option("--title", help="page title")] = None,
    hide_chance: Annotated[bool, typer.Option(
        "--hide-chance/--show-chance",
        help="leave trials at chance accuracy out of the fronts and hypervolumes (they stay "
             "in the scatter, flagged, and in the table)")] = True,
) -> None:
    """One self-contained HTML page: fronts, curves, layer heatmap, hypervolume, table."""
    from sweeps.results.report import write_report

    statuses = _statuses(include_status)
    results = results_dirs(results)
    require_outputs({"--out": out}, {"--png-dir": png_dir})  # before the work
    try:
        objs = parse_objectives(objective or DEFAULT_OBJECTIVES)
        data = write_report(results, out, objs, by=by, where=where, statuses=statuses,
                            ref=parse_ref(ref, len(objs)), png_dir=png_dir, title=title,
                            hide_chance=hide_chance)
    except ResultsError as exc:
        fail(str(exc))
        return
    except ValueError as exc:
        fail(f"{exc}; check --where / --include-status")
        return
    typer.echo(f"report written to {out} ({len(data.table.get('rows', []))} front trials, "
               f"{data.n_included} trials plotted)")
    if png_dir is not None:
        typer.echo(f"PNGs written to {png_dir}")


def compact_cmd(
    results: Annotated[list[str], typer.Argument(
        help="results dir(s) or URI(s) (with trials/)", show_default=False)],
) -> None:
    """Merge a sweep's per-trial Parquet files into a few part files (a sweep does it when it
    ends). Keeps every row; safe to run again, and to kill at any moment."""
    from sweeps.results.compaction import compact
    from sweeps.results.store import TRIALS_DIR, TrialStore

    for root in results:
        if "://" not in root and Path(root).name == TRIALS_DIR and Path(root).is_dir():
            root = str(Path(root).parent)  # RESULTS/trials means RESULTS
        if "://" not in root and not Path(root).is_dir():
            fail(f"results path {root}: no such directory; give a results dir (with trials/)")
        store = TrialStore(root)
        try:
            if not store.files():
                fail(f"results {root}: no .parquet files under {store.trials_path}; has the "
                     "sweep written any trials yet?")
            done = compact(store)
        except OSError as exc:
            fail(f"results {root}: cannot compact ({' '.join(str(exc).split())})")
            return
        if not done.changed:
            typer.echo(f"{root}: already compact")
            continue
        typer.echo(f"{root}: {done.files_read} files -> {len(done.parts_written)} part "
                   f"file(s), {done.rows} rows"
                   + (f"; {len(done.unreadable)} unreadable left in place"
                      if done.unreadable else ""))


def register(app: typer.Typer) -> None:
    """Add ``pareto``, ``query``, ``report`` and ``compact`` to the ``prunetune`` app."""
    app.command("pareto")(pareto_cmd)
    app.command("query")(query_cmd)
    app.command("report")(report_cmd)
    app.command("compact")(compact_cmd)
