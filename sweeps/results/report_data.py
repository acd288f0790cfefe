"""What a report shows: :class:`ReportData`, collected by ``report.build_report`` and drawn by
``report_figures``/``report_html`` (plotly) and ``report_png`` (matplotlib). Below all of them,
so none imports the module that builds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeps.results.objectives import Objective

MAX_TABLE_ROWS = 5000  # rows in the page's table (front and flagged first)


@dataclass
class ReportData:
    """Everything the page and the PNGs show (JSON-safe values only)."""

    title: str
    objectives: list[Objective]
    labels: list[str]
    ref: list[float]
    by: str | None
    n_rows: int
    n_included: int
    included_statuses: list[str] | None = None
    #: trials at chance accuracy left out of the fronts, hypervolumes and best-accuracy curve
    hide_chance: bool = True
    n_chance: int = 0  # included trials at chance accuracy (hidden or not)
    #: one per drawn trial: v (objective values), g (group), s (status), f (on the front),
    #: gf (on its group's front), x (flag text, "" if none), h (hover details)
    points: list[dict[str, Any]] = field(default_factory=list)
    status_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    colors: dict[str, str] = field(default_factory=dict)  # group -> colour
    group_fronts: dict[str, list[list[float]]] = field(default_factory=dict)
    hypervolumes: dict[str, float] = field(default_factory=dict)
    #: per group: the trials setting the best accuracy, [sparsity, accuracy, trial id]
    curves: dict[str, list[list[Any]]] = field(default_factory=dict)
    curve_axes: list[str] = field(default_factory=list)
    #: per group: the trials setting the best adv_accuracy, [sparsity, adv_accuracy, trial id]
    adv_curves: dict[str, list[list[Any]]] = field(default_factory=dict)
    #: per group: [sparsity, gap_accuracy, trial id] of the included trials
    gap: dict[str, list[list[Any]]] = field(default_factory=dict)
    gap_derived: int = 0  # gap points taken as train_accuracy - test_accuracy (not recorded)
    #: "groups": per group [sparsity, effective_sparsity, trial id, disconnected_weights,
    #: dead_units] of every trial but the doomed; "doomed": the same of the doomed ones;
    #: "above": how many lie above the diagonal (disconnected weights)
    effective: dict[str, Any] = field(default_factory=dict)
    #: the doomed trials: columns, rows (trial id, group, sparsity, reason), total
    doomed: dict[str, Any] = field(default_factory=dict)
    heatmap: dict[str, Any] = field(default_factory=dict)
    similarity: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[list[float]]] = field(default_factory=dict)
    learning: dict[str, Any] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    parcoords: dict[str, Any] = field(default_factory=dict)
    importance: dict[str, dict[str, float]] = field(default_factory=dict)
    importance_note: str | None = None
    flag_rules: list[str] = field(default_factory=list)
    n_flagged: int = 0
    #: the front's rows (columns, rows), best first by the first objective
    table: dict[str, Any] = field(default_factory=dict)
    #: every trial's row (capped at MAX_TABLE_ROWS): columns, rows, front, flag, total
    trials: dict[str, Any] = field(default_factory=dict)

    @property
    def n_front(self) -> int:
        return sum(1 for p in self.points if p["f"])
